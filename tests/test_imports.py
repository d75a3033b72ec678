"""The project's import graph, read from the source (no module is imported): no cycles, the layering the
README states (``shared/`` imports none of ``functions/``, ``cli/``, ``local/``, ``infra/``), and imports at
module top except where a lazy import has a reason (cold start, heavy libraries)."""

from __future__ import annotations

import ast
import sys
from functools import cache
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("shared", "functions", "cli", "local", "infra", "bench")

# Third-party libraries that cost a cold start or a CLI start noticeably (tens to hundreds of ms, or a
# native extension): imported inside the function that needs them, never at module top of code that
# functions/ or every ``visiontune`` command loads. A project module that imports one of these at its top,
# directly or through project modules it imports at its top, is "heavy" too and may be imported lazily.
HEAVY_LIBRARIES = frozenset(
    {
        "PIL", "numpy", "scipy", "sklearn", "matplotlib", "jinja2", "markupsafe", "tiktoken", "tiktoken_ext",
        "openai", "httpx", "requests", "azure", "azurefunctions", "pulumi", "pulumi_azure_native", "fastapi",
        "starlette", "uvicorn", "yaml", "rich",
    }
)  # fmt: skip

# Where a function may import project modules and the standard library lazily: each trigger of the function
# app imports only what it runs (cold start), and indexing the app must stay light.
LAZY_IMPORT_PLACES = ("functions/", "function_app.py")


@cache
def project_modules() -> dict[str, Path]:
    """``{dotted module name: path}`` of every project module (packages as their ``__init__``)."""
    modules = {"function_app": REPO_ROOT / "function_app.py"}
    for package in PACKAGES:
        for path in sorted((REPO_ROOT / package).rglob("*.py")):
            parts = list(path.relative_to(REPO_ROOT).with_suffix("").parts)
            if "__pycache__" in parts or "node_modules" in parts:
                continue
            if parts[-1] == "__init__":
                parts.pop()
            modules[".".join(parts)] = path
    return modules


def _project_module(name: str) -> str | None:
    """The project module ``import name`` loads last (``shared.layout.x`` -> ``shared.layout``), or None."""
    modules = project_modules()
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def imports_of(module: str) -> set[str]:
    """The project modules ``module`` imports anywhere (module level or in a function), except under
    ``if TYPE_CHECKING:`` (never run)."""
    path = project_modules()[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(_without_type_checking(ast.parse(path.read_text("utf-8")))):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parent, base] if base else parent)
            names = [f"{base}.{alias.name}" for alias in node.names]  # a submodule, or a name in ``base``
        for name in names:
            target = _project_module(name)
            if target is not None and target != module:
                found.add(target)
    return found


def _without_type_checking(tree: ast.Module) -> ast.Module:
    class Strip(ast.NodeTransformer):
        def visit_If(self, node: ast.If) -> ast.AST | None:
            if "TYPE_CHECKING" in ast.unparse(node.test):
                return None
            return self.generic_visit(node)

    return Strip().visit(tree)


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return cycles


def test_the_project_has_no_import_cycles() -> None:
    graph = {module: imports_of(module) for module in project_modules()}
    cycles = import_cycles(graph)
    described = [
        " <-> ".join(cycle) + f" ({', '.join(f'{m} imports {sorted(graph[m] & set(cycle))}' for m in cycle)})"
        for cycle in cycles
    ]
    assert not cycles, "import cycles (a lazy import counts too: move the shared part down):\n" + "\n".join(
        described
    )


def test_shared_imports_none_of_the_layers_above_it() -> None:
    upper = ("functions", "cli", "local", "infra", "function_app")
    wrong = {
        module: sorted(t for t in imports_of(module) if t.split(".")[0] in upper)
        for module in project_modules()
        if module.split(".")[0] == "shared"
    }
    wrong = {module: targets for module, targets in wrong.items() if targets}
    assert not wrong, f"shared/ must not import these: {wrong}"


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert import_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert import_cycles({"a": {"b"}, "b": set()}) == []


def _is_type_checking(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def _imported_names(module: str, node: ast.Import | ast.ImportFrom) -> list[str]:
    """The dotted names ``node`` imports, made absolute (``from a import b`` gives ``a`` and ``a.b``)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    package = module if project_modules()[module].name == "__init__.py" else module.rpartition(".")[0]
    base = node.module or ""
    if node.level:
        parent = package.split(".")[: len(package.split(".")) - node.level + 1]
        base = ".".join([*parent, base] if base else parent)
    return [base, *(f"{base}.{alias.name}" for alias in node.names)]


def _imports(tree: ast.AST, *, in_functions: bool) -> list[ast.Import | ast.ImportFrom]:
    """The import statements at module level (``in_functions=False``: in the module body, its ``if``/``try``
    blocks and class bodies) or inside function bodies; never those under ``if TYPE_CHECKING:``."""
    found: list[ast.Import | ast.ImportFrom] = []

    def walk(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if _is_type_checking(child):
                continue
            if isinstance(child, ast.Import | ast.ImportFrom):
                if in_function == in_functions:
                    found.append(child)
                continue
            walk(child, in_function or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda))

    walk(tree, False)
    return found


@cache
def _tree(module: str) -> ast.Module:
    return ast.parse(project_modules()[module].read_text("utf-8"))


@cache
def heavy_modules() -> dict[str, str]:
    """``{project module: why it is heavy}`` for every module that imports a heavy library at its top,
    directly or through the project modules (and their packages) it imports at its top."""
    def with_packages(module: str) -> list[str]:
        parts = module.split(".")
        return [".".join(parts[:n]) for n in range(1, len(parts) + 1) if ".".join(parts[:n]) in project_modules()]

    direct: dict[str, set[str]] = {}
    heavy: dict[str, str] = {}
    for module in project_modules():
        targets: set[str] = set()
        for node in _imports(_tree(module), in_functions=False):
            for name in _imported_names(module, node):
                if name.split(".")[0] in HEAVY_LIBRARIES and module not in heavy:
                    heavy[module] = f"imports {name}"
                target = _project_module(name)
                if target is not None and target != module:
                    targets.update(with_packages(target))
        direct[module] = targets - {module}
    changed = True
    while changed:
        changed = False
        for module, targets in direct.items():
            if module in heavy:
                continue
            reason = next((f"imports {t} ({heavy[t]})" for t in sorted(targets) if t in heavy), None)
            if reason:
                heavy[module] = reason
                changed = True
    return heavy


def is_heavy(module: str) -> bool:
    """Whether importing ``module`` (which runs its packages' ``__init__`` first) loads a heavy library."""
    parts = module.split(".")
    return any(".".join(parts[:n]) in heavy_modules() for n in range(1, len(parts) + 1))


def lazy_import_problems() -> list[str]:
    """``path:line: import`` for each import of the standard library or of a light project module inside a
    function, outside ``LAZY_IMPORT_PLACES``."""
    problems = []
    for module, path in project_modules().items():
        relative = path.relative_to(REPO_ROOT).as_posix()
        if relative.startswith(LAZY_IMPORT_PLACES):
            continue
        for node in _imports(_tree(module), in_functions=True):
            names = _imported_names(module, node)
            top = names[0].split(".")[0]
            targets = {target for name in names if (target := _project_module(name)) not in (None, module)}
            standard = top in sys.stdlib_module_names and top != "__future__"
            if standard or (targets and not any(is_heavy(target) for target in targets)):
                problems.append(f"{relative}:{node.lineno}: {ast.unparse(node)}")
    return problems


def test_project_and_standard_library_imports_are_at_module_top() -> None:
    problems = lazy_import_problems()
    assert not problems, (
        "imports inside functions: move them to the module top (only heavy libraries, project modules that "
        "import one at their top, and functions/ import lazily; see HEAVY_LIBRARIES):\n" + "\n".join(problems)
    )


def test_heavy_modules_are_found_through_the_modules_they_import() -> None:
    heavy = heavy_modules()
    assert heavy["local.emulator.app"] == "imports fastapi"  # directly
    assert heavy["local.stack"].startswith("imports local.host")  # through the modules it imports at its top
    assert is_heavy("local.emulator.routes.files") and not is_heavy("shared.layout")
    assert not is_heavy("shared.settings") and not is_heavy("shared.storage")  # their SDKs load lazily
