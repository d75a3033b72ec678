"""Blob triggers on the drop zone: a ``_READY`` marker or a ``.zip`` archive starts a conversion."""

from __future__ import annotations

import logging
import typing

import azure.functions as func

# SDK-type blob binding: the trigger hands the function a BlobClient, so the host never reads an archive
# into memory (Learn: "SDK type bindings for Azure Blob storage", functions-bindings-storage-blob-trigger,
# Python v2; PyPI azurefunctions-extensions-bindings-blob). Importing it loads azure.storage.blob at start.
import azurefunctions.extensions.bindings.blob as blob_sdk

from functions.bindings import STORAGE_CONNECTION, event_grid_blob_trigger
from shared.layout import DATASET_ARCHIVE_PATH, DATASET_READY_PATH, SHARD_QUEUE, match_blob_path

bp = func.Blueprint()
log = logging.getLogger(__name__)


@bp.function_name("dataset_ready")
@event_grid_blob_trigger(bp, arg_name="marker", path=DATASET_READY_PATH)
# A drop above VISIONTUNE_SHARD_MIN_IMAGES is fanned out: its shard messages go out through this binding
# (sent by the host once the call succeeded; identity-based through the same connection).
@bp.queue_output(arg_name="shards", queue_name=SHARD_QUEUE, connection=STORAGE_CONNECTION)
def dataset_ready(marker: func.InputStream, shards: func.Out[typing.List[str]]) -> None:  # noqa: UP006 - the worker refuses list[str]
    """``datasets/<dataset>/_READY`` landed: convert the folder (or plan its shards); the marker's JSON body
    may override settings."""
    parts = match_blob_path(DATASET_READY_PATH, marker.name or "")
    if parts is None:
        log.warning("ignoring %s: not a dataset marker", marker.name)
        return
    _accept_dataset("dataset_ready", parts["dataset"], shards, archive=False, marker_body=marker.read())


@bp.function_name("dataset_archive_ready")
@event_grid_blob_trigger(bp, arg_name="archive", path=DATASET_ARCHIVE_PATH)
@bp.queue_output(arg_name="shards", queue_name=SHARD_QUEUE, connection=STORAGE_CONNECTION)
def dataset_archive_ready(archive: blob_sdk.BlobClient, shards: func.Out[typing.List[str]]) -> None:  # noqa: UP006 - the worker refuses list[str]
    """``datasets/<dataset>.zip`` landed: convert the archive (or plan its shards), streamed from storage
    with ranged reads through the bound ``BlobClient`` (the archive is never held in memory whole)."""
    blob_path = f"{archive.container_name}/{archive.blob_name}"
    parts = match_blob_path(DATASET_ARCHIVE_PATH, blob_path)
    if parts is None:
        log.warning("ignoring %s: not a dataset archive", blob_path)
        return
    _accept_dataset(
        "dataset_archive_ready", parts["dataset"], shards, archive=True, marker_body=b"", archive_blob=archive
    )


def _accept_dataset(
    function_name: str,
    dataset: str,
    shards: func.Out[typing.List[str]],  # noqa: UP006 - as the binding's annotation
    *,
    archive: bool,
    marker_body: bytes,
    archive_blob: blob_sdk.BlobClient | None = None,
) -> None:
    """Convert ``dataset`` (or plan its shards, which go out through the ``shards`` queue binding) inside
    the telemetry scope of ``function_name``."""
    from shared.pipeline.intake import accept_dataset
    from shared.settings import load_settings
    from shared.telemetry import invocation

    settings = load_settings()
    with invocation(function_name, settings, dataset=dataset):
        result = accept_dataset(
            settings, dataset, archive=archive, marker_body=marker_body, archive_blob=archive_blob
        )
    if result is not None and result.shard_messages:
        shards.set(list(result.shard_messages))
