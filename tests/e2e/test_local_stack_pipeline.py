"""End to end on the local stack the way it runs in production: ``visiontune push`` writes blobs, the
functions host turns them into blob-trigger calls of ``function_app.py`` and fires its timers; every blob
trigger is then replayed 10 times through the host (as Event Grid may), and the result is read back with
the HTTP ``status`` function and ``visiontune status`` / ``report``."""

from __future__ import annotations

import json
import time

import pytest

from cli.main import main
from tests.fixtures.local_stack import PIPELINE_SETTINGS
from tests.fixtures.pipeline import FAST_CLOCK


@pytest.fixture
def stack(make_stack):
    return make_stack(emulator={**FAST_CLOCK, "record_requests": True}, settings=PIPELINE_SETTINGS, settings_file=True)


def test_push_to_promoted_through_the_functions_host_with_every_trigger_replayed(
    stack, tmp_path, digits_dir, capsys
):
    from local.emulator.admin import EmulatorAdmin
    from shared.pipeline.store import RunStore
    from shared.settings import Settings

    settings_file = stack.local_settings_path
    settings = Settings.model_validate(stack.settings)
    assert main(["push", str(digits_dir), "--dataset", "digits", "--settings", str(settings_file)]) == 0
    capsys.readouterr()

    fired = stack.host.run_until_idle(timeout=120)
    outcomes = {(i.function_name, i.outcome) for i in fired}
    assert ("dataset_ready", "succeeded") in outcomes and ("training_ready", "succeeded") in outcomes, fired
    [run] = RunStore.from_settings(settings).list("digits")
    assert run.state.value == "training"
    manifest = f"training/digits/{run.version}/manifest.json"

    for _ in range(10):  # at-least-once delivery: the same events again
        assert stack.host.tick("dataset_ready", "datasets/digits/_READY").succeeded
        assert stack.host.tick("training_ready", manifest).succeeded
    deadline = time.monotonic() + 120
    while True:
        run = RunStore.from_settings(settings).get("digits", run.version)
        if run.terminal and run.report_written_for == run.state.value:
            break
        assert time.monotonic() < deadline, run.transitions
        assert stack.host.tick("advance_runs").succeeded
        time.sleep(0.1)
    assert run.state.value == "promoted", [t.detail for t in run.transitions]
    for _ in range(10):
        assert stack.host.tick("advance_runs").succeeded
    assert stack.host.run_until_idle(timeout=60) == []  # nothing new to fire: no blob changed again

    stats = EmulatorAdmin(stack.emulator.url).stats()
    assert stats.count("fine_tuning_jobs_create") == 1
    assert stats.count("deployments_create_or_update") == 1
    assert stats.count("files_create") == 3

    response = stack.host.tick("status").response
    body = json.loads(response.get_body())
    [entry] = body["datasets"]
    assert entry["production"]["version"] == run.version and entry["runs"][0]["state"] == "promoted"

    assert main(["status", "--settings", str(settings_file), "--json"]) == 0
    assert (
        json.loads(capsys.readouterr().out)["datasets"][0]["production"]["model"] == run.job.fine_tuned_model
    )
    out = tmp_path / "reports"
    assert main(["report", "digits", "--settings", str(settings_file), "--out", str(out)]) == 0
    report = json.loads((out / "digits" / run.version / "report.json").read_text())
    assert report["outcome"] == "promoted" and report["decision"]["promoted"]
    assert (out / "digits" / run.version / "report.html").stat().st_size > 1000
    # The classic baseline ran inside the advance_runs timer: trained and scored on the same splits, priced,
    # reported beside the models with its verdict, and never part of the decision.
    assert run.classic is not None and run.classic.status == "scored"
    assert report["decision"]["baseline_role"] == "base"
    classic = report["classic"]
    assert classic["metrics"]["n"] == report["candidate"]["metrics"]["n"] == run.splits["test"]["examples"]
    assert report["classic_baseline"]["train_examples"] == run.splits["train"]["examples"]
    assert report["classic_baseline"]["total_usd"] > 0 and report["classic_baseline"]["latency_ms_per_image"] > 0
    sentence = report["classic_baseline"]["verdict"]["sentence"]
    assert sentence in (out / "digits" / run.version / "report.md").read_text()

    # Every request the run sent is declared by the spec of the API version it named (issue 9).
    from local.emulator.strict import spec_violations

    records = EmulatorAdmin(stack.emulator.url).requests()
    routes = {r["route"] for r in records}
    assert routes >= {
        "files_create", "fine_tuning_jobs_create", "batches_create", "chat_completions", "deployments_create_or_update"
    }
    assert spec_violations(records) == []


def test_zip_drop_reaches_the_archive_trigger_as_a_blob_client_and_trains(stack, tmp_path, digits_dir):
    """``datasets/<name>.zip`` through the functions host: the archive trigger is bound as an SDK-type
    ``BlobClient`` (the host downloads nothing; the intake streams the archive with ranged reads) and the
    run starts training with every example of the folder."""
    import zipfile

    from azure.storage.blob import BlobServiceClient

    from shared.pipeline.store import RunStore
    from shared.settings import Settings

    archive = tmp_path / "digitszip.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        for image in sorted(p for p in digits_dir.rglob("*") if p.is_file()):
            zipped.write(image, image.relative_to(digits_dir).as_posix())
    service = BlobServiceClient.from_connection_string(stack.settings["AzureWebJobsStorage"])
    service.get_blob_client("datasets", "digitszip.zip").upload_blob(archive.read_bytes(), overwrite=True)

    assert stack.host.function("dataset_archive_ready").deferred
    fired = stack.host.run_until_idle(timeout=120)
    outcomes = {(i.function_name, i.outcome) for i in fired}
    assert ("dataset_archive_ready", "succeeded") in outcomes, fired
    assert ("training_ready", "succeeded") in outcomes, fired
    [run] = RunStore.from_settings(Settings.model_validate(stack.settings)).list("digitszip")
    assert run.state.value == "training"
    images = sum(1 for p in digits_dir.rglob("*") if p.is_file())
    assert sum(int(split["examples"]) for split in run.splits.values()) == images
