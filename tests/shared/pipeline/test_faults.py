"""Faults on the local stack: throttling, server errors, transient deployment errors, an expired batch
(ridden out: promoted), and a failed job (failed with the service's own message, a report, nothing left
running that costs money)."""

from __future__ import annotations


def test_a_bad_day_of_throttling_errors_transient_deploys_and_an_expired_batch_still_promotes(
    pipeline_env, digits_dir
):
    env = pipeline_env
    # 429 storms with Retry-After on the calls that create things and on scoring, 500s on uploads and polls
    env.admin.inject(route="files_create", status=429, retry_after=0.2, count=2)
    env.admin.inject(route="fine_tuning_jobs_create", status=429, retry_after=0.2, count=2)
    env.admin.inject(route="fine_tuning_jobs_retrieve", status=500, count=3)
    env.admin.inject(route="chat_completions", status=429, retry_after=0.1, count=25)
    env.admin.inject(route="chat_completions", status=500, count=8)
    # BadRequestForDependentService right after training (twice), then a provisioning that ends Failed
    env.admin.fail_next_deployments(2)
    env.admin.fail_next_deployments(1, phase="provisioning")
    # and the base model's batch expires
    env.admin.expire_next_batch()

    run = env.through(digits_dir, "digits")
    assert run.state.value == "promoted", env.timeline(run)
    stats = env.admin.stats()
    assert stats.faults.get("chat_completions", 0) >= 33 and stats.faults.get("files_create", 0) == 2
    # exactly one job despite the throttled create (the SDK retried; nothing created twice)
    assert stats.count("fine_tuning_jobs_create") == 3 and len(env.jobs()) == 1
    assert run.evaluation["candidate"].scored == run.evaluation["candidate"].total

    notes = [t.detail for t in run.transitions]
    assert sum("BadRequestForDependentService" in n and "retrying" in n for n in notes) >= 2
    assert any("provisioning failed" in n for n in notes)
    assert list(env.deployments()).count(run.candidate.name) == 1 and run.candidate.attempts >= 3

    base = run.evaluation["base"]
    assert base.batch_status == "expired" and base.done and base.scored == base.total
    assert "batch expired" in (base.note or "") and "real time" in base.note
    assert not [f for f in env.files() if f.purpose in ("batch", "batch_output")]  # cleaned up


def test_a_failed_job_fails_the_run_with_the_service_message(pipeline_env, digits_dir):
    env = pipeline_env
    env.admin.fail_next_job("The training file has 3 examples with invalid image data.")
    run = env.through(digits_dir, "digits")
    assert run.state.value == "failed", env.timeline(run)
    assert run.failure.stage == "training"
    assert "The training file has 3 examples with invalid image data." in run.failure.message
    assert run.candidate is None and not [d for d in env.deployments() if d.startswith("vt-")]
    report = env.report("digits", run.version)
    assert report["outcome"] == "failed" and "invalid image data" in report["failure"]["message"]
    assert not [f for f in env.files() if f.purpose == "fine-tune"]  # the run's files were deleted
