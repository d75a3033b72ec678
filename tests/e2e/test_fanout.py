"""Fan-out on the local stack: a drop above VISIONTUNE_SHARD_MIN_IMAGES goes through the dataset_ready
trigger, shard messages on the Azurite queue, the convert_shard queue trigger (host.json concurrency,
retries, poison queue) and a server-side assembly; the published files are byte-identical to one
in-process conversion of the same drop, whatever happens to the shard messages."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from tests.shared.conversion import image_cases as cases

ARTIFACTS = ("train.jsonl", "validation.jsonl", "test.jsonl", "rejected.json", "manifest.json")
DATASET = "pets"


def drop_files() -> dict[str, bytes]:
    files = cases.good_set(("cat", "dog", "fox"), per_label=14)
    files["dog/notes.jpg"] = b"not an image\n"
    files["cat/dup.jpg"] = files["cat/000.jpg"]
    return files


def fanout_stack(make_stack, shard_images: int):
    """A stack that fans a drop of 20 images or more out into shards of ``shard_images``."""
    return make_stack(
        settings_file=True,
        settings={
            "VISIONTUNE_CONVERT_WORKERS": "1",
            "VISIONTUNE_SHARD_MIN_IMAGES": "20",
            "VISIONTUNE_SHARD_IMAGES": str(shard_images),
        },
    )


def expected_artifacts(stack, src: Path, tmp_path: Path) -> dict[str, bytes]:
    """The same drop converted in one process with the pipeline's options."""
    from shared.conversion import FolderSink, FolderSource, convert_dataset
    from shared.pipeline.intake import convert_options
    from shared.pipeline.overrides import RunOverrides
    from shared.settings import Settings

    options = convert_options(Settings.model_validate(stack.settings), RunOverrides.parse_marker(b""))
    out = tmp_path / "single"
    convert_dataset(FolderSource(src), FolderSink(out), options)
    return {name: (out / name).read_bytes() for name in ARTIFACTS}


def drop(stack, files: dict[str, bytes]) -> None:
    from azure.storage.blob import BlobServiceClient

    service = BlobServiceClient.from_connection_string(stack.settings["AzureWebJobsStorage"])
    container = service.get_container_client("datasets")
    for name, data in files.items():
        container.upload_blob(f"{DATASET}/{name}", data, overwrite=True)
    container.upload_blob(f"{DATASET}/_READY", b"", overwrite=True)


def published(stack) -> dict[str, dict[str, bytes]]:
    from azure.storage.blob import BlobServiceClient

    service = BlobServiceClient.from_connection_string(stack.settings["AzureWebJobsStorage"])
    training = service.get_container_client("training")
    versions: dict[str, dict[str, bytes]] = {}
    for blob in training.list_blobs(name_starts_with=f"{DATASET}/"):
        _, version, name = blob.name.split("/", 2)
        versions.setdefault(version, {})[name] = training.download_blob(blob.name).readall()
    return versions


def queue(stack, name: str):
    from azure.storage.queue import QueueClient

    return QueueClient.from_connection_string(stack.settings["AzureWebJobsStorage"], name)


def calls(fired, name: str) -> list[str]:
    return [i.outcome for i in fired if i.function_name == name]


def one_poisoned_shard(stack, fired) -> tuple[Any, dict[str, Any]]:
    """Checks that of 3 shards, one failed its 5 deliveries (4 failed, then poisoned) and the other 2 succeeded,
    so nothing was published; returns the poison-queue message and its decoded body."""
    from shared.layout import SHARD_POISON_QUEUE

    shard_outcomes = calls(fired, "convert_shard")
    assert shard_outcomes.count("failed") == 4 and shard_outcomes.count("poisoned") == 1, shard_outcomes
    assert shard_outcomes.count("succeeded") == 2
    assert published(stack) == {}  # nothing published, no run
    (poisoned,) = queue(stack, SHARD_POISON_QUEUE).peek_messages()
    return poisoned, json.loads(base64.b64decode(poisoned.content))


def deliver_shard_messages_twice(stack) -> tuple[Any, int]:
    """At-least-once delivery: sends every waiting shard message again; returns the shard queue and how many
    messages were waiting."""
    from shared.layout import SHARD_QUEUE

    shard_queue = queue(stack, SHARD_QUEUE)
    waiting = shard_queue.peek_messages(max_messages=32)
    for message in waiting:
        shard_queue.send_message(message.content)
    return shard_queue, len(waiting)


@pytest.mark.parametrize(("shard_images", "shards"), [(100, 1), (22, 2), (15, 3)])
def test_a_fanned_out_drop_publishes_the_bytes_of_one_conversion(make_stack, tmp_path, shard_images, shards):
    from shared.layout import SHARD_QUEUE

    files = drop_files()
    src = cases.write(tmp_path / "src", files)
    stack = fanout_stack(make_stack, shard_images)
    drop(stack, files)
    fired = stack.host.run_until_idle(timeout=180)
    assert calls(fired, "dataset_ready") == ["succeeded"]
    assert calls(fired, "convert_shard") == ["succeeded"] * shards, [i.log_line() for i in fired]
    (version,) = published(stack)
    assert published(stack)[version] == expected_artifacts(stack, src, tmp_path)
    assert queue(stack, SHARD_QUEUE).peek_messages() == []
    from shared.pipeline.store import RunStore
    from shared.settings import Settings

    (run,) = RunStore.from_settings(Settings.model_validate(stack.settings)).list(DATASET)
    assert run.version == version and run.intake["shards"] == shards
    assert f"in {shards} shards" in run.transitions[0].detail  # the timeline says the drop fanned out
    # 3 x 14 images and the duplicate (the text file is rejected); a later shard may find the duplicate's
    # bytes in the cache pack an earlier shard sealed
    assert run.intake["images_converted"] + run.intake["images_reused"] == 43, run.intake
    assert calls(fired, "training_ready") == ["succeeded"]


def test_replayed_killed_and_poisoned_shards(make_stack, tmp_path, break_shard_line):
    from shared.pipeline.context import Pipeline
    from shared.pipeline.reports import intake_failure
    from shared.settings import Settings

    files = drop_files()
    src = cases.write(tmp_path / "src", files)
    stack = fanout_stack(make_stack, 15)  # 3 shards
    expected = expected_artifacts(stack, src, tmp_path)
    victim = "fox/003.jpg"

    # 1. poison: the shard holding the victim fails on every delivery
    break_shard_line(victim, "the worker died writing this line")
    drop(stack, files)
    poisoned, message = one_poisoned_shard(stack, stack.host.run_until_idle(timeout=180))
    failure = intake_failure(Pipeline(Settings.model_validate(stack.settings)), DATASET)
    assert failure is not None and failure["stage"] == "convert"
    assert f"shard {message['shard'] + 1} of 3" in failure["message"] and victim in failure["message"], failure

    # 2. killed halfway: the same drop again; the failed shard dies once more after writing part of its
    #    output, then its redelivery finishes; the other shards' messages are delivered twice
    attempts = break_shard_line(victim, "killed halfway", times=1)
    from azure.storage.blob import BlobServiceClient

    BlobServiceClient.from_connection_string(stack.settings["AzureWebJobsStorage"]).get_blob_client(
        "datasets", f"{DATASET}/_READY"
    ).upload_blob(b"", overwrite=True)
    first = stack.host.run_once()  # dataset_ready re-sends the 3 shard messages of the unfinished job
    assert calls(first, "dataset_ready") == ["succeeded"]
    shard_queue, _ = deliver_shard_messages_twice(stack)
    fired = first + stack.host.run_until_idle(timeout=180)
    assert attempts["n"] == 1
    versions = published(stack)
    assert list(versions.values()) == [expected]
    assert intake_failure(Pipeline(Settings.model_validate(stack.settings)), DATASET) is None  # cleared
    shard_calls = [i for i in fired if i.function_name == "convert_shard"]
    assert [i.outcome for i in shard_calls].count("failed") == 1
    assert shard_queue.peek_messages() == []
    from shared.pipeline.store import RunStore

    assert len(RunStore.from_settings(Settings.model_validate(stack.settings)).list(DATASET)) == 1

    # 3. a late duplicate after publishing changes nothing
    shard_queue.send_message(poisoned.content)
    late = stack.host.run_until_idle(timeout=60)
    assert calls(late, "convert_shard") == ["succeeded"]
    assert published(stack) == versions
