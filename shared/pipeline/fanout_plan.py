"""Planning a fan-out (``shared.pipeline.fanout`` runs the shards): decided in the ``dataset_ready`` call
(a folder drop) or the ``dataset_archive_ready`` call (a zip drop)."""

from __future__ import annotations

import base64
import json
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from shared.conversion.options import ConvertOptions
from shared.conversion.ranged_zip import RangedZipSource
from shared.conversion.records import prepare_records
from shared.conversion.shards import assign_shards
from shared.layout import shard_job_prefix
from shared.pipeline.context import Pipeline
from shared.settings import Settings
from shared.storage.readers import BlobDatasetSource, BlobRangeReader

if TYPE_CHECKING:
    from azure.storage.blob import BlobClient


log = logging.getLogger(__name__)

PLAN = "plan.json"


def shard_count(images: int, settings: Settings) -> int | None:
    """The number of shards for a drop of ``images`` candidate images, or None (convert in one call)."""
    if not settings.shard_min_images or images < settings.shard_min_images:
        return None
    return max(1, -(-images // settings.shard_images))


def plan_fanout(
    pipeline: Pipeline,
    settings: Settings,
    dataset: str,
    job: str,
    marker_body: bytes,
    options: ConvertOptions,
    *,
    archive: BlobClient | None = None,
) -> list[str] | None:
    """Plan a fan-out of ``datasets/<dataset>/`` (or of the zip drop behind ``archive``) when it holds at
    least ``shard_min_images`` images and return the shard messages; None when it is smaller (convert it
    in this call). ``DatasetError`` when the listing alone shows the drop cannot train; ``ValueError`` for
    an archive that is not a readable zip. An existing plan of the same job is kept (a replay).

    A zip drop is listed from its central directory by ranged reads (never the whole archive); the plan
    keeps the ETag it listed, and every shard reads that version or fails (``shared.pipeline.fanout``)."""
    from azure.core.exceptions import ResourceExistsError

    validated = options.validated()
    archive_version: dict[str, Any] | None = None
    if archive is not None:
        with open_archive(archive) as (source, reader):
            prepared = prepare_records(source, validated)
        archive_version = {"blob": archive.blob_name, "etag": reader.etag, "size": reader.size}
    else:
        folder = BlobDatasetSource(pipeline.datasets, f"{dataset}/", read_concurrency=settings.convert_read_concurrency)
        prepared = prepare_records(folder, validated)
    shards = shard_count(sum(1 for r in prepared.records if r.code is None), settings)
    if shards is None:
        return None
    prefix = shard_job_prefix(dataset, job)
    plan: dict[str, Any] = {
        "dataset": dataset,
        "job": job,
        "shards": shards,
        "options": asdict(validated),
        "marker": base64.b64encode(marker_body or b"").decode("ascii"),
        "started_at": time.time(),
        "prepared": prepared.to_json(),
        "assignment": assign_shards(prepared, validated, shards),
    }
    if archive_version is not None:
        plan["archive"] = archive_version
    try:
        pipeline.training.upload_blob(prefix + PLAN, json.dumps(plan).encode(), overwrite=False)
    except ResourceExistsError:  # the same drop again: its plan (and done shards) stay
        plan = json.loads(pipeline.training.download_blob(prefix + PLAN).readall())
    log.info("%s: %d images in %d shards (job %s)", dataset, len(prepared.records), plan["shards"], job)
    return [shard_message(dataset, job, k, plan["shards"]) for k in range(plan["shards"])]


@contextmanager
def open_archive(blob: BlobClient, etag: str | None = None) -> Iterator[tuple[RangedZipSource, BlobRangeReader]]:
    """The zip behind ``blob`` as a ``RangedZipSource`` (one ranged request per entry read) and its reader,
    pinned to ``etag`` when given, else to the version found now; ``BlobChangedError`` once it differs."""
    reader = BlobRangeReader(blob, etag)
    with RangedZipSource(reader, reader.size) as source:
        yield source, reader


def shard_message(dataset: str, job: str, shard: int, shards: int) -> str:
    return json.dumps({"dataset": dataset, "job": job, "shard": shard, "shards": shards})
