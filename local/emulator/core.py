"""The core of the emulated Azure OpenAI resource: state, clock, background workers, shared helpers.

State lives in SQLite (``store.py``) and files on disk; every status (file, job, batch, deployment) is
computed from stored timestamps and the emulator clock, so a restart continues where wall time says it
should. Heavy work (validating an uploaded file and extracting image features, training) runs on a small
thread pool and is re-queued at start if it was interrupted. Each resource adds its operations in its own
module (``files``, ``fine_tuning``, ``training``, ``batches``, ``deployments``, ``chat``); ``service``
puts them together.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from local.emulator.config import EmulatorConfig
from local.emulator.constants import ACCOUNT, RESOURCE_GROUP, SUBSCRIPTION_ID
from local.emulator.errors import bad_request, not_found
from local.emulator.faults import Faults
from local.emulator.store import Store

log = logging.getLogger("visiontune.emulator")


def hex_id(seed_text: str) -> str:
    return hashlib.sha256(seed_text.encode()).hexdigest()[:32]


def iso_time(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def jsonl(rows: list[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(row) + "\n" for row in rows).encode()


def arm_account_path() -> str:
    return (
        f"/subscriptions/{SUBSCRIPTION_ID}/resourceGroups/{RESOURCE_GROUP}"
        f"/providers/Microsoft.CognitiveServices/accounts/{ACCOUNT}"
    )


class EmulatorCore:
    """State, clock and workers of one emulated Azure OpenAI resource rooted at ``data_dir``."""

    def __init__(self, data_dir: Path, config: EmulatorConfig) -> None:
        self.config = config
        self.data_dir = Path(data_dir)
        self.blob_dir = self.data_dir / "files"
        self.features_dir = self.data_dir / "features"
        self.models_dir = self.data_dir / "models"
        for folder in (self.blob_dir, self.features_dir, self.models_dir):
            folder.mkdir(parents=True, exist_ok=True)

        self.store = Store(self.data_dir / "emulator.sqlite3")
        self.faults = Faults()
        for spec in config.faults:
            self.faults.add(spec)
        self._executor = ThreadPoolExecutor(max_workers=2, thread_name_prefix="emulator-work")
        self._model_cache: OrderedDict[tuple[str, int], Any] = OrderedDict()
        self._model_cache_lock = threading.Lock()
        self._centroids: tuple[int, dict[str, Any]] | None = None
        self._busy: set[str] = set()
        self._busy_lock = threading.Lock()
        self._closed = False
        if config.create_default_deployments:
            self._ensure_default_deployments()
        self._resume_work()

    def now(self) -> float:
        """Wall time plus the persisted offset that ``advance_clock`` adds."""
        return time.time() + float(self.store.meta("clock_offset", 0.0))

    def advance_clock(self, seconds: float) -> float:
        """Move the emulator clock forward (persisted, so a restart keeps it). Returns the new offset."""
        if seconds < 0:
            raise bad_request("the clock only moves forward")
        with self.store.lock:
            offset = float(self.store.meta("clock_offset", 0.0)) + seconds
            self.store.set_meta("clock_offset", offset)
        self.tick()
        return offset

    def close(self) -> None:
        self._closed = True
        self._executor.shutdown(wait=True, cancel_futures=True)
        self.store.close()

    def _submit(self, key: str, function: Any, *args: Any) -> None:
        with self._busy_lock:
            if key in self._busy or self._closed:
                return
            self._busy.add(key)

        def run() -> None:
            try:
                function(*args)
            except Exception:  # noqa: BLE001 - a worker must never die silently
                log.exception("emulator background work %s failed", key)
            finally:
                with self._busy_lock:
                    self._busy.discard(key)

        self._executor.submit(run)

    def _resume_work(self) -> None:
        for record in self.store.list("file"):
            if record.get("result") is None:
                self._submit(f"file:{record['id']}", self._process_file, record["id"])
        for job in self.store.list("job"):
            if job.get("training") is None and job.get("fail") is None and job.get("cancelled_at") is None:
                self._submit(f"job:{job['id']}", self._train, job["id"])

    def tick(self) -> None:
        """Advance what the clock has made due: batches that reached their results."""
        for batch in self.store.list("batch"):
            if batch.get("outcome_done"):
                continue
            status = self._batch_status(batch, self.now())[0]
            if status in ("finalizing", "completed", "expired"):
                self._materialize_batch(batch["id"])

    def _update(self, kind: str, object_id: str, **changes: Any) -> dict[str, Any]:
        with self.store.lock:
            record = self.store.get(kind, object_id)
            if record is None:
                raise not_found(f"{kind} {object_id} not found")
            record.update(changes)
            self.store.put(kind, record)
            return record

    @staticmethod
    def _page(items: list[dict[str, Any]], after: str | None, limit: int) -> dict[str, Any]:
        if after:
            ids = [item["id"] for item in items]
            items = items[ids.index(after) + 1 :] if after in ids else []
        return {"object": "list", "data": items[:limit], "has_more": len(items) > limit}

    if TYPE_CHECKING:
        # What one resource's module calls of another's: each is implemented by the mixin of its resource
        # (the module is named) and ``service.Emulator`` combines them all. Declared for the type checker
        # only, so that every mixin type-checks on its own.
        def _process_file(self, file_id: str) -> None: ...  # files
        def _new_output_file(self, filename: str, purpose: str, content: bytes, visible_at: float) -> str: ...  # files
        def _ready_file(self, file_id: Any, param: str, purpose: str) -> dict[str, Any]: ...  # files
        def _train(self, job_id: str) -> None: ...  # training
        def _checkpoints(self, job: dict[str, Any]) -> list[dict[str, Any]]: ...  # training
        def _succeeded_job_for_model(self, model: str) -> tuple[dict[str, Any], int] | None: ...  # fine_tuning
        def _job(self, job_id: str) -> dict[str, Any]: ...  # fine_tuning
        def _job_times(self, job: dict[str, Any]) -> dict[str, float]: ...  # fine_tuning
        def _job_state(self, job: dict[str, Any], now: float) -> dict[str, Any]: ...  # fine_tuning
        def list_jobs(self, after: str | None, limit: int) -> dict[str, Any]: ...  # fine_tuning
        def _batch_status(self, batch: dict[str, Any], now: float) -> tuple[str, dict[str, float]]: ...  # batches
        def _materialize_batch(self, batch_id: str) -> None: ...  # batches
        def _ensure_default_deployments(self) -> None: ...  # deployments
        def _deployment_state(self, deployment: dict[str, Any]) -> dict[str, Any]: ...  # deployments
        def _resolve_model(self, name: str) -> dict[str, Any] | None: ...  # chat
        def _answer(self, deployment: dict[str, Any], body: Any, nonce: int | None) -> dict[str, Any]: ...  # chat
