"""Binding settings every trigger module shares: the storage connection and the Event Grid blob trigger."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import azure.functions as func

# The app setting (or its ``__``-suffixed identity-based variants) every storage binding connects through.
STORAGE_CONNECTION = "AzureWebJobsStorage"


def event_grid_blob_trigger(bp: func.Blueprint, arg_name: str, path: str) -> Callable[..., Any]:
    """``bp.blob_trigger`` on ``path`` through the storage connection, fed by the storage account's Event Grid
    events (``source=EventGrid``) rather than by polling."""
    return bp.blob_trigger(
        arg_name=arg_name, path=path, connection=STORAGE_CONNECTION, source=func.BlobSource.EVENT_GRID
    )
