"""The run: one dataset version's durable state and its states and allowed transitions (the per-dataset
overrides a ``_READY`` marker may carry are ``shared.pipeline.overrides``).

A run is one JSON blob (``runs/<dataset>/<version>.json``). It records what the pipeline intends to do
before each remote side effect (``intent``) and what came back right after (ids, statuses), so a crash
between two steps is resumed by looking for the remote object first, never by creating a second one.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

from shared.errors import VisiontuneError
from shared.layout import run_blob
from shared.pipeline.overrides import RunOverrides
from shared.pipeline.stored import Lease, LeasedDocument
from shared.reporting.schema import Decision, Failure, ResultsRow, Transition
from shared.settings import Settings


def utcnow() -> datetime:
    """Timezone-aware now (UTC); every timestamp in a run is UTC."""
    return datetime.now(UTC)


class RunState(StrEnum):
    CONVERTED = "converted"
    UPLOADING = "uploading"
    TRAINING = "training"
    TRAINED = "trained"
    # All fine-tuned deployment slots of the resource are taken: waits (never fails) until one frees.
    AWAITING_DEPLOYMENT_SLOT = "awaiting_deployment_slot"
    DEPLOYING = "deploying"
    DEPLOYED = "deployed"
    EVALUATING = "evaluating"
    EVALUATED = "evaluated"
    PROMOTED = "promoted"
    REJECTED = "rejected"
    FAILED = "failed"
    CANCELLED = "cancelled"
    OVER_BUDGET = "over_budget"  # stopped before anything was uploaded
    AWAITING_APPROVAL = "awaiting_approval"  # passed the gate; promotion: manual waits for a person


TERMINAL_STATES = frozenset(
    {RunState.PROMOTED, RunState.REJECTED, RunState.FAILED, RunState.CANCELLED, RunState.OVER_BUDGET}
)

# The forward path of the architecture note; failed / cancelled are reachable from every live state.
ALLOWED_TRANSITIONS: dict[RunState, frozenset[RunState]] = {
    RunState.CONVERTED: frozenset({RunState.UPLOADING, RunState.OVER_BUDGET}),
    RunState.UPLOADING: frozenset({RunState.TRAINING}),
    RunState.TRAINING: frozenset({RunState.TRAINED}),
    RunState.TRAINED: frozenset({RunState.DEPLOYING, RunState.AWAITING_DEPLOYMENT_SLOT}),
    RunState.AWAITING_DEPLOYMENT_SLOT: frozenset({RunState.DEPLOYING}),
    RunState.DEPLOYING: frozenset(
        {RunState.DEPLOYED, RunState.TRAINED}
    ),  # TRAINED: redeploy after a failed provisioning
    RunState.DEPLOYED: frozenset({RunState.EVALUATING}),
    RunState.EVALUATING: frozenset({RunState.EVALUATED}),
    RunState.EVALUATED: frozenset({RunState.PROMOTED, RunState.REJECTED, RunState.AWAITING_APPROVAL}),
    RunState.AWAITING_APPROVAL: frozenset({RunState.PROMOTED, RunState.REJECTED}),
}
for _state in list(ALLOWED_TRANSITIONS):
    ALLOWED_TRANSITIONS[_state] = ALLOWED_TRANSITIONS[_state] | {RunState.FAILED, RunState.CANCELLED}
# Terminal but not final: a re-dropped ``_READY`` marker may raise the budget (nothing was uploaded yet).
ALLOWED_TRANSITIONS[RunState.OVER_BUDGET] = frozenset({RunState.CONVERTED})
# Retry (``shared.pipeline.retry``): a failed or cancelled run restarts from the stage its state allows,
# reusing what exists (files, job, fine-tuned model).
RETRY_STATES = frozenset({RunState.CONVERTED, RunState.UPLOADING, RunState.TRAINING, RunState.TRAINED})
ALLOWED_TRANSITIONS[RunState.FAILED] = RETRY_STATES
ALLOWED_TRANSITIONS[RunState.CANCELLED] = RETRY_STATES


class TransitionError(VisiontuneError, ValueError):
    """A state change the state machine does not allow."""


class UploadedFile(BaseModel):
    split: str
    name: str  # the filename on the resource, unique per dataset version + split
    blob: str  # training container blob it was read from
    size: int
    file_id: str | None = None
    status: str | None = None  # pending | processed | error
    deleted: bool = False


class JobInfo(BaseModel):
    job_id: str | None = None
    model: str | None = None  # what the job fine-tunes (base model, or production model when continued)
    status: str | None = None
    fine_tuned_model: str | None = None
    trained_tokens: int | None = None
    error: str | None = None
    events: list[str] = Field(default_factory=list)
    checkpoints: list[str] = Field(default_factory=list)
    results: list[ResultsRow] = Field(default_factory=list)
    hyperparameters: dict[str, Any] = Field(default_factory=dict)
    started_at: datetime | None = None
    finished_at: datetime | None = None


class DeploymentInfo(BaseModel):
    name: str
    model: str
    sku: str
    state: str | None = None  # provisioning state as last seen
    requested_at: datetime | None = None
    ready_at: datetime | None = None
    deleted_at: datetime | None = None
    attempts: int = 0
    operation_url: str | None = None  # the last PUT's Azure-AsyncOperation (ARM puts a failure's error there)
    last_error: str | None = None  # the service's message when provisioning last failed


class BatchPart(BaseModel):
    """One Batch API input file of a role: test items ``[start, stop)`` (a test set over the per-file
    limits is sent as several files, joined back by ``custom_id``)."""

    start: int
    stop: int
    input_file: str | None = None
    batch_id: str | None = None
    status: str | None = None


class RoleProgress(BaseModel):
    """One model's evaluation on the run's test split. The scored examples live in a side blob."""

    role: Literal["base", "candidate", "incumbent"]
    model: str
    deployment: str | None = None
    method: Literal["batch", "realtime"]
    total: int = 0
    scored: int = 0
    done: bool = False
    retried_errors: bool = False
    batch_input_file: str | None = None
    batch_id: str | None = None
    batch_status: str | None = None
    note: str | None = None
    remote_files: list[str] = Field(default_factory=list)  # batch input/output/error files to delete later
    batch_parts: list[BatchPart] = Field(default_factory=list)  # the batch files, once planned
    incumbent_version: str | None = None  # for role incumbent: the production version it was


class ClassicProgress(BaseModel):
    """The classic baseline of a run (``shared.pipeline.classic``). Its scored examples and timings live in
    the side blob ``classic.json``; it never takes part in the promotion gate."""

    status: Literal["pending", "scored", "skipped", "failed", "disabled"] = "pending"
    reason: str | None = None  # why it is skipped, failed or off
    attempts: int = 0  # training + scoring steps started (recorded before each starts)
    started_at: datetime | None = None
    finished_at: datetime | None = None

    @property
    def settled(self) -> bool:
        return self.status != "pending"


class RetryState(BaseModel):
    stage: str
    attempts: int = 0
    next_attempt_at: datetime | None = None
    last_error: str | None = None


class Approval(BaseModel):
    """A person's decision on a candidate waiting in ``awaiting_approval``."""

    approved: bool
    by: str
    reason: str = ""
    at: datetime


class Run(LeasedDocument):
    """One dataset version's durable state. ``etag`` is the blob's ETag as last read or written."""

    model_config = ConfigDict(use_enum_values=False)

    dataset: str
    version: str
    state: RunState = RunState.CONVERTED
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)
    overrides: dict[str, Any] = Field(default_factory=dict)
    transitions: list[Transition] = Field(default_factory=list)
    intent: dict[str, Any] | None = None  # the side effect in flight: {"action", "at", ...}
    lease: Lease | None = None
    retry: RetryState | None = None
    failure: Failure | None = None
    estimate: dict[str, Any] = Field(default_factory=dict)
    labels: list[str] = Field(default_factory=list)
    splits: dict[str, dict[str, Any]] = Field(default_factory=dict)  # split -> {examples, per_label}
    # How the version was converted: images_converted, images_reused, files_rejected, seconds.
    intake: dict[str, Any] = Field(default_factory=dict)
    files: list[UploadedFile] = Field(default_factory=list)
    job: JobInfo = Field(default_factory=JobInfo)
    candidate: DeploymentInfo | None = None
    production_deployment: DeploymentInfo | None = None  # a separate one when production_sku != candidate_sku
    evaluation: dict[str, RoleProgress] = Field(default_factory=dict)
    classic: ClassicProgress | None = None  # the classic baseline, once the evaluation has started
    decision: Decision | None = None
    approval: Approval | None = None
    scores: dict[str, float] = Field(default_factory=dict)  # role -> accuracy, once its evaluation is done
    report_written_for: str | None = None  # the state whose report was last written

    _stored_transitions: int = PrivateAttr(default=0)  # transitions already in the stored blob (events)

    @property
    def document_name(self) -> str:
        return run_blob(self.dataset, self.version)

    def document_metadata(self) -> dict[str, str]:
        """Blob metadata that lets a listing skip settled runs (ended, cleaned up, report written)."""
        settled = self.terminal and self.report_written_for == self.state.value
        return {"state": self.state.value, "settled": "1" if settled else "0"}

    def loaded(self) -> None:
        self._stored_transitions = len(self.transitions)

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL_STATES

    @property
    def key(self) -> str:
        return f"{self.dataset}/{self.version}"

    def overrides_model(self) -> RunOverrides:
        return RunOverrides.model_validate(self.overrides)

    def effective_settings(self, settings: Settings) -> Settings:
        """``settings`` with this run's marker overrides applied."""
        return self.overrides_model().apply(settings) if self.overrides else settings

    def transition(self, state: RunState, detail: str = "") -> None:
        """Move to ``state`` (if the state machine allows it) and record the transition with time and detail."""
        if state == self.state:
            return
        if state not in ALLOWED_TRANSITIONS.get(self.state, frozenset()):
            raise TransitionError(f"{self.key}: {self.state.value} -> {state.value} is not allowed")
        self.state = state
        self.retry = None
        self.transitions.append(Transition(state=state.value, at=utcnow(), detail=detail))

    def fail(self, stage: str, message: str, *, cancelled: bool = False) -> None:
        """Record a failure (stage + the service's own message) and move to failed (or cancelled)."""
        self.failure = Failure(stage=stage, message=message, at=utcnow())
        self.intent = None
        self.transition(RunState.CANCELLED if cancelled else RunState.FAILED, f"{stage}: {message}")

    def note(self, detail: str) -> None:
        """Record a notable event that is not a state change (kept in the timeline with the current state)."""
        self.transitions.append(Transition(state=self.state.value, at=utcnow(), detail=detail))

    def live_deployments(self) -> list[DeploymentInfo]:
        """Deployments this run created (or may have created) that are not known to be deleted."""
        return [
            d for d in (self.candidate, self.production_deployment) if d is not None and d.deleted_at is None
        ]

    def file(self, split: str) -> UploadedFile | None:
        return next((f for f in self.files if f.split == split), None)
