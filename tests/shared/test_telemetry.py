"""shared/telemetry.py: quiet SDK loggers, one summary per invocation, run dimensions on every record,
and what the Azure Monitor OpenTelemetry handler and exporter make of them (customDimensions)."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from shared import telemetry
from shared.settings import Settings


class Keep(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def kept() -> Iterator[Keep]:
    """Every record that reaches the root logger at INFO (as the Functions worker forwards them)."""
    root = logging.getLogger()
    handler = Keep()
    level = root.level
    levels = {name: logging.getLogger(name).level for name in telemetry.NOISY_LOGGERS}
    root.setLevel(logging.INFO)
    root.addHandler(handler)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
        for name, previous in levels.items():
            logging.getLogger(name).setLevel(previous)


def dims(record: logging.LogRecord) -> dict[str, object]:
    return {k: v for k, v in vars(record).items() if k.startswith(telemetry.PREFIX)}


def test_sdk_loggers_are_quiet_unless_the_setting_turns_them_up(kept: Keep) -> None:
    policy = logging.getLogger("azure.core.pipeline.policies.http_logging_policy")
    telemetry.configure_logging(Settings().sdk_log_level)
    policy.info("Request URL: 'https://example.blob.core.windows.net/datasets/a.png'")
    logging.getLogger("httpx2").info("HTTP Request: POST ...")
    logging.getLogger("azure.storage.blob").warning("a real problem")
    assert [r.getMessage() for r in kept.records] == ["a real problem"]

    telemetry.configure_logging(Settings(VISIONTUNE_SDK_LOG_LEVEL="INFO").sdk_log_level)
    policy.info("Request URL: 'https://example.blob.core.windows.net/datasets/b.png'")
    assert kept.records[-1].name == policy.name
    with pytest.raises(ValueError, match="log level"):
        telemetry.configure_logging("LOUD")


def test_an_invocation_logs_one_summary_with_counts_and_the_run_dimensions(kept: Keep) -> None:
    with telemetry.invocation("dataset_ready", Settings(), dataset="dogs"):
        logging.getLogger("azure.core.pipeline.policies.http_logging_policy").info("Response status: 201")
        logging.getLogger("shared.pipeline.intake").warning("dogs: something worth a look")
        telemetry.set_run_state("converted", "v1")
        telemetry.note(examples=10, rejected=2)
        telemetry.note(examples=5, outcome="published")
    assert [r.levelname for r in kept.records] == ["WARNING", "INFO"]
    warning, summary = kept.records
    assert dims(warning) == {
        "visiontune.function": "dataset_ready", "visiontune.dataset": "dogs",
    }  # fmt: skip
    assert summary.getMessage().startswith("dataset_ready finished in ")
    assert "examples=15, rejected=2, outcome=published" in summary.getMessage()
    assert dims(summary) | {"visiontune.duration_s": 0} == {
        "visiontune.function": "dataset_ready",
        "visiontune.dataset": "dogs",
        "visiontune.version": "v1",
        "visiontune.run_state": "converted",
        "visiontune.duration_s": 0,
        "visiontune.examples": 15,
        "visiontune.rejected": 2,
        "visiontune.outcome": "published",
    }
    # Outside an invocation nothing is added, notes are dropped and a run state is not kept for later.
    telemetry.note(examples=1)
    telemetry.set_run_state("training", "v2")
    logging.getLogger("x").warning("after")
    assert dims(kept.records[-1]) == {}


def test_a_failing_invocation_logs_one_error_with_the_exception_and_reraises(kept: Keep) -> None:
    with pytest.raises(RuntimeError, match="storage is down"):
        with telemetry.invocation("training_ready", Settings(), dataset="dogs", version="v1"):
            telemetry.set_run_state("uploading")
            raise RuntimeError("storage is down")
    [record] = kept.records
    assert record.levelno == logging.ERROR and record.exc_info is not None
    assert dims(record)["visiontune.run_state"] == "uploading"
    assert dims(record)["visiontune.version"] == "v1"


def test_scopes_nest_and_restore_and_extra_keys_never_collide(kept: Keep) -> None:
    telemetry.configure_logging()
    with telemetry.run_scope("dogs", "v1", "training"):
        with telemetry.step("poll", "dogs", "v1", "training"):
            telemetry.set_run_state("trained")
            logging.getLogger("shared.pipeline").info("inside", extra={"visiontune.examples": 3})
        logging.getLogger("shared.pipeline").info("after the step")
    inside, after = kept.records
    assert dims(inside) == {
        "visiontune.dataset": "dogs", "visiontune.version": "v1", "visiontune.run_state": "trained",
        "visiontune.step": "poll", "visiontune.examples": 3,
    }  # fmt: skip
    assert dims(after)["visiontune.run_state"] == "training" and "visiontune.step" not in dims(after)
    # A caller's extra= with a dimension's name is refused by logging itself; note() avoids that.
    with telemetry.invocation("status", Settings(), dataset="dogs"):
        telemetry.note(dataset="cats")
    assert dims(kept.records[-1])["visiontune.dataset"] == "dogs"


def test_the_azure_monitor_exporter_puts_the_dimensions_in_custom_dimensions(kept: Keep) -> None:
    """The handler the worker's distro puts on the root logger and the exporter's own envelope
    conversion: what Application Insights stores as customDimensions."""
    pytest.importorskip("azure.monitor.opentelemetry.exporter")
    from azure.monitor.opentelemetry.exporter.export.logs._exporter import _convert_log_to_envelope
    from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
    from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor

    exporter = InMemoryLogRecordExporter()
    provider = LoggerProvider()
    provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
    with pytest.warns(DeprecationWarning):
        handler = LoggingHandler(level=logging.INFO, logger_provider=provider)
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        with telemetry.invocation("dataset_ready", Settings(), dataset="dogs"):
            telemetry.set_run_state("converted", "v1")
            telemetry.note(examples=2000)
    finally:
        root.removeHandler(handler)
    [exported] = exporter.get_finished_logs()
    properties = _convert_log_to_envelope(exported).data.base_data.properties
    assert properties["visiontune.dataset"] == "dogs"
    assert properties["visiontune.version"] == "v1"
    assert properties["visiontune.run_state"] == "converted"
    assert properties["visiontune.examples"] == "2000"


def test_a_step_is_a_span_with_the_run_attributes_when_opentelemetry_is_loaded() -> None:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    original = telemetry._tracer
    telemetry._tracer = lambda: provider.get_tracer("visiontune")  # type: ignore[assignment]
    try:
        with pytest.raises(ValueError):
            with telemetry.step("deploy", "dogs", "v1", "trained"):
                telemetry.set_run_state("deploying")
                raise ValueError("quota")
    finally:
        telemetry._tracer = original  # type: ignore[assignment]
    [span] = exporter.get_finished_spans()
    assert span.name == "visiontune.deploy"
    assert span.attributes["visiontune.dataset"] == "dogs"
    assert span.attributes["visiontune.version"] == "v1"
    assert span.attributes["visiontune.run_state"] == "deploying"
    assert not span.status.is_ok


def test_no_opentelemetry_import_of_its_own() -> None:
    import subprocess
    import sys

    code = (
        "import sys, logging; from shared import telemetry; telemetry.configure_logging();"
        "\nwith telemetry.step('poll', 'dogs'): logging.getLogger('x').warning('w')"
        "\nassert not [m for m in sys.modules if m.startswith('opentelemetry')], 'imported OpenTelemetry'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
