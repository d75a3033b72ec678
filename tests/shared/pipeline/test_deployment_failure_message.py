"""A deployment whose provisioning fails keeps ARM's own error: the message is in the PUT's
Azure-AsyncOperation status document (not in the deployment resource), and it reaches the run's timeline,
the give-up failure after the bounded attempts, and the failure report."""

from __future__ import annotations

from shared.pipeline.failures import STAGE_MIN_ATTEMPTS
from shared.pipeline.training import start_training

# The emulator's provisioning failure (local/emulator/deployments.py ``put_deployment``).
SERVICE_ERROR = "The dependent service is not ready to serve the model"


def test_a_deployment_that_keeps_failing_fails_the_run_with_the_service_message(pipeline_env, digits_dir):
    env = pipeline_env
    attempts = STAGE_MIN_ATTEMPTS["deploy"]
    env.admin.fail_next_deployments(attempts, phase="provisioning")
    intake = env.drop(digits_dir, "digits")
    start_training(env.settings, "digits", intake.version)
    run = env.drive_run("digits", intake.version, {"failed", "promoted", "rejected"})

    assert run.state.value == "failed", env.timeline(run)
    assert run.failure.stage == "deploy"
    assert f"after {attempts} attempts" in run.failure.message
    assert "BadRequestForDependentService" in run.failure.message and SERVICE_ERROR in run.failure.message
    provisioning = [t.detail for t in run.transitions if "provisioning failed" in t.detail]
    assert len(provisioning) == attempts and all(SERVICE_ERROR in d for d in provisioning), env.timeline(run)
    assert env.admin.stats().count("deployments_create_or_update") == attempts

    env.drive(lambda: env.run("digits", intake.version).report_written_for == "failed")
    report = env.report("digits", intake.version)
    assert report["outcome"] == "failed" and SERVICE_ERROR in report["failure"]["message"]
    assert run.candidate.name not in env.deployments()  # cleaned up
