"""Azure OpenAI's documented limits, end to end on the local stack (Azurite + the emulator enforcing
them): batch input files, the fine-tuning file quota, fine-tuned deployment slots, and ARM's one
deployment operation per account at a time."""

from __future__ import annotations

import json
import math

import pytest

pytestmark = pytest.mark.emulator


@pytest.mark.emulator_config(max_batch_requests=8)
def test_a_test_set_over_the_batch_file_limits_is_sent_as_several_files_and_joined_back(pipeline_env, digits_dir):
    settings = pipeline_env.with_settings(batch_file_max_requests=8)
    run = pipeline_env.through(digits_dir, "digits", settings=settings)
    assert run.state.value in ("promoted", "rejected"), pipeline_env.timeline(run)
    base = run.evaluation["base"]
    tests = run.splits["test"]["examples"]
    assert base.method == "batch" and tests > 8
    assert len(base.batch_parts) == math.ceil(tests / 8)
    assert [(p.start, p.stop) for p in base.batch_parts][0] == (0, 8)
    assert all(p.status == "completed" for p in base.batch_parts), base.batch_parts
    assert base.batch_status == "completed" and base.scored == base.total == tests
    assert f"sent as {len(base.batch_parts)} batch files, joined back by custom_id" in base.note
    stats = pipeline_env.admin.stats()
    assert stats.count("batches_create") == len(base.batch_parts)
    assert stats.count("chat_completions") == tests  # the candidate only: no base request fell back to real time
    report = pipeline_env.report("digits", run.version)
    assert "joined back by custom_id" in str(report)


def test_the_emulator_refuses_a_batch_file_over_the_limits(emulator_factory):
    import io
    import json

    from local.emulator.clients import openai_client
    from local.emulator.constants import BATCH_DEPLOYMENT
    from tests.fixtures.emulator import wait_until

    server = emulator_factory(max_batch_requests=3, max_batch_file_bytes=2000)
    client = openai_client(server.url)

    def lines(count: int, pad: int = 0) -> bytes:
        return b"".join(
            json.dumps({"custom_id": f"r{i}", "method": "POST", "url": "/chat/completions",
                        "body": {"model": BATCH_DEPLOYMENT, "messages": [{"role": "user", "content": "x" * pad}]}}
                       ).encode() + b"\n"
            for i in range(count)
        )  # fmt: skip

    import openai

    with pytest.raises(openai.BadRequestError, match="limit for purpose 'batch' is 2000 bytes"):
        client.files.create(file=("big.jsonl", io.BytesIO(lines(1, pad=3000))), purpose="batch")
    uploaded = client.files.create(file=("many.jsonl", io.BytesIO(lines(4))), purpose="batch")
    wait_until(lambda: client.files.retrieve(uploaded.id).status == "processed")
    batch = client.batches.create(input_file_id=uploaded.id, endpoint="/chat/completions", completion_window="24h")
    failed = wait_until(lambda: (b := client.batches.retrieve(batch.id)).status == "failed" and b)
    assert "at most 3" in failed.errors.data[0].message


# --- one deployment operation per account (ARM 409 RequestConflict) ---------------------------
WAIT_FOR_OPERATION = "Azure allows one deployment operation per account at a time"


def _drive_with_clock(env, keys: list[tuple[str, str]], *, step: float, timeout: float = 240.0, settings=None):
    """Fire the timer and move the emulator's clock ``step`` seconds per tick until every run has ended
    and has its report."""
    import time

    deadline = time.monotonic() + timeout
    while True:
        runs = [env.run(*key) for key in keys]
        if all(r.terminal and r.report_written_for == r.state.value for r in runs):
            return runs
        assert time.monotonic() < deadline, "\n\n".join(env.timeline(r) for r in runs)
        env.advance(settings)
        env.admin.advance_clock(step)


@pytest.mark.emulator_config(deployment_seconds=30)
def test_deployment_writes_and_deletes_are_serialised_per_account_and_every_run_ends_right(
    pipeline_env, digits_dir
):
    """Two runs reach their deployments together; one is rejected (its candidate deleted) while the
    other's is created. Each deployment operation takes 30 s of emulator time and ARM refuses any
    other meanwhile: the pipeline waits instead of failing at deploy."""
    from shared.pipeline.training import start_training

    env = pipeline_env
    keys = []
    for dataset, marker in (("kept", None), ("dropped", {"promotion_margin": 1.0})):
        intake = env.drop(digits_dir, dataset, marker)
        start_training(env.settings, dataset, intake.version)
        keys.append((dataset, intake.version))
    kept, dropped = _drive_with_clock(env, keys, step=10)
    assert kept.state.value == "promoted", env.timeline(kept)
    assert dropped.state.value == "rejected", env.timeline(dropped)
    assert dropped.candidate.deleted_at is not None
    env.admin.advance_clock(31)  # ARM's delete takes its time too
    assert dropped.candidate.name not in env.deployments()
    timelines = env.timeline(kept) + env.timeline(dropped)
    assert WAIT_FOR_OPERATION in timelines  # they did overlap, and the pipeline waited
    assert "RequestConflict" not in timelines  # it waited before asking, so ARM never refused
    assert "deploy: attempt" not in timelines


# --- fine-tuned deployment slots ---------------------------------------------------------------
@pytest.mark.emulator_config(max_fine_tuned_deployments=1)
def test_a_run_without_a_deployment_slot_waits_visibly_and_goes_on_when_one_frees(pipeline_env, digits_dir):
    from shared.pipeline.status import collect_status
    from shared.pipeline.training import start_training

    env = pipeline_env
    settings = env.with_settings(max_fine_tuned_deployments=1)
    keys = []
    for dataset in ("first", "second"):
        intake = env.drop(digits_dir, dataset, {"promotion_margin": 1.0}, settings=settings)  # both rejected
        start_training(settings, dataset, intake.version)
        keys.append((dataset, intake.version))
    env.drive(lambda: any(env.run(*k).state.value == "awaiting_deployment_slot" for k in keys), settings=settings)
    waiting = next(env.run(*k) for k in keys if env.run(*k).state.value == "awaiting_deployment_slot")
    shown = {
        (d["dataset"], r["version"]): r["state"] for d in collect_status(settings)["datasets"] for r in d["runs"]
    }
    assert shown[(waiting.dataset, waiting.version)] == "awaiting_deployment_slot"
    assert "all 1 fine-tuned deployment slots of the resource are taken" in waiting.transitions[-1].detail
    env.drive(lambda: all(env.run(*k).terminal and env.run(*k).report_written_for for k in keys), settings=settings)
    for key in keys:
        run = env.run(*key)
        assert run.state.value == "rejected", env.timeline(run)
    assert "awaiting_deployment_slot" in env.state_path(env.run(waiting.dataset, waiting.version))
    report = env.report(waiting.dataset, waiting.version)
    assert "awaiting_deployment_slot" in str(report["timeline"])


# --- fine-tuning file quota --------------------------------------------------------------------
@pytest.mark.emulator_config(max_total_file_bytes=40_000)
def test_training_files_over_the_file_quota_stop_before_upload_with_what_to_cut(pipeline_env, digits_dir):
    env = pipeline_env
    settings = env.with_settings(fine_tune_files_max_bytes=40_000)
    run = env.through(digits_dir, "digits", settings=settings)
    assert run.state.value == "failed" and run.failure.stage == "preflight", env.timeline(run)
    assert "cut at least" in run.failure.message
    assert "--quality" in run.failure.message and "--max-side" in run.failure.message
    assert env.admin.stats().count("files_create") == 0  # checked before anything was uploaded
    report = env.report("digits", run.version)
    assert "cut at least" in report["failure"]["message"]


def _layout(digits_dir, out, train_per_label: int):
    """train/<label>/ with ``train_per_label`` images, test/<label>/ with the last 10 (same every call)."""
    import shutil

    for label_dir in sorted(p for p in digits_dir.iterdir() if p.is_dir()):
        images = sorted(label_dir.iterdir())
        for split, chosen in (("train", images[:train_per_label]), ("test", images[-10:])):
            (out / split / label_dir.name).mkdir(parents=True, exist_ok=True)
            for image in chosen:
                shutil.copyfile(image, out / split / label_dir.name / image.name)
    return out


@pytest.mark.emulator_config(base_samples_per_label=0, max_fine_tuned_deployments=2)
def test_a_rollback_window_deployment_is_retired_early_to_free_a_slot(pipeline_env, digits_dir, tmp_path):
    env = pipeline_env
    settings = env.with_settings(max_fine_tuned_deployments=2, rollback_window_hours=24.0)
    v1 = env.through(_layout(digits_dir, tmp_path / "v1", 2), "digits", settings=settings)
    v2 = env.through(
        _layout(digits_dir, tmp_path / "v2", 20), "digits", {"continue_from_production": True}, settings=settings
    )
    assert (v1.state.value, v2.state.value) == ("promoted", "promoted"), env.timeline(v2)
    [retired] = env.production("digits")["retired"]
    assert retired["deployment"] == v1.candidate.name and retired["deleted_at"] is None  # both slots taken
    other = env.through(digits_dir, "other", {"promotion_margin": 1.0}, settings=settings)
    assert other.state.value == "rejected", env.timeline(other)
    assert "awaiting_deployment_slot" in env.state_path(other)
    assert f"deleting {v1.candidate.name} (the previous production model of digits" in env.timeline(other)
    [retired] = env.production("digits")["retired"]
    assert retired["deleted_at"] is not None and "free a deployment slot for other/" in retired["retired_early"]
    assert env.production("digits")["deployment"] == v2.candidate.name in env.deployments()  # production untouched


def test_files_of_finished_runs_are_deleted_first_when_that_makes_room(pipeline_env, digits_dir):
    import io

    from shared.pipeline.training import start_training

    env = pipeline_env
    old = env.through(digits_dir, "old", {"promotion_margin": 1.0})
    assert old.terminal and all(f.deleted for f in old.files)
    # A finished run whose cleanup has not run yet still holds a file on the resource.
    leftover = env.openai().files.create(
        file=("vt-old-leftover-train.jsonl", io.BytesIO(b'{"messages": []}\n' * 2000)), purpose="fine-tune"
    )
    store = env.store()
    stored = store.get("old", old.version)
    stored.files[0].file_id, stored.files[0].deleted = leftover.id, False
    store.save(stored)

    intake = env.drop(digits_dir, "new", {"seed": 7})  # another version of the same images
    manifest = json.loads(
        env.service.get_container_client("training").download_blob(f"new/{intake.version}/manifest.json").readall()
    )
    needed = sum(int(manifest["splits"][s]["bytes"]) for s in ("train", "validation"))
    settings = env.with_settings(fine_tune_files_max_bytes=needed + leftover.bytes - 1)
    start_training(settings, "new", intake.version)
    env.drive(lambda: env.run("new", intake.version).state.value not in ("converted", "uploading"), settings=settings)
    run = env.run("new", intake.version)
    assert run.state.value == "training", env.timeline(run)
    assert "deleted 1 fine-tuning file(s) of finished runs" in env.timeline(run)
    assert leftover.id not in {f.id for f in env.files()}
