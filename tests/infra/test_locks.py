"""The requirements locks are compiled from the current inputs (offline: digests and pins, no resolver)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from infra.locks import LOCKS, REPO_ROOT, input_digest, normalize, pins, recorded_digest

STALE = "run `make lock` (an input changed since the locks were compiled)"


def _input_pins(source: Path) -> dict[str, str]:
    """The ``==`` pins of an input file and of the inputs it includes with ``-r``."""
    text = source.read_text()
    found = pins(text)
    for line in text.splitlines():
        if line.startswith("-r "):
            found.update(_input_pins(source.parent / line[3:].strip()))
    return found


@pytest.mark.parametrize("lock", LOCKS, ids=lambda lock: lock.output)
def test_lock_is_compiled_from_the_current_inputs(lock) -> None:
    text = (REPO_ROOT / lock.output).read_text()
    assert recorded_digest(text) == input_digest(), f"{lock.output} is stale: {STALE}"


@pytest.mark.parametrize("lock", LOCKS, ids=lambda lock: lock.output)
def test_lock_pins_every_input_pin_and_every_line_comes_from_the_compiler(lock) -> None:
    text = (REPO_ROOT / lock.output).read_text()
    locked = pins(text)
    wanted = _input_pins(REPO_ROOT / lock.source)
    differ = {
        name: (version, locked.get(name)) for name, version in wanted.items() if locked.get(name) != version
    }
    assert not differ, f"{lock.output} does not pin what {lock.source} asks (input, lock): {differ}; {STALE}"
    # uv annotates every package it writes with where it comes from; a line added by hand has no annotation.
    lines = text.splitlines()
    unannotated = [
        line for i, line in enumerate(lines)
        if re.match(r"^[A-Za-z0-9]", line) and not (i + 1 < len(lines) and lines[i + 1].startswith("    # via"))
    ]  # fmt: skip
    assert not unannotated, f"{lock.output} has lines the compiler did not write: {unannotated}; {STALE}"


def test_every_requirement_is_pinned_exactly() -> None:
    for lock in LOCKS:
        for line in (REPO_ROOT / lock.output).read_text().splitlines():
            if re.match(r"^[A-Za-z0-9]", line):
                assert pins(line), f"{lock.output}: {line!r} is not pinned with =="


def test_the_locks_agree_on_shared_packages() -> None:
    """The dev lock (what the tests run on) has the deployed app's exact versions."""
    app = pins((REPO_ROOT / "requirements.txt").read_text())
    for output in ("requirements-local.txt", "requirements-dev.txt"):
        other = pins((REPO_ROOT / output).read_text())
        differ = {
            name: (app[name], other[name]) for name in app.keys() & other.keys() if app[name] != other[name]
        }
        assert not differ, f"requirements.txt and {output} disagree: {differ}"
    dev = pins((REPO_ROOT / "requirements-dev.txt").read_text())
    assert set(app) <= set(dev), f"the dev lock misses app packages: {sorted(set(app) - set(dev))}"


def test_a_changed_input_changes_the_digest(tmp_path: Path) -> None:
    for path in REPO_ROOT.glob("requirements*.in"):
        (tmp_path / path.name).write_bytes(path.read_bytes())
    before = input_digest(tmp_path)
    assert before == input_digest()
    with (tmp_path / "requirements.in").open("a") as handle:
        handle.write("six==1.17.0\n")
    assert input_digest(tmp_path) != before


def test_pins_normalize_names() -> None:
    assert pins("Pillow==13.0.0\nazure_core[aio] == 1.2 ; python_version >= '3.11'\n# x==1\n") == {
        "pillow": "13.0.0",
        "azure-core": "1.2",
    }
    assert normalize("Zope.Interface") == "zope-interface"
