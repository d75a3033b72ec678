"""The whole loop on the local stack (Azurite + emulator), the services called as the triggers call them,
with every trigger replayed 10 times (also concurrently): one job, one candidate deployment, one promotion."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from shared.pipeline.intake import accept_dataset
from shared.pipeline.training import start_training
from tests.fixtures.pipeline import PROMOTED_PATH


def test_drop_to_promoted_with_every_trigger_replayed_ten_times(pipeline_env, digits_dir):
    env = pipeline_env
    intake = env.drop(digits_dir, "digits")
    assert intake is not None and intake.published and intake.run_created
    run = env.run("digits", intake.version)
    assert run.state.value == "converted" and len(run.labels) == 10

    # dataset_ready replayed (at-least-once delivery): same version, nothing published again, one run
    replays = [accept_dataset(env.settings, "digits", archive=False, marker_body=b"") for _ in range(10)]
    assert {r.version for r in replays} == {intake.version}
    assert not any(r.published or r.run_created for r in replays)
    # without the intake receipts (a replay after they were lost) it converts again: same version, no publish
    runs = env.service.get_container_client("runs")
    for blob in runs.list_blobs(name_starts_with="digits/_intake/"):
        runs.delete_blob(blob.name)
    again = accept_dataset(env.settings, "digits", archive=False, marker_body=b"")
    assert (again.version, again.published, again.run_created) == (intake.version, False, False)

    # training_ready delivered 10 times at once: the lease lets one worker start it, the rest step aside
    with ThreadPoolExecutor(10) as pool:
        list(pool.map(lambda _: start_training(env.settings, "digits", intake.version), range(10)))
    run = env.run("digits", intake.version)
    assert run.state.value == "training", env.timeline(run)
    assert run.job.job_id and all(f.file_id for f in run.files)

    run = env.drive_run("digits", intake.version, {"promoted", "rejected", "failed"})
    assert run.state.value == "promoted", env.timeline(run)
    env.drive(lambda: env.run("digits", intake.version).report_written_for == "promoted")

    # every trigger again, 10 times each, after the end
    for _ in range(10):
        accept_dataset(env.settings, "digits", archive=False, marker_body=b"")
        start_training(env.settings, "digits", intake.version)
        env.advance()

    run = env.run("digits", intake.version)
    assert run.state.value == "promoted"
    stats = env.admin.stats()
    assert stats.count("fine_tuning_jobs_create") == 1 and len(env.jobs()) == 1
    assert stats.count("deployments_create_or_update") == 1
    assert stats.count("files_create") == 3  # train, validation, the base model's batch input
    assert stats.count("batches_create") == 1
    production = env.production("digits")
    assert production["version"] == intake.version and production["model"] == run.job.fine_tuned_model
    assert len(production["history"]) == 1
    assert run.decision.promoted and run.decision.baseline_role == "base"
    assert run.scores["candidate"] > run.scores["base"]
    report = env.report("digits", intake.version)
    assert report["outcome"] == "promoted"
    assert report["candidate"]["metrics"]["n"] == run.evaluation["candidate"].total
    assert report["base"]["method"] == "batch" and report["candidate"]["method"] == "realtime"
    # the run's files were deleted from the resource; the candidate now serves production
    assert not [f for f in env.files() if f.purpose in ("fine-tune", "batch")]
    assert env.deployments()[run.candidate.name].succeeded
    assert [t.state for t in run.transitions if t.state != run.transitions[0].state].count("promoted") >= 1
    assert env.state_path(run) == PROMOTED_PATH
