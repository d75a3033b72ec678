"""Promotion and retirement on the local stack: a DeveloperTier candidate gets a separate production
deployment when promoted (and is deleted); a retrain continued from the production model replaces it; the
previous production deployment is kept for the rollback window, then deleted. The base model is scored in
real time here (no batch deployment configured)."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest


def _layout(digits_dir: Path, out: Path, train_per_label: int) -> Path:
    """train/<label>/ with ``train_per_label`` images, test/<label>/ with the last 10 (same in every call)."""
    for label_dir in sorted(p for p in digits_dir.iterdir() if p.is_dir()):
        images = sorted(label_dir.iterdir())
        for image in images[:train_per_label]:
            (out / "train" / label_dir.name).mkdir(parents=True, exist_ok=True)
            shutil.copyfile(image, out / "train" / label_dir.name / image.name)
        for image in images[-10:]:
            (out / "test" / label_dir.name).mkdir(parents=True, exist_ok=True)
            shutil.copyfile(image, out / "test" / label_dir.name / image.name)
    return out


@pytest.mark.emulator_config(base_samples_per_label=0)  # a base model that knows nothing: v1 beats it
def test_promotion_with_a_production_deployment_continued_training_and_rollback_window(
    pipeline_env, digits_dir, tmp_path
):
    env = pipeline_env
    settings = env.with_settings(
        candidate_sku="DeveloperTier",
        production_sku="GlobalStandard",
        rollback_window_hours=1.0,
        batch_deployment=None,
    )
    v1 = env.through(_layout(digits_dir, tmp_path / "v1", 2), "digits", settings=settings)
    assert v1.state.value == "promoted", env.timeline(v1)
    assert v1.evaluation["base"].method == "realtime" and v1.evaluation["base"].deployment == "base"
    assert v1.production_deployment is not None and v1.production_deployment.sku == "GlobalStandard"
    assert v1.candidate.sku == "DeveloperTier" and v1.candidate.deleted_at is not None
    deployments = env.deployments()
    assert v1.candidate.name not in deployments and deployments[v1.production_deployment.name].succeeded
    assert env.production("digits")["deployment"] == v1.production_deployment.name

    v2 = env.through(
        _layout(digits_dir, tmp_path / "v2", 20),
        "digits",
        {"continue_from_production": True},
        settings=settings,
    )
    assert v2.state.value == "promoted", env.timeline(v2)
    assert v2.job.model == v1.job.fine_tuned_model  # continued fine-tuning from the production model
    assert v2.decision.baseline_role == "incumbent" and v2.scores["candidate"] > v2.scores["incumbent"]
    production = env.production("digits")
    assert production["version"] == v2.version and production["previous_version"] == v1.version
    [retired] = production["retired"]
    assert retired["deployment"] == v1.production_deployment.name and retired["deleted_at"] is None
    env.advance(settings)
    assert v1.production_deployment.name in env.deployments()  # kept for the rollback window

    # an hour later (the clock moved): the next tick deletes it
    container = env.service.get_container_client("reports")
    record = json.loads(container.download_blob("digits/production.json").readall())
    record["retired"][0]["delete_after"] = (datetime.now(UTC) - timedelta(seconds=1)).isoformat()
    container.upload_blob("digits/production.json", json.dumps(record), overwrite=True)
    env.advance(settings)
    # ARM deletes asynchronously: the deployment is 'Deleting' for a while, then gone.
    from tests.fixtures.emulator import wait_until

    wait_until(lambda: v1.production_deployment.name not in env.deployments(), timeout=30)
    assert env.production("digits")["retired"][0]["deleted_at"] is not None
    assert set(env.deployments()) == {"base", "base-batch", v2.production_deployment.name}
