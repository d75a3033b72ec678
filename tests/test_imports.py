"""The project's import graph, read from the source (no module is imported): no cycles, and the layering
the README states (``shared/`` imports none of ``functions/``, ``cli/``, ``local/``, ``infra/``)."""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("shared", "functions", "cli", "local", "infra")


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
