"""The dataset's converted-image cache as intake uses it: built under ``_cache/<dataset>/`` in the training
container, and collected after a version is published (entries no kept version uses)."""

from __future__ import annotations

import logging

from shared.conversion.cache import ImageCache
from shared.conversion.options import CONVERTER_FORMAT, ConvertOptions, image_settings
from shared.layout import MANIFEST_NAME, cache_prefix, dataset_prefix
from shared.pipeline.context import Pipeline
from shared.settings import Settings
from shared.storage.cache_store import BlobCacheStore
from shared.telemetry import note

log = logging.getLogger(__name__)


def image_cache(pipeline: Pipeline, settings: Settings, dataset: str, options: ConvertOptions) -> ImageCache:
    """The dataset's converted-image cache, under ``_cache/<dataset>/`` in the training container."""
    return ImageCache(
        BlobCacheStore(pipeline.training, cache_prefix(dataset)),
        image_settings(options),
        CONVERTER_FORMAT,
        grace_seconds=settings.convert_cache_grace_seconds,
    )


def published_versions(pipeline: Pipeline, dataset: str) -> set[str]:
    """The versions of ``dataset`` whose manifest is in the training container (the kept versions)."""
    versions = set()
    for blob in pipeline.training.list_blobs(name_starts_with=dataset_prefix(dataset)):
        parts = blob.name.split("/")
        if len(parts) == 3 and parts[2] == MANIFEST_NAME:
            versions.add(parts[1])
    return versions


def collect_cache(pipeline: Pipeline, dataset: str, cache: ImageCache) -> None:
    """Collect cache entries no published version uses; a failure here only leaves garbage behind."""
    try:
        stats = cache.collect(published_versions(pipeline, dataset))
    except Exception as error:  # noqa: BLE001 - the version is published; garbage can wait for the next drop
        log.warning("%s: could not collect the image cache: %s", dataset, error)
        return
    # Counts on the invocation's summary record rather than a record of their own.
    note(**{f"cache_{name}": value for name, value in stats.items()})
