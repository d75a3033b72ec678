"""Fan-out of a ZIP drop on the local stack: ``datasets/<dataset>.zip`` above VISIONTUNE_SHARD_MIN_IMAGES is
planned by the dataset_archive_ready trigger from the archive's central directory and converted by
convert_shard queue calls that each read their own entries by ranged reads pinned to the ETag the plan
saw. The published files are byte-identical to one in-process conversion of the same zip, whatever
happens to the shard messages; an archive replaced during the fan-out fails the job with a report and
never mixes two archives."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import pytest

from tests.e2e import test_fanout as folder_fanout
from tests.e2e.test_fanout import (
    ARTIFACTS,
    DATASET,
    calls,
    deliver_shard_messages_twice,
    drop_files,
    one_poisoned_shard,
    published,
    queue,
)

ARCHIVE = f"{DATASET}.zip"


def zip_of(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for k, (name, data) in enumerate(sorted(files.items())):
            zf.writestr(f"{DATASET}/{name}", data, compress_type=zipfile.ZIP_DEFLATED if k % 2 else zipfile.ZIP_STORED)
    return buffer.getvalue()


def expected_artifacts(stack, archive: bytes, tmp_path: Path) -> dict[str, bytes]:
    """The same zip converted in one process with the pipeline's options."""
    from shared.conversion import FolderSink, ZipSource, convert_dataset
    from shared.pipeline.intake import convert_options
    from shared.pipeline.overrides import RunOverrides
    from shared.settings import Settings

    options = convert_options(Settings.model_validate(stack.settings), RunOverrides.parse_marker(b""))
    out = tmp_path / f"single-{len(list(tmp_path.glob('single-*')))}"
    convert_dataset(ZipSource(io.BytesIO(archive)), FolderSink(out), options)
    return {name: (out / name).read_bytes() for name in ARTIFACTS}


def upload(stack, archive: bytes) -> None:
    datasets(stack).upload_blob(ARCHIVE, archive, overwrite=True)


def datasets(stack):
    from azure.storage.blob import BlobServiceClient

    return BlobServiceClient.from_connection_string(stack.settings["AzureWebJobsStorage"]).get_container_client("datasets")


def failure(stack):
    from shared.pipeline.context import Pipeline
    from shared.pipeline.reports import intake_failure
    from shared.settings import Settings

    return intake_failure(Pipeline(Settings.model_validate(stack.settings)), DATASET)


def runs(stack):
    from shared.pipeline.store import RunStore
    from shared.settings import Settings

    return RunStore.from_settings(Settings.model_validate(stack.settings)).list(DATASET)


@pytest.mark.parametrize(("shard_images", "shards"), [(100, 1), (22, 2), (15, 3)])
def test_a_fanned_out_zip_publishes_the_bytes_of_one_conversion(make_stack, tmp_path, shard_images, shards):
    from shared.layout import SHARD_QUEUE

    archive = zip_of(drop_files())
    stack = folder_fanout.fanout_stack(make_stack, shard_images)
    upload(stack, archive)
    fired = stack.host.run_until_idle(timeout=180)
    assert calls(fired, "dataset_archive_ready") == ["succeeded"]
    assert calls(fired, "convert_shard") == ["succeeded"] * shards, [i.log_line() for i in fired]
    (version,) = published(stack)
    assert published(stack)[version] == expected_artifacts(stack, archive, tmp_path)
    assert queue(stack, SHARD_QUEUE).peek_messages() == []
    (run,) = runs(stack)
    assert run.version == version and run.intake["shards"] == shards
    assert run.intake["images_converted"] + run.intake["images_reused"] == 43, run.intake
    assert f"from datasets/{ARCHIVE}" in run.transitions[0].detail and f"in {shards} shards" in run.transitions[0].detail
    assert calls(fired, "training_ready") == ["succeeded"]


def test_replayed_killed_and_poisoned_zip_shards(make_stack, tmp_path, break_shard_line):
    archive = zip_of(drop_files())
    stack = folder_fanout.fanout_stack(make_stack, 15)  # 3 shards
    expected = expected_artifacts(stack, archive, tmp_path)
    victim = "fox/003.jpg"

    # 1. poison: the shard holding the victim fails on every delivery
    break_shard_line(victim, "the worker died writing this line")
    upload(stack, archive)
    poisoned, message = one_poisoned_shard(stack, stack.host.run_until_idle(timeout=180))
    report = failure(stack)
    assert report is not None and report["stage"] == "convert"
    assert f"shard {message['shard'] + 1} of 3" in report["message"] and victim in report["message"], report

    # 2. killed halfway: the same zip uploaded again (a new ETag, so a new job); a shard dies once after
    #    writing part of its output, then its redelivery finishes; every shard message is delivered twice
    attempts = break_shard_line(victim, "killed halfway", times=1)
    upload(stack, archive)
    first = stack.host.run_once()
    assert calls(first, "dataset_archive_ready") == ["succeeded"]
    shard_queue, resent = deliver_shard_messages_twice(stack)
    assert resent == 3
    fired = first + stack.host.run_until_idle(timeout=180)
    assert attempts["n"] == 1
    versions = published(stack)
    assert list(versions.values()) == [expected]
    assert failure(stack) is None  # cleared by the publication
    assert [i.outcome for i in fired if i.function_name == "convert_shard"].count("failed") == 1
    assert shard_queue.peek_messages() == []
    assert len(runs(stack)) == 1

    # 3. a late duplicate of the first job's poisoned shard: its archive version is gone and the upload that
    #    replaced it is converted, so it abandons its job quietly (no report over the published version)
    shard_queue.send_message(poisoned.content)
    late = stack.host.run_until_idle(timeout=60)
    assert calls(late, "convert_shard") == ["succeeded"]
    assert published(stack) == versions and failure(stack) is None


def test_an_archive_replaced_during_the_fan_out_fails_the_job_and_mixes_nothing(make_stack, tmp_path, monkeypatch):
    from shared.pipeline import fanout

    first_files = drop_files()
    archive = zip_of(first_files)
    # the replacement: the same names with other bytes for the dogs, and no fox at all
    second_files = {n: d for n, d in first_files.items() if not n.startswith("fox/")}
    from tests.shared.conversion import image_cases as cases

    second_files.update({f"dog/{i:03d}.jpg": cases.photo_jpeg(seed=500 + i) for i in range(14)})
    second_files.update({f"owl/{i:03d}.jpg": cases.photo_jpeg(seed=900 + i) for i in range(14)})
    replacement = zip_of(second_files)
    stack = folder_fanout.fanout_stack(make_stack, 15)  # 3 shards
    upload(stack, archive)
    planned = stack.host.run_once()
    assert calls(planned, "dataset_archive_ready") == ["succeeded"]
    first_shard = stack.host.run_once()  # host.json batchSize 1: one shard message per scan
    assert calls(first_shard, "convert_shard") == ["succeeded"]

    # the archive is replaced while the second shard reads it (after its first entry)
    original_read = fanout._PinnedArchive.read
    reads = {"n": 0}

    def read_then_replace(self, path):
        reads["n"] += 1
        if reads["n"] == 2:
            upload(stack, replacement)
        return original_read(self, path)

    monkeypatch.setattr(fanout._PinnedArchive, "read", read_then_replace)
    second_shard = stack.host.run_once()
    monkeypatch.setattr(fanout._PinnedArchive, "read", original_read)
    assert [(i.function_name, i.outcome) for i in second_shard] == [("convert_shard", "succeeded")]
    assert published(stack) == {}
    report = failure(stack)
    assert report is not None and report["stage"] == "convert", report
    assert "shard 2 of 3" in report["message"] and f"datasets/{ARCHIVE} was replaced" in report["message"], report
    assert "no version mixes two archives" in report["message"]

    # the replacement is converted by its own trigger; the first job's last shard finds its job abandoned
    rest = stack.host.run_until_idle(timeout=180)
    assert calls(rest, "dataset_archive_ready") == ["succeeded"]
    assert "succeeded" in calls(rest, "convert_shard")
    versions = published(stack)
    assert list(versions.values()) == [expected_artifacts(stack, replacement, tmp_path)]
    manifest = json.loads(next(iter(versions.values()))["manifest.json"])
    assert "fox" not in manifest["labels"] and "owl" in manifest["labels"]
    assert failure(stack) is None  # the replacement's publication clears the report
    (run,) = runs(stack)
    assert run.intake["shards"] == 3  # the replacement fanned out too (42 images + the duplicate)
