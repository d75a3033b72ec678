"""The local host indexes the REAL function_app.py: every function with the bindings declared in functions/
(the handlers are not called: they need the pipeline services)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from local.host.host import LocalFunctionsHost
from local.host.indexing import IndexingError
from shared.layout import DATASET_ARCHIVE_PATH, DATASET_READY_PATH, SHARD_QUEUE, TRAINING_MANIFEST_PATH
from tests.fixtures.function_app import APP_FUNCTION_NAMES

REPO_ROOT = Path(__file__).resolve().parents[3]
SCHEDULES = {"VISIONTUNE_ADVANCE_SCHEDULE": "*/10 * * * * *", "VISIONTUNE_EVALUATION_SCHEDULE": "0 0 3 * * *"}


def test_real_app_has_its_functions_with_their_declared_bindings():
    host = LocalFunctionsHost(REPO_ROOT, settings=SCHEDULES, use_local_settings_file=False)
    try:
        functions = {f.name: f for f in host.functions()}
    finally:
        host.stop()
    assert set(functions) == APP_FUNCTION_NAMES
    blob_paths = {
        name: (f.path, f.connection, f.source)
        for name, f in functions.items()
        if f.trigger_type == "blobTrigger"
    }
    assert blob_paths == {
        "dataset_ready": (DATASET_READY_PATH, "AzureWebJobsStorage", "EventGrid"),
        "dataset_archive_ready": (DATASET_ARCHIVE_PATH, "AzureWebJobsStorage", "EventGrid"),
        "training_ready": (TRAINING_MANIFEST_PATH, "AzureWebJobsStorage", "EventGrid"),
    }
    # The .zip trigger binds azurefunctions.extensions.bindings.blob.BlobClient: a client, not the bytes.
    assert {name for name, f in functions.items() if f.deferred} == {"dataset_archive_ready"}
    assert functions["advance_runs"].schedule == "*/10 * * * * *"
    assert functions["scheduled_evaluation"].schedule == "0 0 3 * * *"
    assert functions["advance_runs"].binding["schedule"] == "%VISIONTUNE_ADVANCE_SCHEDULE%"
    status = functions["status"]
    assert (status.trigger_type, status.route, status.methods) == (
        "httpTrigger",
        "status/{dataset?}",
        ("GET",),
    )
    assert [o["name"] for o in status.outputs] == ["$return"]
    shard = functions["convert_shard"]
    assert (shard.trigger_type, shard.queue_name, shard.connection) == ("queueTrigger", SHARD_QUEUE, "AzureWebJobsStorage")
    for name in ("dataset_ready", "dataset_archive_ready"):
        assert [(o["type"], o["queueName"]) for o in functions[name].outputs] == [("queue", SHARD_QUEUE)], name


def test_real_app_without_schedule_settings_fails_naming_the_setting(monkeypatch):
    monkeypatch.delenv("VISIONTUNE_ADVANCE_SCHEDULE", raising=False)
    before = os.environ.get("VISIONTUNE_EVALUATION_SCHEDULE")
    with pytest.raises(IndexingError, match="VISIONTUNE_ADVANCE_SCHEDULE"):
        LocalFunctionsHost(
            REPO_ROOT,
            settings={"VISIONTUNE_EVALUATION_SCHEDULE": "0 0 3 * * *"},
            use_local_settings_file=False,
        )
    # a failed start leaves the environment as it was
    assert os.environ.get("VISIONTUNE_EVALUATION_SCHEDULE") == before
