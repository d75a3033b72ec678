"""The lock files: ``requirements*.txt``, compiled by uv (``make lock``) from the short, hand-written
``requirements*.in`` files, every package pinned, transitive ones included.

- ``requirements.txt``: the deployed app, resolved for Linux x86_64 / CPython 3.11 whatever machine runs
  ``make lock`` (Flex Consumption runs Linux, and its remote build runs ``pip install -r requirements.txt``).
- ``requirements-local.txt``: the CLI and the local stack, with the app's versions of what both use.
- ``requirements-dev.txt``: everything ``make setup`` installs (app + local stack + tests), for any platform
  (a universal resolution, Python 3.11), with the versions of the two locks above.

Each lock's header carries a digest of all the inputs (every ``requirements*.in`` and the compile options).
``input_digest()`` needs neither uv nor the network, so a test can tell that an input changed without
``make lock`` in a fraction of a second.
"""

from __future__ import annotations

import argparse
import hashlib
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
PYTHON_VERSION = "3.11"
DIGEST_PREFIX = "# input-digest: sha256:"


@dataclass(frozen=True)
class Lock:
    """One lock file, the input it is compiled from and the resolution options."""

    output: str
    source: str
    options: tuple[str, ...]


# In dependency order: each input constrains itself to the locks before it (``-c``).
LOCKS = (
    Lock("requirements.txt", "requirements.in", ("--python-version", PYTHON_VERSION, "--python-platform", "linux")),
    Lock("requirements-local.txt", "requirements-local.in", ("--python-version", PYTHON_VERSION, "--universal")),
    Lock("requirements-dev.txt", "requirements-dev.in", ("--python-version", PYTHON_VERSION, "--universal")),
)  # fmt: skip

_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?\s*==\s*([^\s;#]+)")


def normalize(name: str) -> str:
    """A package name as PyPI compares it (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def pins(text: str) -> dict[str, str]:
    """``{normalized name: version}`` of the ``name==version`` lines of a requirements file."""
    found = {}
    for line in text.splitlines():
        match = _PIN.match(line.strip())
        if match:
            found[normalize(match.group(1))] = match.group(2)
    return found


def input_digest(root: Path = REPO_ROOT) -> str:
    """sha256 over every ``requirements*.in`` (name and bytes) and every lock's compile options."""
    digest = hashlib.sha256()
    for path in sorted(root.glob("requirements*.in")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    for lock in LOCKS:
        digest.update(repr((lock.output, lock.source, lock.options)).encode() + b"\0")
    return digest.hexdigest()


def recorded_digest(lock_text: str) -> str | None:
    """The input digest a lock's header records, or None when it has none."""
    for line in lock_text.splitlines():
        if line.startswith(DIGEST_PREFIX):
            return line[len(DIGEST_PREFIX) :].strip()
    return None


def header(lock: Lock, digest: str) -> str:
    return (
        f"# Compiled from {lock.source} by `make lock` (uv pip compile {' '.join(lock.options)}).\n"
        f"# Do not edit: change {lock.source}, then run `make lock`.\n"
        f"{DIGEST_PREFIX}{digest}\n"
    )


def compile_locks(root: Path = REPO_ROOT, *, upgrade: bool = False, uv: str | None = None) -> list[Path]:
    """Compile every lock with uv (which keeps the versions a lock already has unless ``upgrade``, or
    unless an input asks for another), then write its header. Returns the locks written."""
    uv = uv or str(Path(sys.executable).with_name("uv"))
    digest = input_digest(root)
    written = []
    for lock in LOCKS:
        output = root / lock.output
        command = [uv, "pip", "compile", lock.source, "--output-file", lock.output, "--no-header", "--quiet"]
        command += [*lock.options, *(["--upgrade"] if upgrade else [])]
        subprocess.run(command, cwd=root, check=True)
        output.write_text(header(lock, digest) + output.read_text())
        written.append(output)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make lock", description=__doc__.split("\n\n")[0])
    parser.add_argument("--upgrade", action="store_true", help="newest versions the inputs allow")
    args = parser.parse_args(argv)
    for path in compile_locks(upgrade=args.upgrade):
        print(f"wrote {path.relative_to(REPO_ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
