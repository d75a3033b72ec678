"""Approve or reject a candidate waiting in ``awaiting_approval`` (``promotion: manual``).

The decision is recorded on the run (ETag-guarded, so two people deciding at once cannot both win),
then the run is advanced at once: an approval promotes it (or starts the production deployment when
production uses another SKU; the timer finishes that), a rejection rejects it and deletes its deployment.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from shared.errors import VisiontuneError
from shared.pipeline.advance import advance_run
from shared.pipeline.context import Pipeline
from shared.pipeline.models import Approval, Run, RunState, utcnow
from shared.settings import Settings


class ApprovalError(VisiontuneError):
    """The decision cannot be recorded; ``status`` is the HTTP status that says why (404, 409)."""

    def __init__(self, message: str, *, status: int) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class ApprovalResult:
    dataset: str
    version: str
    state: str
    detail: str


def decide(settings: Settings, dataset: str, version: str, *, approved: bool, by: str, reason: str = "") -> ApprovalResult:
    """Record a person's decision on ``dataset``/``version`` (a unique version prefix is fine) and act on it.
    Raises ``ApprovalError`` when there is no such run or it is not waiting for approval."""
    if not approved and not reason.strip():
        raise ApprovalError("a rejection needs a reason (--reason)", status=400)
    pipeline = Pipeline(settings)
    run = _find(pipeline, dataset, version)

    def record(current: Run) -> None:
        if current.state is not RunState.AWAITING_APPROVAL or current.approval is not None:
            already = ""
            if current.approval is not None:
                verdict = "approved" if current.approval.approved else "rejected"
                already = f" (already {verdict} by {current.approval.by})"
            raise ApprovalError(
                f"{current.key} is {current.state.value}{already}: only a run in awaiting_approval can be "
                "approved or rejected",
                status=409,
            )
        current.approval = Approval(approved=approved, by=by, reason=reason.strip(), at=utcnow())
        current.note(f"{'approved' if approved else 'rejected'} by {by}" + (f": {reason.strip()}" if reason.strip() else ""))

    pipeline.store.update(run.dataset, run.version, record)

    for _ in range(20):  # another worker may hold the run's lease for a moment
        advanced = advance_run(pipeline, run.dataset, run.version, deadline=time.monotonic() + settings.eval_tick_seconds)
        if advanced is not None:
            break
        time.sleep(0.5)
    final = pipeline.store.get(run.dataset, run.version) or run
    entered = ""  # the detail of the transition into the current state (later notes are cleanup)
    for transition in reversed(final.transitions):
        if transition.state != final.state.value:
            break
        entered = transition.detail
    return ApprovalResult(dataset=final.dataset, version=final.version, state=final.state.value, detail=entered)


def _find(pipeline: Pipeline, dataset: str, version: str) -> Run:
    runs = [r for r in pipeline.store.list(dataset) if r.version.startswith(version)]
    exact = [r for r in runs if r.version == version]
    runs = exact or runs
    if not runs:
        raise ApprovalError(f"dataset {dataset!r} has no version {version!r}", status=404)
    if len(runs) > 1:
        raise ApprovalError(f"version prefix {version!r} matches {len(runs)} runs of {dataset!r}", status=400)
    return runs[0]
