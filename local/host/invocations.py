"""What the local host records of each function call: ``Invocation``, and the log handler that keeps
the records a handler emits on its invocation.

Logs as the Functions Python worker forwards them: a handler on the root logger (set to INFO while the
host lives) takes every record at INFO and above that a handler emits on its own thread, and keeps it on
the ``Invocation`` (``log_count``, the first ``MAX_KEPT_LOGS`` in ``logs``, each with the custom
dimensions the Azure Monitor OpenTelemetry handler would send: the record's non-standard attributes).
Records from threads the handler starts are not attributed (the worker sends them without an
invocation id).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from local.host.indexing import FunctionInfo

log = logging.getLogger("visiontune.local.host")

# Records kept per invocation (all are counted).
MAX_KEPT_LOGS = 200
# The standard LogRecord attributes; every other attribute is a custom dimension (as the OpenTelemetry
# logging handler turns them into log attributes).
_STANDARD_RECORD_ATTRIBUTES = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime"}

SUCCEEDED = "succeeded"
FAILED = "failed"
POISONED = "poisoned"
SKIPPED = "skipped"


@dataclass
class Invocation:
    """One call of a function (with its retries): what fired it, how it ended, how long it took.

    ``outcome`` is ``succeeded``, ``failed`` (timer/http error), ``poisoned`` (blob trigger failed on
    every attempt; a poison message was written) or ``skipped`` (the blob changed or vanished between
    listing and reading; the next scan fires for the new version). ``error`` is the last error's text.
    """

    function_name: str
    trigger_type: str
    trigger_detail: str
    blob_name: str | None = None  # "<container>/<blob>"
    etag: str | None = None
    schedule: str | None = None
    attempts: int = 0
    outcome: str = "pending"
    error: str | None = None
    duration: float = 0.0  # seconds, all attempts
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    response: Any = field(default=None, repr=False)  # http: the azure.functions.HttpResponse
    log_count: int = 0  # records at INFO and above the handler emitted (see the module docstring)
    logs: list[dict[str, Any]] = field(default_factory=list, repr=False)  # the first MAX_KEPT_LOGS

    def add_log(self, record: logging.LogRecord) -> None:
        """Count ``record``; keep its level, logger, message and custom dimensions (values as text)."""
        self.log_count += 1
        if len(self.logs) < MAX_KEPT_LOGS:
            self.logs.append(
                {
                    "level": record.levelname,
                    "logger": record.name,
                    "message": record.getMessage(),
                    "dimensions": {
                        k: str(v) for k, v in vars(record).items() if k not in _STANDARD_RECORD_ATTRIBUTES
                    },
                }
            )

    @property
    def succeeded(self) -> bool:
        return self.outcome == SUCCEEDED

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (no response object, no kept log records: ``log_count`` says how many)."""
        data = asdict(self)
        data.pop("response")
        data.pop("logs")
        data["started_at"] = self.started_at.isoformat()
        return data

    def log_line(self) -> str:
        etag = f" etag={self.etag}" if self.etag else ""
        error = f" error={self.error.splitlines()[-1]!r}" if self.error and self.outcome != SUCCEEDED else ""
        return (
            f"{self.function_name} [{self.trigger_type} {self.trigger_detail}]{etag} "
            f"attempts={self.attempts} outcome={self.outcome} duration={self.duration * 1000:.0f}ms{error}"
        )


def finish(history: deque[Invocation], invocation: Invocation, start: float) -> None:
    """Set the duration since ``start`` (``time.perf_counter()``), keep ``invocation`` in ``history`` and log
    it (a warning unless it succeeded or was skipped)."""
    invocation.duration = time.perf_counter() - start
    history.append(invocation)
    level = logging.INFO if invocation.outcome in (SUCCEEDED, SKIPPED) else logging.WARNING
    log.log(level, "%s", invocation.log_line())


@dataclass(frozen=True)
class InvocationRunner:
    """What a trigger kind runs its invocations with: ``call(info, trigger value, binding data,
    invocation)`` (the handler with its bindings), the ``pool`` they run on, ``finish(invocation, start)``
    once each has ended, and the host's ``stop`` event (set when the host stops)."""

    call: Callable[[FunctionInfo, Any, dict[str, str], Invocation], Any]
    pool: ThreadPoolExecutor
    finish: Callable[[Invocation, float], None]
    stop: threading.Event


class InvocationLogs(logging.Handler):
    """The worker's root handler: records at INFO and above, attributed to the invocation whose handler
    runs on the emitting thread (the worker keeps the invocation id in a thread-local the same way)."""

    def __init__(self) -> None:
        super().__init__(level=logging.INFO)
        self._current = threading.local()
        self._saved_root_level = logging.NOTSET

    def emit(self, record: logging.LogRecord) -> None:
        invocation: Invocation | None = getattr(self._current, "invocation", None)
        if invocation is not None:
            invocation.add_log(record)

    @contextmanager
    def attributed_to(self, invocation: Invocation | None) -> Iterator[None]:
        """Records emitted on this thread inside the block are kept on ``invocation``."""
        previous = getattr(self._current, "invocation", None)
        self._current.invocation = invocation
        try:
            yield
        finally:
            self._current.invocation = previous

    def install(self) -> None:
        """Add this handler to the root logger and lower the root level to INFO if it is above."""
        root = logging.getLogger()
        self._saved_root_level = root.level
        root.setLevel(min(root.getEffectiveLevel(), logging.INFO))
        root.addHandler(self)

    def remove(self) -> None:
        """Take this handler off the root logger and put the root level back."""
        root = logging.getLogger()
        root.removeHandler(self)
        root.setLevel(self._saved_root_level)
