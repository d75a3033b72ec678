"""Everything about the emulator that can be tuned (clocks, limits, seed, faults at start)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class EmulatorConfig:
    """Emulator settings; the defaults suit interactive use, tests shorten the clocks (~0.2 s)."""

    step_seconds: float = 5.0  # how long each job/batch status lasts
    file_processing_seconds: float = 1.0  # how long an uploaded file stays 'pending' (at least)
    deployment_seconds: float = 2.0  # how long a deployment stays 'Creating'
    seed: int = 0  # default job seed and the base model's randomness
    max_files: int = 50  # fine-tuning files per resource
    max_total_file_bytes: int = 1024**3  # total size of fine-tuning files per resource (1 GB)
    max_file_bytes: int = 512 * 1024**2  # one upload (Files API)
    # Batch input limits (Learn "Azure OpenAI quotas and limits", batch limits): a larger upload is refused,
    # a file with more requests fails validation.
    max_batch_file_bytes: int = 200 * 1024**2
    max_batch_requests: int = 100_000
    max_active_jobs: int = 21  # 1 running + 20 queued
    max_fine_tuned_deployments: int = 5
    max_running_steps: int = 10  # cap on how many clock steps 'running' lasts, whatever n_epochs says
    base_samples_per_label: int = 3  # examples per label the base model 'remembers' from each training file
    create_default_deployments: bool = True  # the base (GlobalStandard) and base-batch (GlobalBatch) deployments
    faults: list[dict[str, Any]] = field(default_factory=list)  # faults active from the start (admin format)
    log_level: str = "warning"  # uvicorn's
    specs_dir: Path | None = None  # the official spec copies (shared/specs); found beside the checkout when None
    record_requests: bool = False  # keep every data-plane and ARM request for GET /_emulator/requests
