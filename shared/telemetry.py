"""Logs and traces worth paying for: quiet SDK loggers, one bounded summary per invocation, and the
run's dataset, version and state on every record and span of a pipeline step.

How it reaches Application Insights on Azure (Flex Consumption): ``host.json`` sets ``"telemetryMode":
"OpenTelemetry"`` and the app setting ``PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY=true`` makes the
Python worker configure the Azure Monitor OpenTelemetry distro (``azure-monitor-opentelemetry``, pinned
in requirements.txt) before it loads the app, with a handler on the root logger — as recommended by
Microsoft Learn, "Use OpenTelemetry with Azure Functions" (Python: Application Insights). That handler
turns every attribute of a ``logging.LogRecord`` that is not a standard one into a log attribute, which
Application Insights stores in ``customDimensions`` (the worker's own gRPC log forwarding, the
alternative, sends only the message text). Ingestion is keyless: the distro's exporter reads
``APPLICATIONINSIGHTS_AUTHENTICATION_STRING=ClientId=...;Authorization=AAD`` (set by infra). Its
per-HTTP-call instrumentations are switched off (``DISABLED_INSTRUMENTATIONS``).

What this module does, for any code that logs with ``logging``:

- ``configure_logging``: the Azure SDK and HTTP client loggers (``NOISY_LOGGERS``) at
  ``VISIONTUNE_SDK_LOG_LEVEL`` (WARNING by default): at INFO the SDK's HTTP logging policy writes a
  request and a response record for every storage call, i.e. per image of a drop.
- ``invocation``: wraps one function invocation; sets the ``visiontune.function`` dimension and logs ONE
  summary record at the end (INFO, or ERROR with the exception) with its duration and the counts
  the code ``note``-d on the way, whatever the size of the dataset.
- ``run_scope`` / ``set_run_state``: put ``visiontune.dataset``, ``visiontune.version`` and
  ``visiontune.run_state`` on every record created inside (a log record factory reads them from a
  context variable, so it works for every logger, the SDK's included).
- ``step``: a pipeline step: ``run_scope`` plus an OpenTelemetry span with the same attributes when the
  worker configured OpenTelemetry (no import of OpenTelemetry otherwise: cold start stays small).

Caveat: context variables do not follow work handed to other threads or processes; records emitted
there carry no dimensions (the converter's worker processes and the scoring threads do not log at INFO).
"""

from __future__ import annotations

import contextvars
import logging
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from shared.settings import Settings

log = logging.getLogger(__name__)

# Loggers of the Azure SDKs and HTTP clients the app uses (the OpenAI SDK logs through httpx/httpx2).
NOISY_LOGGERS = (
    "azure",
    "azure.core.pipeline.policies.http_logging_policy",
    "azure.identity",
    "azure.monitor.opentelemetry",
    "msal",
    "urllib3",
    "httpx",
    "httpx2",
    "httpcore",
    "openai",
)

# The distro instruments these HTTP client libraries by default: one span, i.e. one `dependencies` row,
# per HTTP call (per image of a drop). infra sets OTEL_PYTHON_DISABLED_INSTRUMENTATIONS to this list
# (the distro's opt-out; PyPI azure-monitor-opentelemetry, "Usage"); the pipeline's own step spans stay.
DISABLED_INSTRUMENTATIONS = ("azure_sdk", "requests", "urllib", "urllib3", "httpx", "httpx2")

PREFIX = "visiontune."
DATASET = PREFIX + "dataset"
VERSION = PREFIX + "version"
RUN_STATE = PREFIX + "run_state"
FUNCTION = PREFIX + "function"
STEP = PREFIX + "step"
# The dimensions that tie every record of a run together across invocations.
RUN_DIMENSIONS = (DATASET, VERSION, RUN_STATE)

_NO_DIMENSIONS: Mapping[str, str] = {}
_dimensions: contextvars.ContextVar[Mapping[str, str]] = contextvars.ContextVar(
    "visiontune_dimensions", default=_NO_DIMENSIONS
)
_facts: contextvars.ContextVar[dict[str, int | float | str] | None] = contextvars.ContextVar(
    "visiontune_facts", default=None
)
_install_lock = threading.Lock()
_installed_factory: Any = None


def configure_logging(sdk_log_level: str = "WARNING") -> None:
    """Set the SDK/HTTP loggers to ``sdk_log_level`` and install the dimension record factory (once).

    Idempotent and cheap: called at the start of every invocation."""
    level = logging.getLevelName(sdk_log_level.upper())
    if not isinstance(level, int):
        raise ValueError(f"unknown log level {sdk_log_level!r}")
    for name in NOISY_LOGGERS:
        logging.getLogger(name).setLevel(level)
    _install_record_factory()


def _install_record_factory() -> None:
    global _installed_factory
    with _install_lock:
        current = logging.getLogRecordFactory()
        if current is _installed_factory:
            return
        previous = current

        def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
            record = previous(*args, **kwargs)
            for key, value in _dimensions.get().items():
                record.__dict__.setdefault(key, value)
            return record

        logging.setLogRecordFactory(factory)
        _installed_factory = factory


def current_dimensions() -> dict[str, str]:
    """The dimensions records created here would carry (a copy)."""
    return dict(_dimensions.get())


@contextmanager
def _with_dimensions(values: Mapping[str, str | None]) -> Iterator[None]:
    merged = {**_dimensions.get(), **{k: str(v) for k, v in values.items() if v is not None}}
    token = _dimensions.set(merged)
    try:
        yield
    finally:
        _dimensions.reset(token)


@contextmanager
def run_scope(dataset: str, version: str | None = None, run_state: str | None = None) -> Iterator[None]:
    """Every record created inside carries the run's dataset, version and state (when given)."""
    with _with_dimensions({DATASET: dataset, VERSION: version, RUN_STATE: run_state}):
        yield


def set_run_state(run_state: str, version: str | None = None) -> None:
    """Change the run state (and version, once known) of the innermost scope, e.g. after a transition.

    A no-op outside any scope (a service called from the CLI or a test), so nothing outlives a scope."""
    if _dimensions.get() is _NO_DIMENSIONS:
        return
    changed = {**_dimensions.get(), RUN_STATE: str(run_state)}
    if version is not None:
        changed[VERSION] = str(version)
    _dimensions.set(changed)


def note(**facts: int | float | str) -> None:
    """Add counts or durations to the current invocation's summary record (ignored outside one).

    Numbers of the same name add up (two conversions in one invocation report their sum)."""
    current = _facts.get()
    if current is None:
        return
    for name, value in facts.items():
        if isinstance(value, (int, float)) and isinstance(current.get(name), (int, float)):
            current[name] = current[name] + value  # type: ignore[operator]
        else:
            current[name] = value


@contextmanager
def invocation(function_name: str, settings: Settings | None = None, **dimensions: str | None) -> Iterator[None]:
    """One function invocation: quiet loggers (``settings.sdk_log_level``), dimensions (``dataset=``,
    ``version=``... become ``visiontune.<name>``), and ONE summary record at the end.

    The summary is INFO ("<function> finished in 1.2 s: images=2000 ...") or, when the body raises,
    ERROR with the exception (then re-raised for the host's retry). Its ``customDimensions`` carry
    ``visiontune.duration_s`` and every ``note``-d fact as ``visiontune.<name>``."""
    configure_logging(settings.sdk_log_level if settings is not None else "WARNING")
    facts: dict[str, int | float | str] = {}
    facts_token = _facts.set(facts)
    start = time.perf_counter()
    try:
        with _with_dimensions({FUNCTION: function_name, **{PREFIX + k: v for k, v in dimensions.items()}}):
            try:
                yield
            except Exception:
                log.error(
                    "%s failed after %.1f s%s", function_name, time.perf_counter() - start, _facts_text(facts),
                    exc_info=True, extra=_summary_extra(facts, start),
                )  # fmt: skip
                raise
            log.info(
                "%s finished in %.1f s%s", function_name, time.perf_counter() - start, _facts_text(facts),
                extra=_summary_extra(facts, start),
            )  # fmt: skip
    finally:
        _facts.reset(facts_token)


def _facts_text(facts: Mapping[str, Any]) -> str:
    return (": " + ", ".join(f"{k}={v}" for k, v in facts.items())) if facts else ""


def _summary_extra(facts: Mapping[str, Any], start: float) -> dict[str, Any]:
    extra: dict[str, Any] = {PREFIX + "duration_s": round(time.perf_counter() - start, 3)}
    current = _dimensions.get()
    for name, value in facts.items():
        key = PREFIX + name
        if key not in current:  # never overwrite a dimension (logging refuses that with KeyError)
            extra[key] = value
    return extra


@contextmanager
def step(name: str, dataset: str, version: str | None = None, run_state: str | None = None) -> Iterator[None]:
    """A pipeline step of one run: ``run_scope`` plus a span ``visiontune.<name>`` carrying the same
    attributes (and the run state at the end) when OpenTelemetry is configured in this process."""
    with run_scope(dataset, version, run_state), _with_dimensions({STEP: name}):
        tracer = _tracer()
        if tracer is None:
            yield
            return
        with tracer.start_as_current_span(PREFIX + name, attributes=current_dimensions()) as span:
            try:
                yield
            finally:
                span.set_attributes(current_dimensions())


def _tracer() -> Any:
    """OpenTelemetry's tracer when the worker (or a test) loaded OpenTelemetry; never imports it."""
    trace = sys.modules.get("opentelemetry.trace")
    if trace is None:
        return None
    return trace.get_tracer("visiontune")
