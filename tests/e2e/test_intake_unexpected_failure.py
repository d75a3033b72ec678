"""Issue 13: the local stack never leaves a marker without a run or an intake report. An exception no
check foresaw (here: raised inside the conversion) still ends in an intake report, written on the failing
attempt, while the trigger retries and finally poisons the message; a retry that succeeds clears it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.log_volume import synthetic_drop, upload_drop


@pytest.fixture(scope="module")
def stack(intake_stack):
    return intake_stack


def _intake_report(service, dataset: str) -> dict | None:
    from azure.core.exceptions import ResourceNotFoundError

    try:
        blob = service.get_container_client("reports").get_blob_client(f"{dataset}/intake/report.json")
        return json.loads(blob.download_blob().readall())
    except ResourceNotFoundError:
        return None


def test_an_unexpected_error_in_conversion_ends_in_an_intake_report(stack, tmp_path: Path, monkeypatch) -> None:
    from azure.storage.blob import BlobServiceClient

    from shared.conversion import decisions

    def broken(records):
        raise RuntimeError("injected fault in the converter")

    service = BlobServiceClient.from_connection_string(stack.settings["AzureWebJobsStorage"])
    upload_drop(service, "faulty", synthetic_drop(tmp_path / "faulty", 12))
    monkeypatch.setattr(decisions, "resolve_duplicates", broken)
    failed = stack.host.tick("dataset_ready", "datasets/faulty/_READY")
    assert failed.outcome == "poisoned", (failed.outcome, failed.error)
    assert failed.attempts == stack.host.max_attempts  # retried: the cause might have been transient
    report = _intake_report(service, "faulty")
    assert report is not None, "the marker was left without a run or an intake report"
    assert report["failure"]["stage"] == "intake", report["failure"]
    assert "RuntimeError: injected fault in the converter" in report["failure"]["message"]
    assert list(service.get_container_client("runs").list_blobs(name_starts_with="faulty/")) == []

    # the fault gone, the drop again: the run exists and the stale report is cleared
    monkeypatch.undo()
    upload_drop(service, "faulty", synthetic_drop(tmp_path / "faulty-again", 12))
    fixed = stack.host.tick("dataset_ready", "datasets/faulty/_READY")
    assert fixed.succeeded, fixed.error
    assert _intake_report(service, "faulty") is None
    assert [b.name for b in service.get_container_client("runs").list_blobs(name_starts_with="faulty/")]
