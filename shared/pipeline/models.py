"""The run: one dataset version's durable state, its states and allowed transitions, and the per-dataset
overrides a ``_READY`` marker may carry.

A run is one JSON blob (``runs/<dataset>/<version>.json``). It records what the pipeline intends to do
before each remote side effect (``intent``) and what came back right after (ids, statuses), so a crash
between two steps is resumed by looking for the remote object first, never by creating a second one.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, model_validator

from shared.errors import VisiontuneError
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


class OverridesError(VisiontuneError, ValueError):
    """A ``_READY`` marker whose body is not a valid overrides object."""


# The marker's byte-order marks: PowerShell 5 (``echo {} > _READY``, ``Out-File``) writes UTF-16 LE with
# a BOM; Notepad may write UTF-8 with a BOM. Anything else must be UTF-8.
_UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")
_UTF8_BOM = b"\xef\xbb\xbf"
MAX_MARKER_BYTES = 64 * 1024  # a marker holds a few overrides; a larger body is a mistake
# Azure OpenAI / OpenAI fine-tuning limits (OpenAI spec CreateFineTuningJobRequest, which the Azure v1
# authoring spec repeats for ``seed``): seed 0..2147483647; hyperparameters.batch_size 1..256,
# n_epochs 1..50, learning_rate_multiplier > 0. The 2024-10-21 Azure spec types all of them int32/double.
SEED_MAX = 2_147_483_647
BATCH_SIZE_MAX = 256
EPOCHS_MAX = 50


def decode_marker(body: bytes) -> str:
    """The text of a marker body: UTF-8 (with or without a BOM) or UTF-16 with a BOM.
    Raises ``OverridesError`` for anything else."""
    if len(body) > MAX_MARKER_BYTES:
        raise OverridesError(
            f"the _READY marker is {len(body):,} bytes; at most {MAX_MARKER_BYTES:,} are read "
            "(it should hold a small JSON object of overrides, or nothing)"
        )
    try:
        if body.startswith(_UTF16_BOMS):
            return body.decode("utf-16")
        return body.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise OverridesError(
            f"the _READY marker is neither UTF-8 nor UTF-16 with a byte-order mark (byte {error.start} "
            "cannot be decoded); save it as UTF-8 (PowerShell: Set-Content -Encoding utf8)"
        ) from None


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise OverridesError(f"the _READY marker holds the number {text}, which is out of range (not finite)")
    return value


def _no_constant(name: str) -> Any:
    raise OverridesError(f"the _READY marker holds {name}, which is not a number JSON allows")


# Override keys renamed to the name of the setting they override (one name per knob). The old names are
# still read, as the new ones, with a warning (``RunOverrides.warnings``).
RENAMED_OVERRIDES = {"epochs": "n_epochs", "budget_usd": "max_run_usd"}


class RunOverrides(BaseModel):
    """Per-dataset settings a ``_READY`` marker may carry as a JSON object; each key is the name of the
    ``Settings`` field it overrides, except ``prompt`` (not a setting). Unknown keys are an error (a typo
    must not silently train with the defaults); numbers must be finite and in the ranges Azure accepts
    (see ``SEED_MAX`` and friends). Old key names (``RENAMED_OVERRIDES``) are read with a warning."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    base_model: str | None = Field(default=None, min_length=1)
    n_epochs: int | None = Field(default=None, strict=True, ge=1, le=EPOCHS_MAX)
    batch_size: int | None = Field(default=None, strict=True, ge=1, le=BATCH_SIZE_MAX)
    learning_rate_multiplier: float | None = Field(default=None, gt=0)
    seed: int | None = Field(default=None, strict=True, ge=0, le=SEED_MAX)
    prompt: str | None = Field(default=None, min_length=1)
    max_side: int | None = Field(default=None, strict=True, ge=16, le=2048)
    jpeg_quality: int | None = Field(default=None, strict=True, ge=1, le=95)
    training_type: Literal["standard", "globalstandard", "developer"] | None = None
    candidate_sku: Literal["Standard", "GlobalStandard", "DeveloperTier"] | None = None
    continue_from_production: bool | None = Field(default=None, strict=True)
    promotion_margin: float | None = Field(default=None, ge=0, le=1)
    promotion_p_value: float | None = Field(default=None, gt=0, le=1)
    max_training_tokens: int | None = Field(default=None, strict=True, ge=1)
    max_run_usd: float | None = Field(default=None, ge=0)
    promotion: Literal["auto", "manual"] | None = None
    approval_timeout_days: float | None = Field(default=None, gt=0, le=365)
    _warnings: list[str] = PrivateAttr(default_factory=list)

    @model_validator(mode="before")
    @classmethod
    def _read_old_names(cls, data: Any) -> Any:
        if not isinstance(data, dict) or not any(old in data for old in RENAMED_OVERRIDES):
            return data
        data = dict(data)
        for old, new in RENAMED_OVERRIDES.items():
            if old in data:
                if new in data:
                    raise ValueError(f"{old} is the old name of {new}: give only {new}")
                data[new] = data.pop(old)
        return data

    @property
    def warnings(self) -> list[str]:
        """One sentence per old key name the marker used (it was read as the new one)."""
        return list(self._warnings)

    @classmethod
    def parse_marker(cls, body: bytes) -> RunOverrides:
        """Overrides from a marker body: empty/whitespace -> none; else a JSON object of known keys.
        Raises ``OverridesError`` (and nothing else) with a message a person can act on."""
        try:
            return cls._parse_marker(body)
        except OverridesError:
            raise
        except RecursionError:
            raise OverridesError("the _READY marker's JSON is nested too deeply; write a flat object") from None
        except Exception as error:  # noqa: BLE001 - any other failure is still a marker nobody can use
            raise OverridesError(
                f"the _READY marker cannot be read ({type(error).__name__}: {error}); leave it empty or "
                'write an object such as {"n_epochs": 3}'
            ) from None

    @classmethod
    def _parse_marker(cls, body: bytes) -> RunOverrides:
        text = decode_marker(body).strip() if body else ""
        if not text:
            return cls()
        try:
            data = json.loads(text, parse_float=_finite_float, parse_constant=_no_constant)
        except OverridesError:
            raise
        except ValueError as error:
            raise OverridesError(
                f"the _READY marker is not valid JSON ({error}); leave it empty or write an object "
                f'such as {{"n_epochs": 3}}'
            ) from error
        if not isinstance(data, dict):
            raise OverridesError(f"the _READY marker must hold a JSON object, not {type(data).__name__}")
        given_as = {new: old for old, new in RENAMED_OVERRIDES.items() if old in data}
        try:
            overrides = cls.model_validate(data)
        except ValidationError as error:
            problems = "; ".join(
                f"{'.'.join(given_as.get(str(p), str(p)) for p in e['loc']) or 'marker'}: {e['msg']}"
                for e in error.errors()
            )
            allowed = ", ".join(sorted(cls.model_fields))
            raise OverridesError(
                f"invalid override(s) in the _READY marker: {problems} (allowed keys: {allowed})"
            ) from error
        overrides._warnings = [
            f'the _READY marker key "{old}" is the old name of "{new}" (the setting it overrides): it was '
            f'read as "{new}"; write "{new}" instead'
            for new, old in given_as.items()
        ]
        return overrides

    def values(self) -> dict[str, Any]:
        """The overrides that were set (key -> value)."""
        return self.model_dump(exclude_none=True)

    def apply(self, settings: Settings) -> Settings:
        """``settings`` with these overrides applied (the prompt is not a setting: see ``prompt``)."""
        update = {key: value for key, value in self.values().items() if key != "prompt"}
        return settings.model_copy(update=update) if update else settings



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


class Lease(BaseModel):
    owner: str
    until: datetime


class Run(BaseModel):
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

    _etag: str | None = PrivateAttr(default=None)
    _stored_transitions: int = PrivateAttr(default=0)  # transitions already in the stored blob (events)
    _lease_lost: bool = PrivateAttr(default=False)  # a renewal found another writer: never save this copy

    @property
    def etag(self) -> str | None:
        return self._etag

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
