"""Planning a fan-out (``shared.pipeline.fanout`` runs the shards): decided in the ``dataset_ready`` call."""

from __future__ import annotations

import base64
import json
import logging
import time
from dataclasses import asdict
from typing import Any

from shared.conversion.options import ConvertOptions
from shared.layout import shard_job_prefix
from shared.pipeline.context import Pipeline
from shared.settings import Settings

log = logging.getLogger(__name__)

PLAN = "plan.json"


def shard_count(images: int, settings: Settings) -> int | None:
    """The number of shards for a drop of ``images`` candidate images, or None (convert in one call)."""
    if not settings.shard_min_images or images < settings.shard_min_images:
        return None
    return max(1, -(-images // settings.shard_images))


def plan_fanout(
    pipeline: Pipeline, settings: Settings, dataset: str, job: str, marker_body: bytes, options: ConvertOptions
) -> list[str] | None:
    """Plan a fan-out of ``datasets/<dataset>/`` when it holds at least ``shard_min_images`` images and
    return the shard messages; None when it is smaller (convert it in this call). ``DatasetError`` when
    the listing alone shows the drop cannot train. An existing plan of the same job is kept (a replay)."""
    from azure.core.exceptions import ResourceExistsError

    from shared.conversion.records import prepare_records
    from shared.conversion.shards import assign_shards
    from shared.storage.readers import BlobDatasetSource

    validated = options.validated()
    source = BlobDatasetSource(pipeline.datasets, f"{dataset}/", read_concurrency=settings.convert_read_concurrency)
    prepared = prepare_records(source, validated)
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
    try:
        pipeline.training.upload_blob(prefix + PLAN, json.dumps(plan).encode(), overwrite=False)
    except ResourceExistsError:  # the same drop again: its plan (and done shards) stay
        plan = json.loads(pipeline.training.download_blob(prefix + PLAN).readall())
    log.info("%s: %d images in %d shards (job %s)", dataset, len(prepared.records), plan["shards"], job)
    return [shard_message(dataset, job, k, plan["shards"]) for k in range(plan["shards"])]


def shard_message(dataset: str, job: str, shard: int, shards: int) -> str:
    return json.dumps({"dataset": dataset, "job": job, "shard": shard, "shards": shards})
