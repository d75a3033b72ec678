"""Build the function app package: a zip of the app root that the Flex remote build installs from
``requirements.txt``. Deterministic: fixed entry order, timestamps and permissions, so the same sources
always give the same bytes (and the same digest).

    python -m infra.package --out dist/app.zip
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent

# Top-level folders that are not part of the deployed app.
EXCLUDED_TOP_LEVEL = frozenset(
    {
        "infra",
        "tests",
        "local",
        "cli",
        "bench",
        "docs",
        "dist",
        "build",
        "node_modules",
        "demo-out",
        "bench-out",
    }
)
# Folder names excluded at any depth: virtualenvs, caches, VCS and tool state.
EXCLUDED_DIRS = frozenset(
    {
        ".venv", "venv", "env", ".env", ".git", ".github", ".ci", ".vscode", ".idea",
        "__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache", ".hypothesis",
        ".python_packages", ".local-stack", "__blobstorage__", "__queuestorage__",
    }
)  # fmt: skip
EXCLUDED_FILES = frozenset(
    {
        "local.settings.json", ".gitignore", ".funcignore", "package.json", "package-lock.json", "Makefile",
        # Not app files: the remote build only needs requirements.txt (the lock), not its inputs.
        "pyproject.toml", "requirements-dev.txt", "requirements-local.txt", "README.md",
        "requirements.in", "requirements-local.in", "requirements-dev.in",
    }
)  # fmt: skip
EXCLUDED_SUFFIXES = (".pyc", ".pyo", ".zip", ".egg-info")
EXCLUDED_PREFIXES = ("Pulumi.", "__azurite_db")
REQUIRED_FILES = ("function_app.py", "host.json", "requirements.txt")

# 1980-01-01 00:00:00 is the earliest timestamp a zip can hold.
FIXED_TIMESTAMP = (1980, 1, 1, 0, 0, 0)


def _excluded(relative: Path, is_dir: bool) -> bool:
    name = relative.name
    if is_dir:
        return (
            (len(relative.parts) == 1 and name in EXCLUDED_TOP_LEVEL)
            or name in EXCLUDED_DIRS
            or name.endswith(".egg-info")
        )
    return name in EXCLUDED_FILES or name.endswith(EXCLUDED_SUFFIXES) or name.startswith(EXCLUDED_PREFIXES)


def package_files(root: Path = REPO_ROOT) -> Iterator[Path]:
    """Every file of the app package, as paths relative to ``root``, in sorted (POSIX path) order.

    Symbolic links are skipped (a zip deploy would not preserve them)."""
    found: list[Path] = []

    def walk(folder: Path) -> None:
        for entry in folder.iterdir():
            relative = entry.relative_to(root)
            if entry.is_symlink():
                continue
            if entry.is_dir():
                if not _excluded(relative, is_dir=True):
                    walk(entry)
            elif entry.is_file() and not _excluded(relative, is_dir=False):
                found.append(relative)

    walk(root)
    yield from sorted(found, key=lambda p: p.as_posix())


def build_package(out: Path, root: Path = REPO_ROOT) -> str:
    """Write the package zip to ``out`` and return its SHA-256 hex digest.

    Raises ``FileNotFoundError`` if the root lacks a file the Functions host needs."""
    missing = [name for name in REQUIRED_FILES if not (root / name).is_file()]
    if missing:
        raise FileNotFoundError(f"{root} is not a function app root: missing {', '.join(missing)}")
    out.parent.mkdir(parents=True, exist_ok=True)
    temporary = out.with_name(out.name + ".partial")
    with zipfile.ZipFile(temporary, "w") as archive:
        for relative in package_files(root):
            info = zipfile.ZipInfo(relative.as_posix(), date_time=FIXED_TIMESTAMP)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.create_system = 3  # Unix, so the permission bits below are honoured
            info.external_attr = 0o100644 << 16  # regular file, rw-r--r--
            archive.writestr(info, (root / relative).read_bytes(), compresslevel=9)
    temporary.replace(out)
    return hashlib.sha256(out.read_bytes()).hexdigest()


def main(argv: list[str] | None = None) -> int:
    """Command line: ``python -m infra.package --out dist/app.zip [--root DIR]``."""
    parser = argparse.ArgumentParser(prog="python -m infra.package", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "dist" / "app.zip", help="zip to write")
    parser.add_argument("--root", type=Path, default=REPO_ROOT, help="function app root (default: the repo)")
    args = parser.parse_args(argv)
    try:
        digest = build_package(args.out, args.root.resolve())
    except FileNotFoundError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    count = sum(1 for _ in package_files(args.root.resolve()))
    print(f"{args.out}: {count} files, {args.out.stat().st_size} bytes, sha256 {digest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
