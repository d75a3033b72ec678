"""``supersede_older_runs``: one active run per dataset. When a drop of a dataset creates (or reopens) a
version, every other run of that dataset that has not reached deployment is cancelled: its job is
cancelled and its files deleted by the cleanup step, and its report says "superseded by <version>".

Policy: the latest drop wins. Runs that already deploy, evaluate or finished are left alone (their money
is spent; they finish and the gate compares them fairly). Rewriting ``_READY`` mid-run with an override
that changes the version (epochs, seed, max_side, ...) therefore cancels the older run before it spends
more, instead of training twice on the same images. ``VISIONTUNE_SUPERSEDE=false`` keeps older runs going.
"""

from __future__ import annotations

import logging
import time

from shared.pipeline.context import RUN_LEASE_SECONDS, Pipeline
from shared.pipeline.models import RunState
from shared.pipeline.store import ConcurrentUpdateError

log = logging.getLogger(__name__)

SUPERSEDED_STAGE = "superseded"
# Not yet deploying: what superseding saves is the training (and waiting) still to come.
SUPERSEDABLE_STATES = frozenset(
    {
        RunState.CONVERTED,
        RunState.UPLOADING,
        RunState.TRAINING,
        RunState.TRAINED,
        RunState.AWAITING_DEPLOYMENT_SLOT,
    }
)
CLAIM_ATTEMPTS = 10
CLAIM_WAIT_SECONDS = 1.0


def supersede_older_runs(pipeline: Pipeline, dataset: str, newer: str) -> list[str]:
    """Cancel every run of ``dataset`` other than ``newer`` that has not reached deployment (when
    ``settings.supersede`` is on). Returns the versions cancelled. A run another worker keeps leased is
    waited for briefly, then left for the next drop (logged)."""
    if not pipeline.settings.supersede:
        return []
    cancelled: list[str] = []
    for run in pipeline.store.list(dataset):
        if run.version == newer or run.state not in SUPERSEDABLE_STATES:
            continue
        for _ in range(CLAIM_ATTEMPTS):
            claimed = pipeline.store.claim(dataset, run.version, seconds=RUN_LEASE_SECONDS)
            if claimed is None:
                time.sleep(CLAIM_WAIT_SECONDS)
                continue
            if claimed.state not in SUPERSEDABLE_STATES:
                break
            claimed.fail(SUPERSEDED_STAGE, f"superseded by version {newer} of {dataset}", cancelled=True)
            claimed.lease = None
            try:
                pipeline.store.save(claimed)
            except ConcurrentUpdateError:
                continue
            cancelled.append(run.version)
            log.info("%s: superseded by %s", claimed.key, newer)
            break
        else:
            log.warning("%s/%s stayed leased; it was not superseded by %s", dataset, run.version, newer)
    return cancelled
