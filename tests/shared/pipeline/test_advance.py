"""Review findings on ``shared.pipeline.advance`` (azure-facts / architecture rules), on the local stack:

- a gpt-4o candidate is never asked for the DeveloperTier SKU (gpt-4.1 family only);
- bounded retries count consecutive failures of a step: a poll that succeeds in between resets the
  count, so a few transient blips spread over a multi-hour training never fail (and cancel) the job.
"""

from __future__ import annotations

import pytest

from shared.pipeline.training import start_training

PAST_TRAINED = {"deploying", "deployed", "evaluating", "evaluated", "promoted", "rejected", "failed"}


def test_a_gpt_4o_candidate_is_not_deployed_on_the_developer_tier(pipeline_env, digits_dir):
    env = pipeline_env
    intake = env.drop(
        digits_dir, "digits", {"base_model": "gpt-4o-2024-08-06", "candidate_sku": "DeveloperTier"}
    )
    start_training(env.settings, "digits", intake.version)
    run = env.drive_run("digits", intake.version, PAST_TRAINED)
    assert run.job.fine_tuned_model.startswith("gpt-4o-2024-08-06.ft-"), env.timeline(run)
    assert run.candidate is not None and run.candidate.sku == env.settings.production_sku, env.timeline(run)
    deployed = env.deployments()[run.candidate.name]
    assert deployed.sku == env.settings.production_sku


@pytest.mark.emulator_config(step_seconds=3.0)
def test_transient_poll_failures_spread_over_training_do_not_add_up(pipeline_env, digits_dir):
    env = pipeline_env
    settings = env.with_settings(max_step_attempts=2)
    intake = env.drop(digits_dir, "digits", settings=settings)
    start_training(settings, "digits", intake.version)
    assert env.run("digits", intake.version).state.value == "training"

    def blip() -> None:
        # more 500s than the SDK's own retries (max_retries=5): the poll step itself fails once
        env.admin.inject(route="fine_tuning_jobs_retrieve", status=500, retry_after=0.01, count=6)
        env.advance(settings)
        run = env.run("digits", intake.version)
        assert run.state.value == "training" and run.retry is not None, env.timeline(run)
        assert run.retry.attempts == 1, env.timeline(run)

    blip()
    env.advance(settings)  # a poll that works
    run = env.run("digits", intake.version)
    assert run.state.value == "training" and run.retry is None, env.timeline(run)
    blip()  # a second blip, hours later in real life: still the first consecutive failure
    run = env.drive_run("digits", intake.version, {"promoted", "rejected", "failed"}, settings=settings)
    assert run.state.value != "failed", env.timeline(run)
