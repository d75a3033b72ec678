"""A worse candidate on the local stack: judged against the incumbent on the same test set, rejected, its
deployment deleted at once, production unchanged."""

from __future__ import annotations

import shutil
from pathlib import Path


def _split_layout(digits_dir: Path, out: Path, *, scramble: bool) -> Path:
    """train/<label>/ and test/<label>/ from the digits; ``scramble`` files every training image under the
    next digit's label (a model trained on it answers wrong), the test split stays correct."""
    labels = sorted(p.name for p in digits_dir.iterdir() if p.is_dir())
    for index, label in enumerate(labels):
        images = sorted((digits_dir / label).iterdir())
        train_label = labels[(index + 1) % len(labels)] if scramble else label
        for n, image in enumerate(images):
            split, target = ("test", label) if n % 4 == 0 else ("train", train_label)
            destination = out / split / target / f"{label}-{image.name}"
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(image, destination)
    return out


def test_a_worse_candidate_is_rejected_its_deployment_deleted_production_unchanged(
    pipeline_env, digits_dir, tmp_path
):
    env = pipeline_env
    good = env.through(_split_layout(digits_dir, tmp_path / "good", scramble=False), "digits")
    assert good.state.value == "promoted", env.timeline(good)
    before = env.production("digits")

    worse = env.through(_split_layout(digits_dir, tmp_path / "worse", scramble=True), "digits")
    assert worse.state.value == "rejected", env.timeline(worse)
    assert worse.decision.baseline_role == "incumbent" and not worse.decision.promoted
    assert worse.scores["candidate"] < worse.scores["incumbent"]
    assert worse.candidate.deleted_at is not None and worse.candidate.name not in env.deployments()
    after = env.production("digits")
    assert (after["version"], after["model"], after["deployment"]) == (
        before["version"],
        before["model"],
        before["deployment"],
    )
    assert env.deployments()[before["deployment"]].succeeded
    assert env.report("digits", worse.version)["incumbent"]["model"] == before["model"]
