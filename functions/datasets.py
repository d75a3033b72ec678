"""Blob triggers on the drop zone: a ``_READY`` marker or a ``.zip`` archive starts a conversion."""

from __future__ import annotations

import logging

import azure.functions as func

from shared.layout import DATASET_ARCHIVE_PATH, DATASET_READY_PATH, match_blob_path

bp = func.Blueprint()
log = logging.getLogger(__name__)


@bp.function_name("dataset_ready")
@bp.blob_trigger(
    arg_name="marker",
    path=DATASET_READY_PATH,
    connection="AzureWebJobsStorage",
    source=func.BlobSource.EVENT_GRID,
)
def dataset_ready(marker: func.InputStream) -> None:
    """``datasets/<dataset>/_READY`` landed: convert the folder; the marker's JSON body may override settings."""
    parts = match_blob_path(DATASET_READY_PATH, marker.name or "")
    if parts is None:
        log.warning("ignoring %s: not a dataset marker", marker.name)
        return
    from shared.pipeline.intake import accept_dataset
    from shared.settings import load_settings

    accept_dataset(load_settings(), parts["dataset"], archive=False, marker_body=marker.read())


@bp.function_name("dataset_archive_ready")
@bp.blob_trigger(
    arg_name="archive",
    path=DATASET_ARCHIVE_PATH,
    connection="AzureWebJobsStorage",
    source=func.BlobSource.EVENT_GRID,
)
def dataset_archive_ready(archive: func.InputStream) -> None:
    """``datasets/<dataset>.zip`` landed: convert the archive (read again by streaming from storage)."""
    parts = match_blob_path(DATASET_ARCHIVE_PATH, archive.name or "")
    if parts is None:
        log.warning("ignoring %s: not a dataset archive", archive.name)
        return
    from shared.pipeline.intake import accept_dataset
    from shared.settings import load_settings

    accept_dataset(load_settings(), parts["dataset"], archive=True, marker_body=b"")
