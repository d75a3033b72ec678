"""Every failed or cancelled run can be retried (issue 13, item 1): dropping the dataset again, or
``visiontune retry DATASET VERSION``, restarts it from the stage it stopped in and reuses what exists.
The paid-for dead end: a run whose training succeeded but whose deployment failed deploys again with the
same fine-tuned model, without a second job."""

from __future__ import annotations

import pytest

from shared.pipeline.failures import STAGE_MIN_ATTEMPTS
from shared.pipeline.models import DeploymentInfo, Failure, JobInfo, Run, RunState, UploadedFile, utcnow
from shared.pipeline.retry import reopen_for_retry, retry_point
from shared.pipeline.training import start_training

ENDED = {"failed", "promoted", "rejected", "cancelled"}


def _failed_run(**fields) -> Run:
    run = Run(dataset="d", version="v", **fields)
    run.state = RunState.FAILED
    run.failure = Failure(stage="deploy", message="QuotaExceeded", at=utcnow())
    return run


def test_retry_points_reuse_what_exists():
    trained = _failed_run(
        job=JobInfo(job_id="ftjob-1", status="succeeded", fine_tuned_model="ft-model"),
        candidate=DeploymentInfo(name="cand", model="ft-model", sku="Standard", deleted_at=utcnow(), attempts=8),
    )
    assert retry_point(trained) is RunState.TRAINED
    assert reopen_for_retry(trained, "test") is RunState.TRAINED
    assert trained.job.job_id == "ftjob-1" and trained.candidate is None and trained.failure is None
    running = _failed_run(job=JobInfo(job_id="ftjob-2", status="running"))
    assert retry_point(running) is RunState.TRAINING
    files = [UploadedFile(split="train", name="t", blob="b", size=1, file_id="file-1", deleted=True)]
    failed_job = _failed_run(files=files, job=JobInfo(job_id="ftjob-3", status="failed"))
    assert reopen_for_retry(failed_job, "test") is RunState.UPLOADING
    assert failed_job.job.job_id is None and failed_job.files[0].file_id is None  # deleted: uploaded again
    assert retry_point(_failed_run()) is RunState.CONVERTED
    promoted = Run(dataset="d", version="v", state=RunState.PROMOTED)
    with pytest.raises(ValueError, match="only failed or cancelled"):
        reopen_for_retry(promoted, "test")


def test_a_run_that_failed_at_deploy_after_training_is_retried_by_dropping_it_again(pipeline_env, digits_dir):
    env = pipeline_env
    env.admin.fail_next_deployments(STAGE_MIN_ATTEMPTS["deploy"], phase="initial")
    intake = env.drop(digits_dir, "digits")
    start_training(env.settings, "digits", intake.version)
    run = env.drive_run("digits", intake.version, ENDED)
    assert run.state.value == "failed" and run.failure.stage == "deploy", env.timeline(run)
    job_id, model = run.job.job_id, run.job.fine_tuned_model
    assert model  # training was paid for
    env.drive(lambda: env.run("digits", intake.version).report_written_for == "failed")

    again = env.drop(digits_dir, "digits")  # the same data: the same version
    assert again is not None and again.version == intake.version and not again.run_created
    reopened = env.run("digits", intake.version)
    assert reopened.state.value == "trained", env.timeline(reopened)
    assert "retry (the dataset was dropped again): was failed at deploy" in env.timeline(reopened)

    run = env.drive_run("digits", intake.version, ENDED)
    assert run.state.value in ("promoted", "rejected"), env.timeline(run)
    assert run.job.job_id == job_id and run.job.fine_tuned_model == model
    assert env.admin.stats().count("fine_tuning_jobs_create") == 1  # no second training


def test_visiontune_retry_restarts_a_run_whose_job_failed(pipeline_env, digits_dir, capsys, tmp_path):
    from cli.main import main

    env = pipeline_env
    env.admin.fail_next_job("The service had an internal error.")
    intake = env.drop(digits_dir, "digits")
    start_training(env.settings, "digits", intake.version)
    run = env.drive_run("digits", intake.version, ENDED)
    assert run.state.value == "failed" and run.failure.stage == "training", env.timeline(run)
    env.drive(lambda: env.run("digits", intake.version).report_written_for == "failed")

    import json

    settings_file = tmp_path / "local.settings.json"
    settings_file.write_text(json.dumps({"IsEncrypted": False, "Values": env.values}))
    assert main(["retry", "digits", intake.version, "--settings", str(settings_file)]) == 0
    assert "restarting from uploading (was failed)" in capsys.readouterr().out
    assert main(["retry", "digits", intake.version, "--settings", str(settings_file)]) == 2  # not failed now

    run = env.drive_run("digits", intake.version, ENDED)
    assert run.state.value in ("promoted", "rejected"), env.timeline(run)
    assert env.admin.stats().count("fine_tuning_jobs_create") == 2  # the failed job is not reused
