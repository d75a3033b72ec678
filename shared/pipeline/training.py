"""``start_training``: a converted version's manifest landed. Check the budget, upload the training and
validation files, wait (briefly) until they are processed and start the fine-tuning job.

Bounded in time: whatever is not done within ``TRAINING_TRIGGER_SECONDS`` (files still processing) is
picked up by the next ``advance_runs`` tick. Replays find the run past ``uploading`` and do nothing.
"""

from __future__ import annotations

import logging
import time

from shared.pipeline.advance import advance_run
from shared.pipeline.context import Pipeline
from shared.pipeline.models import Run, RunState, utcnow
from shared.pipeline.stages.budget import fill_from_manifest
from shared.reporting.schema import Transition
from shared.settings import Settings
from shared.telemetry import note, set_run_state

log = logging.getLogger(__name__)

TRAINING_TRIGGER_SECONDS = 120.0
FILE_WAIT_SECONDS = 60.0


def start_training(settings: Settings, dataset: str, version: str) -> Run | None:
    """Advance the run of ``dataset``/``version`` from ``converted`` to ``training`` (or ``over_budget``).
    Creates the run when the manifest came without one (a version converted elsewhere and uploaded).
    Returns the run as saved, or None when there is no manifest or another worker holds the run."""
    pipeline = Pipeline(settings)
    manifest = pipeline.manifest(dataset, version)
    if manifest is None:
        log.warning("training/%s/%s/manifest.json is gone; nothing to train", dataset, version)
        return None
    run = pipeline.store.get(dataset, version)
    if run is None:
        run = Run(dataset=dataset, version=version)
        fill_from_manifest(run, manifest)
        run.transitions.append(
            Transition(state="converted", at=utcnow(), detail="manifest found without a run")
        )
        run, _ = pipeline.store.create(run)
    set_run_state(run.state.value, version)
    if run.state not in (RunState.CONVERTED, RunState.UPLOADING):
        log.info("%s is already %s; nothing to start", run.key, run.state.value)
        return run
    saved = advance_run(
        pipeline,
        dataset,
        version,
        deadline=time.monotonic() + TRAINING_TRIGGER_SECONDS,
        wait_for_files=FILE_WAIT_SECONDS,
    )
    if saved is not None:
        set_run_state(saved.state.value)
        note(from_state=run.state.value)
    return saved
