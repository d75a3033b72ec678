"""Log volume on the local stack (issue 15): an intake of 2,000 images logs no more records at INFO than
one of 20, through the local functions host that forwards records the way the Functions Python worker
does (a root handler at INFO, attributed to the invocation running on the thread), and every record of
a run carries the dataset, version and run state as custom dimensions."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.log_volume import synthetic_drop, upload_drop

# One summary record per invocation; the slack is for a warning a slow machine may cause, never per file.
MAX_RECORDS_PER_INVOCATION = 3
RUN_DIMENSIONS = ("visiontune.dataset", "visiontune.version", "visiontune.run_state")


@pytest.fixture(scope="module")
def stack(intake_stack):
    return intake_stack


def intake_and_training(stack, tmp_path: Path, dataset: str, images: int) -> list:
    from azure.storage.blob import BlobServiceClient

    service = BlobServiceClient.from_connection_string(stack.settings["AzureWebJobsStorage"])
    upload_drop(service, dataset, synthetic_drop(tmp_path / dataset, images))
    intake = stack.host.tick("dataset_ready", f"datasets/{dataset}/_READY")
    assert intake.succeeded, intake.error
    [manifest] = [
        b.name
        for b in service.get_container_client("training").list_blobs(name_starts_with=f"{dataset}/")
        if b.name.endswith("/manifest.json")
    ]
    training = stack.host.tick("training_ready", f"training/{manifest}")
    assert training.succeeded, training.error
    return [intake, training]


def test_intake_of_2000_images_logs_as_few_records_as_20_and_every_record_has_the_run(
    stack, tmp_path: Path
) -> None:
    small = intake_and_training(stack, tmp_path, "few", 20)
    large = intake_and_training(stack, tmp_path, "many", 2000)

    for few, many in zip(small, large, strict=True):
        shown = [(r["level"], r["logger"], r["message"][:80]) for r in many.logs[:10]]
        assert many.log_count == few.log_count, (many.function_name, few.log_count, many.log_count, shown)
        assert 1 <= many.log_count <= MAX_RECORDS_PER_INVOCATION, (many.function_name, shown)

    [intake, training] = large
    summary = intake.logs[-1]
    assert summary["message"].startswith("dataset_ready finished in "), summary
    assert summary["dimensions"]["visiontune.examples"] == "2000", summary
    version = summary["dimensions"]["visiontune.version"]
    for invocation in (*small, *large):
        for record in invocation.logs:
            missing = [d for d in RUN_DIMENSIONS if d not in record["dimensions"]]
            assert not missing, (invocation.function_name, record["message"], missing)
    assert {r["dimensions"]["visiontune.version"] for r in training.logs} == {version}
    assert training.logs[-1]["dimensions"]["visiontune.run_state"] == "training"


def test_the_sdk_logs_come_back_when_the_setting_turns_them_up(stack, tmp_path: Path, monkeypatch) -> None:
    """VISIONTUNE_SDK_LOG_LEVEL=INFO: the HTTP logging policy's per-request lines are there again."""
    monkeypatch.setenv("VISIONTUNE_SDK_LOG_LEVEL", "INFO")
    try:
        [intake, _] = intake_and_training(stack, tmp_path, "loud", 20)
    finally:
        from shared.telemetry import configure_logging

        configure_logging("WARNING")
    loggers = {r["logger"] for r in intake.logs}
    assert "azure.core.pipeline.policies.http_logging_policy" in loggers, loggers
    assert intake.log_count > 20, intake.log_count


def test_every_record_of_a_runs_advance_carries_the_run(stack, tmp_path: Path, monkeypatch) -> None:
    """advance_runs: the records of each run's work (its state changes, its warnings) carry the run's
    dataset, version and current state; runs the tick has no time for are a count on its summary."""
    import time

    intake_and_training(stack, tmp_path, "ticked", 20)
    # a tick with no budget left for anyone: no per-run line, a count on the summary
    monkeypatch.setenv("VISIONTUNE_EVAL_TICK_SECONDS", "0.000001")
    starved = stack.host.tick("advance_runs")
    assert starved.succeeded, starved.error
    assert [r["message"] for r in starved.logs if "waits" in r["message"]] == []
    assert int(starved.logs[-1]["dimensions"]["visiontune.runs_waiting_for_next_tick"]) >= 1, starved.logs[-1]
    monkeypatch.delenv("VISIONTUNE_EVAL_TICK_SECONDS")
    per_run = []
    deadline = time.monotonic() + 120
    while not per_run:  # until the run's work logs at INFO (its end: promoted or rejected)
        assert time.monotonic() < deadline, [r["message"] for r in per_run]
        tick = stack.host.tick("advance_runs")
        assert tick.succeeded, tick.error
        assert tick.logs[-1]["message"].startswith("advance_runs finished in "), tick.logs[-1]
        assert tick.log_count <= 10, [r["message"] for r in tick.logs]  # bounded, whatever the run count
        per_run += [r for r in tick.logs[:-1] if r["dimensions"].get("visiontune.dataset") == "ticked"]
        time.sleep(0.2)
    for record in per_run:
        missing = [d for d in RUN_DIMENSIONS if d not in record["dimensions"]]
        assert not missing, (record["message"], missing)
    assert {r["dimensions"]["visiontune.version"] for r in per_run} == {per_run[0]["dimensions"]["visiontune.version"]}
    from azure.storage.blob import BlobServiceClient

    from shared.pipeline.store import RunStore

    service = BlobServiceClient.from_connection_string(stack.settings["AzureWebJobsStorage"])
    [run] = RunStore(  # the state on the last record is the run's state when it was logged
        service.get_container_client("runs")
    ).list("ticked")
    assert per_run[-1]["dimensions"]["visiontune.run_state"] == run.state.value, (per_run[-1], run.state)
    assert per_run[-1]["dimensions"]["visiontune.version"] == run.version

