"""Drops that must stop early: over budget (before anything is uploaded), a bad marker, a dataset that
cannot train. Each leaves a report that says why, and nothing on the Azure OpenAI resource."""

from __future__ import annotations

import shutil

import pytest


def test_over_budget_stops_before_uploading_anything(pipeline_env, digits_dir):
    env = pipeline_env
    run = env.through(digits_dir, "digits", {"max_run_usd": 0.01})
    assert run.state.value == "over_budget", env.timeline(run)
    assert env.admin.stats().count("files_create") == 0 and env.files() == []
    report = env.report("digits", run.version)
    assert report["outcome"] == "over_budget"
    assert report["cost"]["budget_usd"] == 0.01 and report["cost"]["estimated_training_usd"] > 0.01
    assert "over the budget of $0.01" in report["failure"]["message"]


@pytest.mark.parametrize(
    ("marker", "message"),
    [(b"{epochs: 3}", "not valid JSON"), (b'{"epoch": 3}', "epoch: Extra inputs are not permitted")],
)
def test_a_bad_marker_gets_a_failure_report_and_no_run(pipeline_env, digits_dir, marker, message):
    env = pipeline_env
    assert env.drop(digits_dir, "digits", marker) is None
    assert env.store().list("digits") == []
    report = env.report("digits", "intake")
    assert report["failure"]["stage"] == "marker" and message in report["failure"]["message"]
    from shared.pipeline.status import collect_status

    status = collect_status(env.settings, "digits")
    assert message in status["datasets"][0]["intake_failure"]["message"]


def test_a_dataset_that_cannot_train_gets_a_failure_report(pipeline_env, tmp_path, digits_dir):
    env = pipeline_env
    single = tmp_path / "one-label"
    shutil.copytree(digits_dir / sorted(p.name for p in digits_dir.iterdir())[0], single / "only")
    assert env.drop(single, "lonely") is None
    report = env.report("lonely", "intake")
    assert report["failure"]["stage"] == "convert" and "label" in report["failure"]["message"]


def test_a_zip_drop_is_read_by_ranges_and_converted(pipeline_env, digits_dir, tmp_path):
    import zipfile

    from cli.push import push_dataset
    from shared.pipeline.intake import accept_dataset

    env = pipeline_env
    archive = tmp_path / "digits.zip"
    images = sorted(digits_dir.rglob("*.png"))
    with zipfile.ZipFile(archive, "w") as handle:
        for path in images:  # one top-level folder, as zipping a folder produces
            handle.write(path, f"digits/{path.relative_to(digits_dir).as_posix()}")
    push_dataset(env.settings, archive, "zipped")
    result = accept_dataset(env.settings, "zipped", archive=True, marker_body=b"")
    assert result is not None and result.published and result.examples == len(images)
    run = env.run("zipped", result.version)
    assert run.state.value == "converted" and len(run.labels) == 10

    env.service.get_container_client("datasets").upload_blob(
        "broken.zip", b"PK\x03\x04 not really", overwrite=True
    )
    assert accept_dataset(env.settings, "broken", archive=True, marker_body=b"") is None
    report = env.report("broken", "intake")
    assert report["failure"]["stage"] == "convert" and "datasets/broken.zip" in report["failure"]["message"]


def _given_splits(digits_dir, root, counts: dict[str, int]):
    """``root/<split>/<label>/<image>`` from two digit labels: ``counts[split]`` images per label."""
    labels = sorted(p.name for p in digits_dir.iterdir())[:2]
    for label in labels:
        images = sorted((digits_dir / label).iterdir())
        start = 0
        for split, count in counts.items():
            target = root / split / label
            target.mkdir(parents=True, exist_ok=True)
            for image in images[start : start + count]:
                shutil.copy(image, target / image.name)
            start += count
    return root


def test_an_empty_test_split_stops_before_uploading_anything(pipeline_env, digits_dir, tmp_path):
    env = pipeline_env
    folder = _given_splits(digits_dir, tmp_path / "no-test", {"train": 8, "validation": 2})
    run = env.through(folder, "notest")
    assert run.state.value == "failed", env.timeline(run)
    assert run.failure.stage == "preflight" and "test split is empty" in run.failure.message
    assert env.admin.stats().count("files_create") == 0 and env.files() == []
    assert "test split is empty" in env.report("notest", run.version)["failure"]["message"]


def test_a_validation_split_below_the_minimum_is_left_out_not_failed(pipeline_env, digits_dir, tmp_path):
    env = pipeline_env
    folder = _given_splits(digits_dir, tmp_path / "small-val", {"train": 8, "validation": 2, "test": 3})
    intake = env.drop(folder, "smallval")
    from shared.pipeline.training import start_training

    start_training(env.settings, "smallval", intake.version)
    run = env.drive_run("smallval", intake.version, {"training", "trained", "failed", "promoted", "rejected"})
    assert run.state.value != "failed", env.timeline(run)
    assert [f.split for f in run.files] == ["train"]
    assert "training without a validation file" in env.timeline(run)
    assert [f.filename for f in env.files() if f.purpose == "fine-tune"] == [run.files[0].name]
