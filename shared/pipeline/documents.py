"""The pipeline's JSON documents as pydantic models, in one place (a run is ``shared.pipeline.models.Run``).

- ``Manifest``: ``training/<dataset>/<version>/manifest.json``, written once by the converter. Its keys
  and their order are the file's: ``Manifest.model_validate(m).model_dump(mode="json") == m``, and
  ``manifest_bytes`` gives the file's exact bytes (the converter's compact UTF-8 JSON).
- ``ProductionRecord``: ``reports/<dataset>/production.json`` (what serves, its history, the deployments
  kept for the rollback window).
- ``ScheduledEvaluation``: ``runs/<dataset>/_scheduled/<stamp>.json`` (one re-evaluation of production).
- ``IntakeReceipt``: ``runs/<dataset>/_intake/<fingerprint>.json`` (a drop already converted).

Reading and writing them under their ETag: ``shared.pipeline.stored``.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from shared.layout import scheduled_prefix
from shared.pipeline.models import RoleProgress, utcnow
from shared.pipeline.stored import DocumentError, Lease, LeasedDocument, StoredDocument, parse_document
from shared.reporting.schema import ProductionHistoryPoint


# --- manifest.json --------------------------------------------------------------------------------
class _Exact(BaseModel):
    """Unknown keys are refused: the model is the file's whole contract."""

    model_config = ConfigDict(extra="forbid")


class ManifestImage(_Exact):
    format: str
    detail: str
    max_side: int
    quality: int
    draft_tolerance: float
    background: str
    max_pixels: int


class ManifestSplitMethod(_Exact):
    given: bool
    method: str
    ratios: list[float] | None
    seed: int


class SplitSummary(_Exact):
    examples: int
    per_label: dict[str, int]
    files: list[str]
    bytes: int
    text_tokens: int
    image_tokens: int


class TrainingEstimate(_Exact):
    text_tokens: int
    image_tokens: int
    tokens_per_epoch: int
    epochs: int
    training_tokens: int
    cost_usd: float
    price_per_1m: float
    model: str


class ManifestSource(_Exact):
    files: int
    bytes: int
    digest: str


class ConverterSettings(_Exact):
    """The conversion settings the version is a digest of, plus the Pillow version that ran."""

    name: str
    format: int
    max_side: int
    quality: int
    max_pixels: int
    max_file_bytes: int
    min_side: int
    max_aspect_ratio: float
    memory_budget: int
    draft_tolerance: float
    split: Literal["given"] | list[float]
    seed: int
    prompt_template: str | None
    model: str
    epochs: int
    price_per_1m_training_tokens: float
    pillow: str


class Manifest(_Exact):
    """``manifest.json`` of a converted version, keys in the order the file has them."""

    version: str
    labels: list[str]
    prompt: str
    image: ManifestImage
    split: ManifestSplitMethod
    splits: dict[str, SplitSummary]
    examples: int
    rejected: int
    rejected_by_code: dict[str, int]
    ignored: list[str]
    warnings: list[str]
    estimate: TrainingEstimate
    source: ManifestSource
    converter: ConverterSettings


# --- production.json ------------------------------------------------------------------------------
class RetiredDeployment(BaseModel):
    """A previous production deployment kept for the rollback window, then deleted."""

    version: str | None
    model: str | None
    deployment: str | None
    retired_at: datetime
    delete_after: datetime
    deleted_at: datetime | None = None
    retired_early: str | None = None  # why it was deleted before its time (a deployment slot was needed)


class ProductionRecord(StoredDocument):
    """``reports/<dataset>/production.json``: the model serving ``dataset`` and its history."""

    dataset: str
    version: str
    model: str
    deployment: str
    sku: str
    promoted_at: datetime
    accuracy: float
    baseline_role: str | None = None
    baseline_accuracy: float | None = None
    reason: str = ""
    previous_version: str | None = None
    retired: list[RetiredDeployment] = Field(default_factory=list)
    history: list[ProductionHistoryPoint] = Field(default_factory=list)

    def mark_deleted(self, deployments: list[str], *, early: str | None = None) -> bool:
        """Record that the retired ``deployments`` are deleted (``early``: why before their time); False
        when none of them was still recorded as live (nothing to write)."""
        changed = False
        for entry in self.retired:
            if entry.deployment in deployments and entry.deleted_at is None:
                entry.deleted_at = utcnow()
                entry.retired_early = early
                changed = True
        return changed


# --- scheduled evaluations ------------------------------------------------------------------------
class ScheduledEvaluation(LeasedDocument):
    """``runs/<dataset>/_scheduled/<id>.json``: one re-evaluation of production, resumable tick by tick
    (the scored examples live in side blobs next to it)."""

    id: str
    dataset: str
    created_at: datetime
    test_set_version: str
    production_version: str | None
    roles: dict[str, RoleProgress]
    done: bool = False
    report: str | None = None
    lease: Lease | None = None
    last_error: str | None = None
    errors: int = 0
    failed: str | None = None

    @property
    def document_name(self) -> str:

        return f"{scheduled_prefix(self.dataset)}{self.id}.json"


# --- intake receipts ------------------------------------------------------------------------------
class IntakeReceipt(StoredDocument):
    """``runs/<dataset>/_intake/<fingerprint>.json``: the drop with this fingerprint converted to
    ``version`` (a replay of it skips the conversion)."""

    version: str
    examples: int = 0
    at: datetime


# --- helpers --------------------------------------------------------------------------------------
def manifest_from(data: Manifest | dict[str, Any] | bytes, name: str) -> Manifest:
    """A manifest from what a conversion gave (the model, its dict or the file's bytes); ``DocumentError``
    naming ``name`` when it does not have the manifest's shape."""
    if isinstance(data, Manifest):
        return data
    if isinstance(data, bytes):
        return parse_document(Manifest, data, name)
    try:
        return Manifest.model_validate(data)
    except ValidationError as error:
        raise DocumentError(f"{name} is not a valid Manifest: {error}") from None


def manifest_bytes(manifest: Manifest) -> bytes:
    """The bytes ``manifest.json`` holds: the converter's compact UTF-8 JSON of the manifest's keys."""
    return json.dumps(manifest.model_dump(mode="json"), ensure_ascii=False, separators=(",", ":")).encode("utf-8")
