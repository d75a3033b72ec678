"""Blob trigger on a converted dataset's manifest: check the budget, upload, start fine-tuning."""

from __future__ import annotations

import logging

import azure.functions as func

from functions.bindings import event_grid_blob_trigger
from shared.layout import TRAINING_MANIFEST_PATH, match_blob_path

bp = func.Blueprint()
log = logging.getLogger(__name__)


@bp.function_name("training_ready")
@event_grid_blob_trigger(bp, arg_name="manifest", path=TRAINING_MANIFEST_PATH)
def training_ready(manifest: func.InputStream) -> None:
    """``training/<dataset>/<version>/manifest.json`` landed: start (or resume) that version's run."""
    parts = match_blob_path(TRAINING_MANIFEST_PATH, manifest.name or "")
    if parts is None:
        log.warning("ignoring %s: not a training manifest", manifest.name)
        return
    from shared.pipeline.training import start_training
    from shared.settings import load_settings
    from shared.telemetry import invocation

    settings = load_settings()
    with invocation("training_ready", settings, dataset=parts["dataset"], version=parts["version"]):
        start_training(settings, parts["dataset"], parts["version"])
