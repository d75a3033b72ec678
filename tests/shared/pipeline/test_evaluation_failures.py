"""When the candidate cannot be evaluated (its deployment answers nothing), the run fails at the evaluate
stage with the service's message after bounded retries, and the paid deployment is deleted."""

from __future__ import annotations


def test_a_server_error_storm_fails_the_evaluation_and_deletes_the_deployment(pipeline_env, digits_dir):
    env = pipeline_env
    # the candidate never answers (Retry-After keeps the SDK's own retries short)
    env.admin.inject(route="chat_completions", status=500, retry_after=0.02, count=-1)
    run = env.through(digits_dir, "digits")
    assert run.state.value == "failed" and run.failure.stage == "evaluate", env.timeline(run)
    assert "got no answer" in run.failure.message and "500" in run.failure.message
    assert f"gave up after {env.settings.max_step_attempts} attempts" in run.failure.message
    assert run.candidate.deleted_at is not None
    assert run.candidate.name not in env.deployments()
    assert env.production("digits") is None
    assert env.report("digits", run.version)["failure"]["stage"] == "evaluate"
