"""One active run per dataset (issue 13, item 7): a newer drop cancels older runs that have not reached
deployment (job cancelled, files cleaned, report "superseded by ..."); rewriting ``_READY`` mid-run with a
new override does not train twice. ``VISIONTUNE_SUPERSEDE=false`` keeps the older run going."""

from __future__ import annotations

from shared.pipeline.training import start_training


def test_rewriting_the_marker_mid_run_supersedes_the_older_run(pipeline_env, digits_dir):
    env = pipeline_env
    first = env.drop(digits_dir, "digits", {"n_epochs": 2})
    start_training(env.settings, "digits", first.version)
    older = env.run("digits", first.version)
    assert older.state.value in ("uploading", "training"), env.timeline(older)

    second = env.drop(digits_dir, "digits", {"n_epochs": 3})  # a new override: a new version
    assert second is not None and second.version != first.version and second.run_created
    older = env.run("digits", first.version)
    assert older.state.value == "cancelled", env.timeline(older)
    assert older.failure.stage == "superseded"
    assert f"superseded by version {second.version}" in older.failure.message

    env.drive(lambda: env.run("digits", first.version).report_written_for == "cancelled")
    older = env.run("digits", first.version)
    assert older.job.job_id is None or older.job.status == "cancelled", env.timeline(older)
    assert all(f.deleted or f.file_id is None for f in older.files)
    report = env.report("digits", first.version)
    assert report["outcome"] == "cancelled" and "superseded by version" in report["failure"]["message"]
    assert env.run("digits", second.version).state.value not in ("cancelled", "failed")  # the newer run goes on


def test_supersede_can_be_switched_off(pipeline_env, digits_dir):
    env = pipeline_env
    keep = env.with_settings(supersede=False)
    first = env.drop(digits_dir, "digits", {"n_epochs": 2}, settings=keep)
    second = env.drop(digits_dir, "digits", {"n_epochs": 3}, settings=keep)
    assert second.version != first.version
    assert env.run("digits", first.version).state.value == "converted"
