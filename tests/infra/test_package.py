"""infra/package.py: the function app zip holds the app and nothing else, byte for byte reproducibly."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from infra.package import build_package, package_files

REPO_ROOT = Path(__file__).resolve().parents[2]


def make_app_root(root: Path) -> Path:
    """A small app root with everything the package must keep and everything it must leave out."""
    files = {
        "function_app.py": "import azure.functions\n",
        "host.json": "{}\n",
        "requirements.txt": "azure-functions\n",
        "functions/__init__.py": "",
        "functions/datasets.py": "x = 1\n",
        "shared/__init__.py": "",
        "shared/reporting/templates/base.html.j2": "<html></html>\n",
        # Must be left out:
        "infra/__main__.py": "",
        "tests/test_x.py": "",
        "local/stack.py": "",
        "cli/main.py": "",
        "bench/convert_bench.py": "",
        ".venv/lib/site.py": "",
        "venv/lib/site.py": "",
        "node_modules/azurite/index.js": "",
        "shared/__pycache__/settings.cpython-311.pyc": "",
        "functions/datasets.pyc": "",
        ".pytest_cache/v/cache": "",
        ".git/HEAD": "",
        "local.settings.json": "{}",
        "Pulumi.yaml": "",
        "Pulumi.dev.yaml": "",
        "dist/app.zip": "",
        "pyproject.toml": "",
        "requirements-dev.txt": "",
        "requirements.in": "",
        "requirements-dev.in": "",
        "visiontune.egg-info/PKG-INFO": "",
    }
    for relative, text in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


KEPT = {
    "function_app.py",
    "host.json",
    "requirements.txt",
    "functions/__init__.py",
    "functions/datasets.py",
    "shared/__init__.py",
    "shared/reporting/templates/base.html.j2",
}


def test_package_holds_exactly_the_app(tmp_path: Path) -> None:
    root = make_app_root(tmp_path / "app")
    out = tmp_path / "app.zip"
    build_package(out, root)
    with zipfile.ZipFile(out) as archive:
        names = archive.namelist()
        assert set(names) == KEPT, f"unexpected {set(names) - KEPT}, missing {KEPT - set(names)}"
        assert names == sorted(names), "entries are not in sorted order"
        assert archive.read("host.json") == b"{}\n"
        assert archive.testzip() is None


def test_same_sources_give_the_same_bytes_whatever_the_timestamps(tmp_path: Path) -> None:
    root = make_app_root(tmp_path / "app")
    first = build_package(tmp_path / "one.zip", root)
    os.utime(root / "functions" / "datasets.py", (1_700_000_000, 1_700_000_000))
    (root / "host.json").chmod(0o600)
    copy = shutil.copytree(root, tmp_path / "copy")  # new inodes, new directory order
    second = build_package(tmp_path / "two.zip", copy)
    assert first == second
    assert (tmp_path / "one.zip").read_bytes() == (tmp_path / "two.zip").read_bytes()
    (copy / "functions" / "datasets.py").write_text("x = 2\n")
    assert build_package(tmp_path / "three.zip", copy) != first, "a changed source must change the package"


def test_a_folder_that_is_no_app_root_is_refused(tmp_path: Path) -> None:
    (tmp_path / "host.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match="function_app.py, requirements.txt"):
        build_package(tmp_path / "out.zip", tmp_path)
    assert not (tmp_path / "out.zip").exists()


def test_the_repository_package_has_the_function_app(tmp_path: Path) -> None:
    """``python -m infra.package`` on this repository: the app's entry files, no infra/tests/local/cli."""
    out = tmp_path / "dist" / "app.zip"
    done = subprocess.run(
        [sys.executable, "-m", "infra.package", "--out", str(out)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert "sha256" in done.stdout
    with zipfile.ZipFile(out) as archive:
        names = archive.namelist()
    assert {
        "function_app.py",
        "host.json",
        "requirements.txt",
        "shared/settings.py",
        "functions/datasets.py",
    } <= set(names)
    top_level = {name.split("/", 1)[0] for name in names}
    assert not top_level & {"infra", "tests", "local", "cli", "bench", ".venv", "node_modules"}, top_level
    assert names == [p.as_posix() for p in package_files(REPO_ROOT)]
