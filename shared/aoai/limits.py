"""Azure OpenAI's documented per-resource and per-file limits, and the pure planning the pipeline does
around them (no I/O here: callers pass what they listed).

Sources (Microsoft Learn):
- "Azure OpenAI quotas and limits" (learn.microsoft.com/azure/ai-foundry/openai/quotas-limits):
  max fine-tuned model deployments 5; max files per resource (fine-tuning) 50; total size of all files per
  resource (fine-tuning) 1 GB; max file size for Assistants & fine-tuning 512 MB.
- "Getting started with Azure OpenAI batch deployments" (learn.microsoft.com/azure/ai-foundry/openai/how-to/batch):
  a batch input file holds at most 100,000 requests and 200 MB.
The numbers are defaults of settings, so tests (and a resource with a raised quota) can use others.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from shared.errors import VisiontuneError

MB = 1024 * 1024
GB = 1024 * MB

FINE_TUNED_DEPLOYMENTS_PER_RESOURCE = 5
FINE_TUNE_FILES_PER_RESOURCE = 50
FINE_TUNE_FILES_TOTAL_BYTES = 1 * GB
FINE_TUNE_FILE_MAX_BYTES = 512 * MB
BATCH_FILE_MAX_BYTES = 200 * MB
BATCH_FILE_MAX_REQUESTS = 100_000


# --------------------------------------------------------------------------------------------------
# batch input files
# --------------------------------------------------------------------------------------------------
class BatchLineTooLargeError(VisiontuneError, ValueError):
    """One request line alone is larger than a whole batch file may be."""


def split_batch_lines(line_sizes: Sequence[int], *, max_bytes: int, max_requests: int) -> list[range]:
    """Cut consecutive request lines (their sizes in bytes, newline included) into the fewest files that
    each hold at most ``max_requests`` lines and ``max_bytes`` bytes. Returns the index range of each
    file, in order. Raises ``BatchLineTooLargeError`` when one line exceeds ``max_bytes``."""
    if max_bytes < 1 or max_requests < 1:
        raise ValueError("max_bytes and max_requests must be positive")
    parts: list[range] = []
    start = 0
    size = 0
    for index, line in enumerate(line_sizes):
        if line > max_bytes:
            raise BatchLineTooLargeError(
                f"request {index} is {line:,} bytes, more than a whole batch file may hold ({max_bytes:,})"
            )
        if index > start and (size + line > max_bytes or index - start >= max_requests):
            parts.append(range(start, index))
            start, size = index, 0
        size += line
    if len(line_sizes) > start:
        parts.append(range(start, len(line_sizes)))
    return parts


# --------------------------------------------------------------------------------------------------
# fine-tuning file quota
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RemoteFile:
    """A fine-tuning file already on the resource. ``expendable``: it belongs to a finished run, so it
    may be deleted to make room."""

    id: str
    name: str
    bytes: int
    expendable: bool = False


@dataclass(frozen=True)
class FileQuotaPlan:
    """What ``plan_fine_tune_files`` decided: ``fits`` (after deleting ``delete``), or ``problem`` (why
    it cannot fit, with how much to cut)."""

    fits: bool
    delete: tuple[str, ...] = ()
    problem: str | None = None
    used_bytes: int = 0
    needed_bytes: int = 0
    cut_bytes: int = 0


def _mb(value: int) -> str:
    return f"{value / MB:,.1f} MB"


HOW_TO_CUT = (
    "convert with a lower --quality (JPEG quality, default 85) or --max-side (default 512), or use fewer "
    "images, then drop the data again"
)


def plan_fine_tune_files(
    needed: dict[str, int],
    on_resource: Iterable[RemoteFile],
    *,
    max_total_bytes: int = FINE_TUNE_FILES_TOTAL_BYTES,
    max_file_bytes: int = FINE_TUNE_FILE_MAX_BYTES,
    max_files: int = FINE_TUNE_FILES_PER_RESOURCE,
) -> FileQuotaPlan:
    """Check that the files a run must upload (``needed``: name -> bytes) fit the resource's fine-tuning
    file quota next to ``on_resource`` (files already there; one with a needed name is already uploaded
    and not counted twice). When they do not fit, the fewest expendable files (largest first) whose
    deletion makes room are planned for deletion; when even that is not enough, ``problem`` says how many
    bytes to cut and how."""
    existing = list(on_resource)
    oversized = {name: size for name, size in needed.items() if size > max_file_bytes}
    if oversized:
        name, size = max(oversized.items(), key=lambda item: item[1])
        cut = size - max_file_bytes
        return FileQuotaPlan(
            fits=False,
            problem=(
                f"{name} is {_mb(size)}, over Azure OpenAI's limit of {_mb(max_file_bytes)} per fine-tuning "
                f"file: cut at least {_mb(cut)} ({cut / size:.0%}) from it. Nothing was uploaded. To fit, "
                + HOW_TO_CUT
                + "."
            ),
            needed_bytes=sum(needed.values()),
            cut_bytes=cut,
        )
    present = {f.name for f in existing}
    to_upload = {name: size for name, size in needed.items() if name not in present}
    used = sum(f.bytes for f in existing)
    need = sum(to_upload.values())
    over_bytes = used + need - max_total_bytes
    over_count = len(existing) + len(to_upload) - max_files
    if not to_upload or (over_bytes <= 0 and over_count <= 0):  # all there already, or room enough
        return FileQuotaPlan(fits=True, used_bytes=used, needed_bytes=need)
    delete: list[str] = []
    freed = 0
    candidates = sorted((f for f in existing if f.expendable and f.name not in needed), key=lambda f: -f.bytes)
    for candidate in candidates:
        if freed >= over_bytes and len(delete) >= over_count:
            break
        delete.append(candidate.id)
        freed += candidate.bytes
    if freed >= over_bytes and len(delete) >= over_count:
        return FileQuotaPlan(fits=True, delete=tuple(delete), used_bytes=used, needed_bytes=need)
    cut = max(0, over_bytes - freed)
    others = used - freed
    if cut > 0:
        problem = (
            f"the training files need {_mb(need)} but only {_mb(max(0, max_total_bytes - others))} of the "
            f"resource's {_mb(max_total_bytes)} fine-tuning file quota is free ({_mb(others)} is held by "
            f"files of other runs or uploads that are not this pipeline's to delete): cut at least "
            f"{_mb(cut)} ({cut / need:.0%} of the data). Nothing was uploaded. To fit, {HOW_TO_CUT}, or "
            "delete files you no longer need from the resource."
        )
    else:
        problem = (
            f"the resource already holds {len(existing)} fine-tuning files and allows {max_files}: delete "
            "files you no longer need from the resource and drop the data again. Nothing was uploaded."
        )
    return FileQuotaPlan(fits=False, problem=problem, used_bytes=used, needed_bytes=need, cut_bytes=cut)


# --------------------------------------------------------------------------------------------------
# fine-tuned deployment slots
# --------------------------------------------------------------------------------------------------
def is_fine_tuned_model(model: str | None) -> bool:
    """A fine-tuned model or checkpoint id (``<base>.ft-<hex>[-suffix]``, ``ftchkpt-...``, ``ft:...``)."""
    if not model:
        return False
    return ".ft-" in model or model.startswith(("ftchkpt-", "ft:"))


@dataclass(frozen=True)
class Expendable:
    """A fine-tuned deployment that may be deleted early to free a slot: a previous production
    deployment kept for its rollback window. Oldest ``retired_at`` goes first."""

    deployment: str
    dataset: str
    retired_at: datetime


@dataclass(frozen=True)
class SlotPlan:
    """``free``: a slot is there for the deployment; else ``retire`` names the deployment to delete
    first (then ask again), or neither: wait for a slot (``used`` of ``limit`` are taken)."""

    free: bool
    retire: Expendable | None = None
    used: int = 0
    limit: int = 0
    holders: tuple[str, ...] = field(default_factory=tuple)


def plan_deployment_slot(
    wanted: str,
    deployments: Iterable[tuple[str, str | None]],
    expendable: Iterable[Expendable],
    *,
    limit: int = FINE_TUNED_DEPLOYMENTS_PER_RESOURCE,
) -> SlotPlan:
    """Is there room for fine-tuned deployment ``wanted`` among ``deployments`` (name, model) on the
    resource? A deployment of that name already there holds its own slot. When all ``limit`` slots are
    taken, the oldest ``expendable`` deployment that is really there is proposed for early retirement."""
    fine_tuned = sorted(name for name, model in deployments if is_fine_tuned_model(model))
    if wanted in fine_tuned or len(fine_tuned) < limit:
        return SlotPlan(free=True, used=len(fine_tuned), limit=limit, holders=tuple(fine_tuned))
    present = set(fine_tuned)
    for candidate in sorted(expendable, key=lambda e: e.retired_at):
        if candidate.deployment in present and candidate.deployment != wanted:
            return SlotPlan(
                free=False, retire=candidate, used=len(fine_tuned), limit=limit, holders=tuple(fine_tuned)
            )
    return SlotPlan(free=False, used=len(fine_tuned), limit=limit, holders=tuple(fine_tuned))
