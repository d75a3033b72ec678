"""Fixtures of the end-to-end tests: host-less local stacks (``tests.fixtures.local_stack``).

- ``make_stack`` (function): ``make_stack(emulator=..., settings=..., settings_file=True)`` starts a
  stack in its own folder under ``tmp_path`` (``settings_file``: write ``local.settings.json`` there, its
  path is ``stack.local_settings_path``); every stack is stopped after the test.
- ``intake_stack`` (module): one stack for a module of intake tests (fast emulator, one conversion worker).
- ``break_shard_line`` (function): ``break_shard_line(path, reason, times=None)`` makes the fan-out's
  per-image line writer raise ``OSError`` for the image ``path`` (on every call, or the first ``times``);
  returns the failure counter ``{"n": ...}``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.local_stack import INTAKE_CLOCK, host_less_stack


@pytest.fixture
def make_stack(tmp_path: Path) -> Iterator[Callable[..., Any]]:
    with ExitStack() as stacks:
        count = 0

        def make(
            *, emulator: Mapping[str, Any] | None = None, settings: Mapping[str, str] | None = None,
            settings_file: bool = False,
        ) -> Any:  # fmt: skip
            nonlocal count
            folder = tmp_path / f"stack-{count}"
            count += 1
            settings_path = folder.with_name(f"{folder.name}.local.settings.json") if settings_file else None
            return stacks.enter_context(
                host_less_stack(folder, emulator=emulator, settings=settings, settings_file=settings_path)
            )

        yield make


@pytest.fixture(scope="module")
def intake_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    with host_less_stack(
        tmp_path_factory.mktemp("intake-stack"), emulator=INTAKE_CLOCK, settings={"VISIONTUNE_CONVERT_WORKERS": "1"}
    ) as stack:
        yield stack


@pytest.fixture
def break_shard_line(monkeypatch: pytest.MonkeyPatch) -> Callable[..., dict[str, int]]:
    """Simulated worker deaths in a shard: the line of one image fails, always or the first ``times``."""
    from shared.pipeline import fanout

    original_line = fanout._line

    def break_line(path: str, reason: str, times: int | None = None) -> dict[str, int]:
        failures = {"n": 0}

        def failing_line(prompt: str, record: Any, jpeg: bytes) -> bytes:
            if record.path == path and (times is None or failures["n"] < times):
                failures["n"] += 1
                raise OSError(f"simulated: {reason}")
            return original_line(prompt, record, jpeg)

        monkeypatch.setattr(fanout, "_line", failing_line)
        return failures

    return break_line
