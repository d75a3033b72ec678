"""The emulated Azure OpenAI resource: files, fine-tuning jobs, batches, deployments and chat answers.

Pure logic behind the HTTP layer (``app.py``). State lives in SQLite (``store.py``) and files on disk;
every status (file, job, batch, deployment) is computed from stored timestamps and the emulator clock,
so a restart continues where wall time says it should. Heavy work (validating an uploaded file and
extracting image features, training) runs on a small thread pool and is re-queued at start if it was
interrupted.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import os
import pickle
import re
import threading
import time
import uuid
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from local.emulator import datafiles, learners
from local.emulator.config import EmulatorConfig
from local.emulator.constants import (
    ACCOUNT,
    BASE_DEPLOYMENT,
    BASE_MODEL,
    BASE_MODELS,
    BATCH_DEPLOYMENT,
    RESOURCE_GROUP,
    SUBSCRIPTION_ID,
)
from local.emulator.errors import ApiError, bad_request, not_found
from local.emulator.faults import Faults

log = logging.getLogger("visiontune.emulator")

UPLOAD_PURPOSES = ("fine-tune", "batch", "assistants")
JOB_TERMINAL = ("succeeded", "failed", "cancelled")
BATCH_TERMINAL = ("completed", "failed", "expired", "cancelled")
TRAINING_TYPES = ("standard", "globalstandard", "developer")
SUFFIX_RE = re.compile(r"^[A-Za-z0-9_-]{1,18}$")
FINE_TUNED_SKUS = ("Standard", "GlobalStandard", "DeveloperTier")
BATCH_SKUS = ("GlobalBatch", "DataZoneBatch")
KNOWN_SKUS = FINE_TUNED_SKUS + BATCH_SKUS + (
    "DataZoneStandard",
    "ProvisionedManaged",
    "GlobalProvisionedManaged",
    "DataZoneProvisionedManaged",
)
RESULTS_COLUMNS = (
    "step",
    "train_loss",
    "train_mean_token_accuracy",
    "valid_loss",
    "validation_mean_token_accuracy",
    "full_valid_loss",
    "full_valid_mean_token_accuracy",
)
DEPLOYMENT_NOT_FOUND = (
    "The API deployment for this resource does not exist. If you created the deployment within the last "
    "5 minutes, please wait a moment and try again."
)
BATCH_WINDOW_SECONDS = 24 * 3600
MAX_UPLOAD_BYTES = 8 * 1024**3  # the Uploads API's limit
MAX_UPLOAD_PART_BYTES = 64 * 1024**2


def _hex(seed_text: str) -> str:
    return hashlib.sha256(seed_text.encode()).hexdigest()[:32]


def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _int_or_auto(value: Any, name: str, low: float, high: float, *, number: bool = False) -> Any:
    if value is None or value == "auto":
        return "auto"
    valid_type = (int, float) if number else (int,)
    if isinstance(value, bool) or not isinstance(value, valid_type) or not (low <= value <= high):
        kind = "a number" if number else "an integer"
        raise bad_request(f"hyperparameters.{name} must be 'auto' or {kind} between {low} and {high}.", param=name)
    return value


class Emulator:
    """One emulated Azure OpenAI resource rooted at ``data_dir``."""

    def __init__(self, data_dir: Path, config: EmulatorConfig) -> None:
        self.config = config
        self.data_dir = Path(data_dir)
        self.blob_dir = self.data_dir / "files"
        self.features_dir = self.data_dir / "features"
        self.models_dir = self.data_dir / "models"
        for folder in (self.blob_dir, self.features_dir, self.models_dir):
            folder.mkdir(parents=True, exist_ok=True)
        from local.emulator.store import Store

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

    # ------------------------------------------------------------------------------------------
    # clock and housekeeping
    # ------------------------------------------------------------------------------------------
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

    # ------------------------------------------------------------------------------------------
    # files
    # ------------------------------------------------------------------------------------------
    def create_file(
        self, filename: str, purpose: str, content: bytes, *, size_limit: int | None = None
    ) -> dict[str, Any]:
        """Store an upload; it is 'pending' until processed (validated) and the processing clock ran."""
        if purpose not in UPLOAD_PURPOSES:
            raise bad_request(
                f"The purpose '{purpose}' is not supported for uploads; use one of {', '.join(UPLOAD_PURPOSES)}.",
                param="purpose",
            )
        if not filename:
            raise bad_request("The uploaded file needs a file name.", param="file")
        limit = self.config.max_batch_file_bytes if purpose == "batch" else self.config.max_file_bytes
        limit = size_limit or limit
        if len(content) > limit:
            raise bad_request(
                f"The file is {len(content)} bytes; the limit for purpose '{purpose}' is {limit} bytes.",
                param="file",
            )
        if not content:
            raise bad_request("The uploaded file is empty.", param="file")
        with self.store.lock:
            if purpose == "fine-tune":
                existing = [f for f in self.store.list("file") if f["purpose"] == "fine-tune"]
                if len(existing) >= self.config.max_files:
                    raise ApiError(
                        400,
                        "quotaExceeded",
                        f"Quota exceeded: this resource already has {len(existing)} fine-tuning files and the limit is "
                        f"{self.config.max_files}. Delete files you no longer need and try again.",
                    )
                used = sum(f["bytes"] for f in existing)
                if used + len(content) > self.config.max_total_file_bytes:
                    raise ApiError(
                        400,
                        "quotaExceeded",
                        f"Quota exceeded: the fine-tuning files of this resource would total {used + len(content)} bytes; "
                        f"the limit is {self.config.max_total_file_bytes} bytes. Delete files you no longer need.",
                    )
            file_id = "file-" + uuid.uuid4().hex
            (self.blob_dir / file_id).write_bytes(content)
            now = self.now()
            record = {
                "id": file_id,
                "created_at": now,
                "filename": filename,
                "purpose": purpose,
                "bytes": len(content),
                "ready_at": now + self.config.file_processing_seconds,
                "result": None,
            }
            self.store.put("file", record)
        self._submit(f"file:{file_id}", self._process_file, file_id)
        return self.file_public(record)

    def _new_output_file(self, filename: str, purpose: str, content: bytes, visible_at: float) -> str:
        file_id = "file-" + uuid.uuid4().hex
        (self.blob_dir / file_id).write_bytes(content)
        self.store.put(
            "file",
            {
                "id": file_id,
                "created_at": visible_at,
                "filename": filename,
                "purpose": purpose,
                "bytes": len(content),
                "ready_at": visible_at,
                "visible_at": visible_at,
                "result": {"status": "processed"},
            },
        )
        return file_id

    def _process_file(self, file_id: str) -> None:
        record = self.store.get("file", file_id)
        if record is None:
            return
        raw = (self.blob_dir / file_id).read_bytes()
        result: dict[str, Any]
        try:
            if record["purpose"] == "fine-tune":
                parsed = datafiles.parse_training_file(raw)
                self._save_training_features(file_id, parsed)
                result = {"status": "processed", "examples": len(parsed.examples), "tokens": parsed.tokens}
            elif record["purpose"] == "batch":
                result = {"status": "processed", "lines": datafiles.check_jsonl(raw)}
            else:
                result = {"status": "processed"}
        except datafiles.FileValidationError as exc:
            result = {"status": "error", "status_details": str(exc)}
        if self.store.get("file", file_id) is not None:
            self._update("file", file_id, result=result)

    def _save_training_features(self, file_id: str, parsed: datafiles.TrainingFile) -> None:
        import numpy as np

        features, thumbnails, labels, tokens = [], [], [], []
        for example in parsed.examples:
            tokens.append(example.tokens)
            if example.image is None:
                continue
            image = learners.open_image(example.image, strict=False)
            features.append(learners.image_features(image))
            thumbnails.append(learners.thumbnail_features(image))
            labels.append(example.label)
        np.savez(
            self.features_dir / f"{file_id}.npz",
            features=np.array(features, dtype=np.float32).reshape(len(features), -1),
            thumbnails=np.array(thumbnails, dtype=np.float32).reshape(len(thumbnails), -1),
            labels=np.array(labels, dtype=str),
            tokens=np.array(tokens, dtype=np.int64),
        )
        # What the base model 'remembers' of this file: a few examples per label (first seen, stable).
        remembered: dict[str, list[list[float]]] = {}
        for label, thumbnail in zip(labels, thumbnails):
            bucket = remembered.setdefault(label, [])
            if len(bucket) < self.config.base_samples_per_label:
                bucket.append([round(float(v), 4) for v in thumbnail])
        self.store.put("base_sample", {"id": file_id, "created_at": self.now(), "samples": remembered})
        self._centroids = None

    def file_status(self, record: dict[str, Any], now: float) -> tuple[str, str | None]:
        result = record.get("result")
        if result is None or now < record["ready_at"]:
            return "pending", None
        return result["status"], result.get("status_details")

    def file_public(self, record: dict[str, Any]) -> dict[str, Any]:
        status, details = self.file_status(record, self.now())
        public = {
            "object": "file",
            "id": record["id"],
            "bytes": record["bytes"],
            "created_at": int(record["created_at"]),
            "filename": record["filename"],
            "purpose": record["purpose"],
            "status": status,
        }
        if details:
            public["status_details"] = details
        return public

    def _visible_file(self, file_id: str) -> dict[str, Any]:
        record = self.store.get("file", file_id)
        if record is None or record.get("visible_at", 0) > self.now():
            raise not_found(f"File {file_id} not found.")
        return record

    def list_files(self, purpose: str | None = None, after: str | None = None, limit: int = 10_000) -> dict[str, Any]:
        now = self.now()
        data = [
            self.file_public(record)
            for record in self.store.list("file")
            if record.get("visible_at", 0) <= now and (purpose is None or record["purpose"] == purpose)
        ]
        return self._page(data, after, limit)

    def get_file(self, file_id: str) -> dict[str, Any]:
        return self.file_public(self._visible_file(file_id))

    def file_content(self, file_id: str) -> bytes:
        self._visible_file(file_id)
        return (self.blob_dir / file_id).read_bytes()

    def delete_file(self, file_id: str) -> dict[str, Any]:
        self._visible_file(file_id)
        self.store.delete("file", file_id)
        (self.blob_dir / file_id).unlink(missing_ok=True)
        return {"object": "file", "deleted": True, "id": file_id}

    # ------------------------------------------------------------------------------------------
    # uploads (large files in parts)
    # ------------------------------------------------------------------------------------------
    def create_upload(self, body: Any) -> dict[str, Any]:
        """Start a multi-part upload (``bytes``, ``filename``, ``mime_type``, ``purpose``)."""
        if not isinstance(body, dict):
            raise bad_request("The request body must be a JSON object.")
        size, filename, purpose = body.get("bytes"), body.get("filename"), body.get("purpose")
        if isinstance(size, bool) or not isinstance(size, int) or not 0 < size <= MAX_UPLOAD_BYTES:
            raise bad_request(f"'bytes' must be an integer between 1 and {MAX_UPLOAD_BYTES}.", param="bytes")
        if not isinstance(filename, str) or not filename:
            raise bad_request("'filename' is required.", param="filename")
        if purpose not in UPLOAD_PURPOSES:
            raise bad_request(f"'purpose' must be one of {', '.join(UPLOAD_PURPOSES)}.", param="purpose")
        if not isinstance(body.get("mime_type"), str):
            raise bad_request("'mime_type' is required.", param="mime_type")
        now = self.now()
        upload = {
            "id": "upload_" + uuid.uuid4().hex,
            "created_at": now,
            "bytes": size,
            "filename": filename,
            "purpose": purpose,
            "status": "pending",
            "parts": [],
            "file": None,
        }
        self.store.put("upload", upload)
        return self._upload_public(upload)

    def _upload_public(self, upload: dict[str, Any]) -> dict[str, Any]:
        public = {
            "id": upload["id"],
            "object": "upload",
            "bytes": upload["bytes"],
            "created_at": int(upload["created_at"]),
            "expires_at": int(upload["created_at"] + 3600),
            "filename": upload["filename"],
            "purpose": upload["purpose"],
            "status": upload["status"],
        }
        if upload.get("file"):
            public["file"] = self.get_file(upload["file"])
        return public

    def _pending_upload(self, upload_id: str) -> dict[str, Any]:
        upload = self.store.get("upload", upload_id)
        if upload is None:
            raise not_found(f"Upload {upload_id} not found.")
        if upload["status"] != "pending":
            raise ApiError(400, "unexpectedEntityState", f"Upload {upload_id} is {upload['status']}.")
        return upload

    def add_upload_part(self, upload_id: str, data: bytes) -> dict[str, Any]:
        upload = self._pending_upload(upload_id)
        if not data or len(data) > MAX_UPLOAD_PART_BYTES:
            raise bad_request(f"A part must hold 1 to {MAX_UPLOAD_PART_BYTES} bytes.", param="data")
        part_id = "part_" + uuid.uuid4().hex
        (self.blob_dir / part_id).write_bytes(data)
        with self.store.lock:
            upload = self._pending_upload(upload_id)
            upload["parts"].append(part_id)
            self.store.put("upload", upload)
        return {"id": part_id, "object": "upload.part", "created_at": int(self.now()), "upload_id": upload_id}

    def complete_upload(self, upload_id: str, body: Any) -> dict[str, Any]:
        upload = self._pending_upload(upload_id)
        part_ids = body.get("part_ids") if isinstance(body, dict) else None
        if not isinstance(part_ids, list) or not part_ids or not set(part_ids) <= set(upload["parts"]):
            raise bad_request("'part_ids' must list the upload's parts in order.", param="part_ids")
        content = b"".join((self.blob_dir / part_id).read_bytes() for part_id in part_ids)
        if len(content) != upload["bytes"]:
            raise bad_request(
                f"The parts hold {len(content)} bytes but the upload was created for {upload['bytes']} bytes.",
                param="part_ids",
            )
        created = self.create_file(upload["filename"], upload["purpose"], content, size_limit=MAX_UPLOAD_BYTES)
        for part_id in upload["parts"]:
            (self.blob_dir / part_id).unlink(missing_ok=True)
        return self._upload_public(self._update("upload", upload_id, status="completed", file=created["id"]))

    def cancel_upload(self, upload_id: str) -> dict[str, Any]:
        upload = self._pending_upload(upload_id)
        for part_id in upload["parts"]:
            (self.blob_dir / part_id).unlink(missing_ok=True)
        return self._upload_public(self._update("upload", upload_id, status="cancelled"))

    # ------------------------------------------------------------------------------------------
    # fine-tuning jobs
    # ------------------------------------------------------------------------------------------
    def _ready_file(self, file_id: Any, param: str, purpose: str) -> dict[str, Any]:
        if not isinstance(file_id, str) or not file_id:
            raise bad_request(f"'{param}' is required and must be a file id.", param=param)
        record = self.store.get("file", file_id)
        if record is None:
            raise bad_request(f"The {param} '{file_id}' does not exist.", param=param)
        if record["purpose"] != purpose:
            raise bad_request(
                f"The {param} '{file_id}' has purpose '{record['purpose']}'; it must be '{purpose}'.", param=param
            )
        status, details = self.file_status(record, self.now())
        if status == "pending":
            raise bad_request(
                f"File {file_id} is still being processed and is not ready to be used. Please try again later.",
                param=param,
            )
        if status == "error":
            raise bad_request(f"The {param} '{file_id}' failed validation: {details}", param=param)
        return record

    def _succeeded_job_for_model(self, model: str) -> tuple[dict[str, Any], int] | None:
        """(job, epoch index) of a fine-tuned model id, a checkpoint id or a checkpoint model name."""
        now = self.now()
        for job in self.store.list("job"):
            names = {job["fine_tuned_model"]: job["hyperparameters"]["n_epochs"] - 1}
            for checkpoint in self._checkpoints(job)[-3:]:  # the service keeps the last 3 epochs
                names[checkpoint["id"]] = checkpoint["epoch"]
                names[checkpoint["model"]] = checkpoint["epoch"]
            if model in names and self._job_state(job, now)["status"] == "succeeded":
                return job, names[model]
        return None

    def create_job(self, body: Any) -> dict[str, Any]:
        """Validate a create request the way the service does and start the job's clock."""
        if not isinstance(body, dict):
            raise bad_request("The request body must be a JSON object.")
        model = body.get("model")
        if not isinstance(model, str) or not model:
            raise bad_request("'model' is required.", param="model")
        parent: dict[str, Any] | None = None
        if model in BASE_MODELS:
            base_model = model
        else:
            found = self._succeeded_job_for_model(model)
            if found is None:
                raise bad_request(
                    f"The specified base model '{model}' does not support fine-tuning.", param="model"
                )
            parent = found[0]
            base_model = parent["base_model"]
        training = self._ready_file(body.get("training_file"), "training_file", "fine-tune")
        validation_id = body.get("validation_file")
        if validation_id is not None:
            self._ready_file(validation_id, "validation_file", "fine-tune")
        suffix = body.get("suffix")
        if suffix is not None and (not isinstance(suffix, str) or not SUFFIX_RE.match(suffix)):
            raise bad_request(
                "'suffix' must be 1 to 18 characters: letters, digits, '-' or '_'.", param="suffix"
            )
        seed = body.get("seed")
        if seed is None:
            seed = self.config.seed
        if isinstance(seed, bool) or not isinstance(seed, int) or not (0 <= seed <= 2**31 - 1):
            raise bad_request("'seed' must be an integer between 0 and 2147483647.", param="seed")
        training_type = body.get("trainingType", body.get("training_type"))
        if training_type is not None and (
            not isinstance(training_type, str) or training_type.lower() not in TRAINING_TYPES
        ):
            raise bad_request(
                f"'trainingType' must be one of {', '.join(TRAINING_TYPES)}.", param="trainingType"
            )
        hyperparameters = self._requested_hyperparameters(body)
        with self.store.lock:
            active = [j for j in self.store.list("job") if self._job_state(j, self.now())["status"] not in JOB_TERMINAL]
            if len(active) >= self.config.max_active_jobs:
                raise ApiError(
                    400,
                    "quotaExceeded",
                    f"Quota exceeded: this resource already has {len(active)} active fine-tuning jobs "
                    f"(1 running + 20 queued at most). Wait for a job to finish or cancel one.",
                )
            examples = int(training["result"].get("examples", 0)) + (parent or {}).get("n_examples", 0)
            resolved = {
                "n_epochs": learners.auto_epochs(examples)
                if hyperparameters["n_epochs"] == "auto"
                else hyperparameters["n_epochs"],
                "batch_size": learners.auto_batch_size(examples)
                if hyperparameters["batch_size"] == "auto"
                else hyperparameters["batch_size"],
                "learning_rate_multiplier": 1.0
                if hyperparameters["learning_rate_multiplier"] == "auto"
                else float(hyperparameters["learning_rate_multiplier"]),
            }
            job_id = "ftjob-" + uuid.uuid4().hex
            model_hex = _hex(job_id + ":model")
            fine_tuned_model = f"{base_model}.ft-{model_hex}" + (f"-{suffix}" if suffix else "")
            now = self.now()
            job = {
                "id": job_id,
                "created_at": now,
                "model": model,
                "base_model": base_model,
                "parent_job": parent["id"] if parent else None,
                "training_file": training["id"],
                "validation_file": validation_id,
                "suffix": suffix,
                "seed": seed,
                "training_type": training_type.lower() if isinstance(training_type, str) else None,
                "hyperparameters": resolved,
                "n_examples": examples,
                "step_seconds": self.config.step_seconds,
                "running_steps": max(1, min(resolved["n_epochs"], self.config.max_running_steps)),
                "fail": self.faults.take_job_failure(),
                "cancelled_at": None,
                "fine_tuned_model": fine_tuned_model,
                "training": None,
            }
            self.store.put("job", job)
        if job["fail"] is None:
            self._submit(f"job:{job_id}", self._train, job_id)
        return self.job_public(job)

    @staticmethod
    def _requested_hyperparameters(body: dict[str, Any]) -> dict[str, Any]:
        method = body.get("method")
        raw: Any = body.get("hyperparameters") or {}
        if method is not None:
            if not isinstance(method, dict):
                raise bad_request("'method' must be an object.", param="method")
            method_type = method.get("type", "supervised")
            if method_type != "supervised":
                raise bad_request(
                    f"Fine-tuning method '{method_type}' is not supported for vision fine-tuning; use 'supervised'.",
                    param="method",
                )
            supervised = method.get("supervised") or {}
            if not isinstance(supervised, dict):
                raise bad_request("'method.supervised' must be an object.", param="method")
            raw = supervised.get("hyperparameters") or raw
        if not isinstance(raw, dict):
            raise bad_request("'hyperparameters' must be an object.", param="hyperparameters")
        return {
            "n_epochs": _int_or_auto(raw.get("n_epochs"), "n_epochs", 1, 50),
            "batch_size": _int_or_auto(raw.get("batch_size"), "batch_size", 1, 256),
            "learning_rate_multiplier": _int_or_auto(
                raw.get("learning_rate_multiplier"), "learning_rate_multiplier", 0.0001, 10, number=True
            ),
        }

    def _training_data(self, job: dict[str, Any]) -> tuple[Any, list[str], int]:
        """Features, labels and tokens of a job's own file plus (continued fine-tuning) its parent's data."""
        import numpy as np

        data = np.load(self.features_dir / f"{job['training_file']}.npz")
        features, labels, tokens = data["features"], [str(v) for v in data["labels"]], int(data["tokens"].sum())
        if job.get("parent_job"):
            parent = np.load(self.models_dir / job["parent_job"] / "data.npz")
            features = np.concatenate([parent["features"], features]) if len(parent["features"]) else features
            labels = [str(v) for v in parent["labels"]] + labels
            tokens += int(parent["tokens"])
        return features, labels, tokens

    def _train(self, job_id: str) -> None:
        import numpy as np

        job = self.store.get("job", job_id)
        if job is None:
            return
        folder = self.models_dir / job_id
        folder.mkdir(parents=True, exist_ok=True)
        try:
            features, labels, tokens = self._training_data(job)
            if len(labels) == 0:
                raise ValueError(
                    "No training example contains an image; the emulator fine-tunes image classifiers only."
                )
            if len(set(labels)) < 2:
                raise ValueError("The training data needs at least two different assistant answers (labels).")
            validation_features = validation_labels = None
            if job.get("validation_file"):
                validation = np.load(self.features_dir / f"{job['validation_file']}.npz")
                if len(validation["labels"]):
                    validation_features = validation["features"]
                    validation_labels = [str(v) for v in validation["labels"]]
            hyper = job["hyperparameters"]
            result = learners.train_classifier(
                features,
                labels,
                n_epochs=hyper["n_epochs"],
                batch_size=hyper["batch_size"],
                learning_rate_multiplier=hyper["learning_rate_multiplier"],
                seed=job["seed"],
                validation_features=validation_features,
                validation_labels=validation_labels,
                should_stop=lambda: self._closed
                or (self.store.get("job", job_id) or {"cancelled_at": 1}).get("cancelled_at") is not None,
            )
        except learners.TrainingStopped:
            return
        except (ValueError, OSError) as exc:
            self._update(
                "job",
                job_id,
                training={"error": {"code": "invalid_training_file", "message": str(exc)}, "failed_at": self.now()},
            )
            return
        for epoch, model in enumerate(result.epoch_models):
            with open(folder / f"epoch-{epoch}.pkl", "wb") as handle:
                pickle.dump(model, handle)
        np.savez(
            folder / "data.npz", features=features, labels=np.array(labels, dtype=str), tokens=np.array(tokens)
        )
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(RESULTS_COLUMNS)
        for row in result.rows:
            writer.writerow(["" if row[c] is None else (f"{row[c]:.5f}" if c != "step" else row[c]) for c in RESULTS_COLUMNS])
        steps_per_epoch = max(1, len(result.rows) // max(1, hyper["n_epochs"]))
        state_end = self._job_times(job)["end"]
        results_file = self._new_output_file("results.csv", "fine-tune-results", buffer.getvalue().encode(), state_end)
        epoch_rows = [result.rows[min(len(result.rows), (e + 1) * steps_per_epoch) - 1] for e in range(hyper["n_epochs"])]
        self._update(
            "job",
            job_id,
            training={
                "trained_tokens": tokens * hyper["n_epochs"],
                "results_file": results_file,
                "classes": result.classes,
                "epoch_rows": epoch_rows,
                "epoch_metrics": result.epoch_metrics,
                "finished": self.now(),
            },
        )

    def _job_times(self, job: dict[str, Any]) -> dict[str, float]:
        step = job["step_seconds"]
        start = job["created_at"]
        running = start + 3 * step
        return {
            "validating_files": start + step,
            "queued": start + 2 * step,
            "running": running,
            "end": running + job["running_steps"] * step,
            "failed": running + step,
        }

    def _job_state(self, job: dict[str, Any], now: float) -> dict[str, Any]:
        """status, finished_at and error of a job at ``now``, from its timestamps."""
        times = self._job_times(job)
        training = job.get("training") or {}
        if job.get("fail"):
            finish = times["failed"]
            error = dict(job["fail"])
        elif training.get("error"):
            finish = max(times["failed"], training.get("failed_at", times["failed"]))
            error = dict(training["error"])
        else:
            finish = times["end"] if training.get("results_file") else float("inf")
            error = None
        cancelled = job.get("cancelled_at")
        if cancelled is not None and cancelled < finish:
            return {"status": "cancelled", "finished_at": cancelled, "error": None}
        if finish != float("inf") and now >= finish:
            if error is not None:
                return {"status": "failed", "finished_at": finish, "error": error}
            return {"status": "succeeded", "finished_at": finish, "error": None}
        for status in ("running", "queued", "validating_files"):
            if now >= times[status]:
                return {"status": status, "finished_at": None, "error": None}
        return {"status": "pending", "finished_at": None, "error": None}

    def job_public(self, job: dict[str, Any]) -> dict[str, Any]:
        now = self.now()
        state = self._job_state(job, now)
        hyper = job["hyperparameters"]
        public: dict[str, Any] = {
            "object": "fine_tuning.job",
            "id": job["id"],
            "created_at": int(job["created_at"]),
            "model": job["model"],
            "training_file": job["training_file"],
            "hyperparameters": dict(hyper),
            "method": {"type": "supervised", "supervised": {"hyperparameters": dict(hyper)}},
            "status": state["status"],
            "result_files": [],
            "seed": job["seed"],
        }
        if job.get("validation_file"):
            public["validation_file"] = job["validation_file"]
        if job.get("suffix"):
            public["suffix"] = job["suffix"]
        if job.get("training_type"):
            public["trainingType"] = job["training_type"]
        if state["status"] == "succeeded":
            training = job["training"]
            public["fine_tuned_model"] = job["fine_tuned_model"]
            public["trained_tokens"] = training["trained_tokens"]
            public["result_files"] = [training["results_file"]]
        if state["finished_at"] is not None:
            public["finished_at"] = int(state["finished_at"])
        else:
            public["estimated_finish"] = int(self._job_times(job)["end"])
        if state["error"]:
            public["error"] = state["error"]
        return public

    def _job(self, job_id: str) -> dict[str, Any]:
        job = self.store.get("job", job_id)
        if job is None:
            raise not_found(f"Fine-tuning job {job_id} not found.")
        return job

    def get_job(self, job_id: str) -> dict[str, Any]:
        return self.job_public(self._job(job_id))

    @staticmethod
    def _page(items: list[dict[str, Any]], after: str | None, limit: int) -> dict[str, Any]:
        if after:
            ids = [item["id"] for item in items]
            items = items[ids.index(after) + 1 :] if after in ids else []
        return {"object": "list", "data": items[:limit], "has_more": len(items) > limit}

    def list_jobs(self, after: str | None, limit: int) -> dict[str, Any]:
        return self._page([self.job_public(job) for job in self.store.list("job")], after, limit)

    def delete_job(self, job_id: str) -> None:
        """Delete a finished job (its fine-tuned model stays deployable until its deployments go)."""
        job = self._job(job_id)
        status = self._job_state(job, self.now())["status"]
        if status not in JOB_TERMINAL:
            raise ApiError(
                400, "unexpectedEntityState", f"Job {job_id} has status '{status}'; cancel it before deleting it."
            )
        self.store.delete("job", job_id)

    def cancel_job(self, job_id: str) -> dict[str, Any]:
        job = self._job(job_id)
        status = self._job_state(job, self.now())["status"]
        if status in JOB_TERMINAL:
            raise ApiError(
                400,
                "unexpectedEntityState",
                f"Job {job_id} has status '{status}' and can no longer be cancelled.",
            )
        return self.job_public(self._update("job", job_id, cancelled_at=self.now()))

    def _checkpoints(self, job: dict[str, Any]) -> list[dict[str, Any]]:
        """Every epoch's checkpoint (oldest first) with the time it appears; empty until trained."""
        training = job.get("training") or {}
        if not training.get("epoch_rows"):
            return []
        times = self._job_times(job)
        n_epochs = job["hyperparameters"]["n_epochs"]
        checkpoints = []
        for epoch, row in enumerate(training["epoch_rows"]):
            appears = times["running"] + (times["end"] - times["running"]) * (epoch + 1) / n_epochs
            checkpoints.append(
                {
                    "id": "ftchkpt-" + _hex(f"{job['id']}:checkpoint:{epoch}"),
                    "epoch": epoch,
                    "step": int(row["step"]),
                    "appears": appears,
                    "model": f"{job['fine_tuned_model']}:ckpt-step-{int(row['step'])}",
                    "row": row,
                }
            )
        return checkpoints

    def list_checkpoints(self, job_id: str, after: str | None, limit: int) -> dict[str, Any]:
        job = self._job(job_id)
        now = self.now()
        state = self._job_state(job, now)
        horizon = now if state["status"] != "cancelled" else min(now, job["cancelled_at"])
        visible = [c for c in self._checkpoints(job) if c["appears"] <= horizon][-3:]
        data = [
            {
                "object": "fine_tuning.job.checkpoint",
                "id": c["id"],
                "created_at": int(c["appears"]),
                "fine_tuned_model_checkpoint": c["model"],
                "fine_tuning_job_id": job["id"],
                "step_number": c["step"],
                "metrics": {
                    key.replace("validation_", "valid_"): float(value)
                    for key, value in c["row"].items()
                    if value is not None
                },
            }
            for c in reversed(visible)
        ]
        return self._page(data, after, limit)

    def _events(self, job: dict[str, Any], now: float) -> list[tuple[float, dict[str, Any]]]:
        times = self._job_times(job)
        state = self._job_state(job, now)
        entries: list[tuple[float, str, str, str, dict[str, Any] | None]] = [
            (job["created_at"], "info", "message", "Job enqueued. Waiting for jobs ahead to complete.", None),
            (times["validating_files"], "info", "message", f"Validating training file: {job['training_file']}", None),
            (times["queued"], "info", "message", "Training file validated. Job queued.", None),
            (times["running"], "info", "message", "Job started.", None),
        ]
        training = job.get("training") or {}
        for checkpoint in self._checkpoints(job):
            row = checkpoint["row"]
            data = {k: v for k, v in row.items() if v is not None}
            entries.append(
                (
                    checkpoint["appears"],
                    "info",
                    "metrics",
                    f"Step {checkpoint['step']}: training loss={row['train_loss']:.4f}",
                    data,
                )
            )
            entries.append(
                (checkpoint["appears"], "info", "message", f"Checkpoint created at step {checkpoint['step']}", None)
            )
        finished = state["finished_at"]
        if state["status"] == "succeeded":
            entries.append((finished, "info", "message", f"Training tokens billed: {training['trained_tokens']}", None))
            entries.append((finished, "info", "message", "Model Evaluation Passed.", None))
            entries.append((finished, "info", "message", "The job has successfully completed", None))
        elif state["status"] == "failed":
            entries.append((finished, "error", "message", f"The job failed: {state['error']['message']}", None))
        elif state["status"] == "cancelled":
            entries.append((finished, "info", "message", "The job was cancelled.", None))
            entries = [e for e in entries if e[0] <= finished]
        events = []
        # A stable sort: events at the same instant keep the order they were written in.
        for number, (when, level, kind, message, data) in enumerate(sorted(entries, key=lambda e: e[0])):
            event = {
                "object": "fine_tuning.job.event",
                "id": "ftevent-" + _hex(f"{job['id']}:event:{number}:{message}"),
                "created_at": int(when),
                "level": level,
                "message": message,
                "type": kind,
            }
            if data is not None:
                event["data"] = data
            events.append((when, event))
        return events

    def list_events(self, job_id: str, after: str | None, limit: int) -> dict[str, Any]:
        job = self._job(job_id)
        now = self.now()
        visible = [event for when, event in self._events(job, now) if when <= now]
        return self._page(list(reversed(visible)), after, limit)

    # ------------------------------------------------------------------------------------------
    # models behind deployments
    # ------------------------------------------------------------------------------------------
    def _resolve_model(self, name: str) -> dict[str, Any] | None:
        """What a deployment of ``name`` would serve: a base model, or a job's model at an epoch."""
        if name in BASE_MODELS:
            return {"kind": "base", "name": name}
        found = self._succeeded_job_for_model(name)
        if found is None:
            return None
        job, epoch = found
        return {"kind": "fine_tuned", "name": name, "job": job["id"], "epoch": epoch}

    def _load_model(self, job_id: str, epoch: int) -> Any:
        key = (job_id, epoch)
        with self._model_cache_lock:
            if key in self._model_cache:
                self._model_cache.move_to_end(key)
                return self._model_cache[key]
        with open(self.models_dir / job_id / f"epoch-{epoch}.pkl", "rb") as handle:
            model = pickle.load(handle)
        with self._model_cache_lock:
            self._model_cache[key] = model
            while len(self._model_cache) > 16:
                self._model_cache.popitem(last=False)
        return model

    def _base_centroids(self) -> dict[str, Any]:
        import numpy as np

        samples = self.store.list("base_sample")
        version = len(samples)
        cached = self._centroids
        if cached is not None and cached[0] == version:
            return cached[1]
        grouped: dict[str, list[list[float]]] = {}
        for document in samples:
            for label, vectors in document["samples"].items():
                grouped.setdefault(label, []).extend(vectors)
        centroids = {label: np.mean(np.array(vectors, dtype=np.float32), axis=0) for label, vectors in grouped.items()}
        self._centroids = (version, centroids)
        return centroids

    # ------------------------------------------------------------------------------------------
    # chat completions
    # ------------------------------------------------------------------------------------------
    def _serving_deployment(self, name: str) -> dict[str, Any]:
        deployment = self.store.get("deployment", name)
        if deployment is None or self._deployment_state(deployment)["state"] != "Succeeded":
            raise ApiError(404, "DeploymentNotFound", DEPLOYMENT_NOT_FOUND)
        return deployment

    def chat_completion(self, deployment_name: str, body: Any) -> dict[str, Any]:
        """Answer a chat completion on a real-time deployment."""
        deployment = self._serving_deployment(deployment_name)
        if deployment["sku"]["name"] in BATCH_SKUS:
            raise ApiError(
                400,
                "OperationNotSupported",
                f"The chatCompletion operation does not work with the deployment '{deployment_name}' of type "
                f"{deployment['sku']['name']}: it only serves the Batch API.",
            )
        return self._answer(deployment, body, nonce=None)

    def _answer(self, deployment: dict[str, Any], body: Any, nonce: int | None) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise ApiError(400, "BadRequest", "The request body must be a JSON object.")
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages or not all(isinstance(m, dict) for m in messages):
            raise ApiError(400, "BadRequest", "'messages' must be a non-empty array of message objects.", param="messages")
        temperature = body.get("temperature", 1.0)
        if temperature is None:
            temperature = 1.0
        if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not 0 <= temperature <= 2:
            raise ApiError(400, "BadRequest", "'temperature' must be a number between 0 and 2.", param="temperature")
        seed = body.get("seed")
        if nonce is None:
            nonce = seed if isinstance(seed, int) and not isinstance(seed, bool) else int.from_bytes(os.urandom(8), "big")
        image_raw: bytes | None = None
        for message in messages:
            if message.get("role") == "user":
                for part in datafiles.message_images(message.get("content")):
                    try:
                        image_raw = learners.decode_image_url(part.get("url"))
                    except learners.ImageError as exc:
                        raise ApiError(400, "BadRequest", f"Invalid image: {exc}.", param="messages") from None
        image = None
        if image_raw is not None:
            try:
                image = learners.open_image(image_raw, strict=False)
            except learners.ImageError as exc:
                raise ApiError(400, "BadRequest", f"Invalid image data: {exc}.", param="messages") from None
        model = deployment["model_ref"]
        if model["kind"] == "fine_tuned":
            if image is None:
                answer = "Please send an image; I answer with the category of the image."
            else:
                classifier = self._load_model(model["job"], model["epoch"])
                answer = learners.predict_fine_tuned(
                    classifier, learners.image_features(image), temperature=float(temperature), nonce=nonce
                )
        else:
            system_text = "\n".join(
                datafiles.message_text(m.get("content")) for m in messages if m.get("role") in ("system", "developer")
            )
            answer = learners.base_answer(
                self._base_centroids(),
                learners.parse_categories(system_text),
                learners.thumbnail_features(image) if image is not None else None,
                digest=learners.image_digest(image_raw or system_text.encode()),
                seed=self.config.seed,
                temperature=float(temperature),
                nonce=nonce,
            )
        text_tokens, images = datafiles.count_message_tokens(messages)
        prompt_tokens = text_tokens + datafiles.IMAGE_TOKENS_LOW_DETAIL * images
        completion_tokens = max(1, datafiles.count_text_tokens(answer))
        return {
            "id": "chatcmpl-" + uuid.uuid4().hex[:29],
            "object": "chat.completion",
            "created": int(self.now()),
            "model": deployment["model"]["name"],
            "system_fingerprint": "fp_emulator",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": answer, "refusal": None},
                    "finish_reason": "stop",
                    "logprobs": None,
                }
            ],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
                "prompt_tokens_details": {"cached_tokens": 0, "image_tokens": datafiles.IMAGE_TOKENS_LOW_DETAIL * images},
            },
        }

    # ------------------------------------------------------------------------------------------
    # batches
    # ------------------------------------------------------------------------------------------
    def create_batch(self, body: Any) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise bad_request("The request body must be a JSON object.")
        endpoint = body.get("endpoint")
        if endpoint not in ("/chat/completions", "/v1/chat/completions"):
            raise bad_request("'endpoint' must be '/chat/completions'.", param="endpoint")
        if body.get("completion_window") != "24h":
            raise bad_request("'completion_window' must be '24h'.", param="completion_window")
        metadata = body.get("metadata")
        if metadata is not None and (
            not isinstance(metadata, dict)
            or len(metadata) > 16
            or not all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items())
        ):
            raise bad_request("'metadata' must be an object of at most 16 string values.", param="metadata")
        record = self._ready_file(body.get("input_file_id"), "input_file_id", "batch")
        now = self.now()
        batch = {
            "id": "batch_" + str(uuid.uuid4()),
            "created_at": now,
            "endpoint": endpoint,
            "input_file_id": record["id"],
            "completion_window": "24h",
            "metadata": metadata,
            "step_seconds": self.config.step_seconds,
            "expire": self.faults.take_batch_expiry(),
            "cancelled_at": None,
            "validation": None,
            "outcome_done": False,
        }
        batch["validation"] = self._validate_batch_input(record["id"], endpoint)
        self.store.put("batch", batch)
        return self.batch_public(batch)

    def _validate_batch_input(self, file_id: str, endpoint: str) -> dict[str, Any]:
        raw = (self.blob_dir / file_id).read_bytes()
        try:
            requests, model = datafiles.parse_batch_input(raw, endpoint=endpoint)
        except datafiles.FileValidationError as exc:
            line = re.match(r"Line (\d+)", str(exc))
            error = {"code": "invalid_request", "message": str(exc)}
            if line:
                error["line"] = int(line.group(1))
            return {"ok": False, "error": error}
        deployment = self.store.get("deployment", model)
        problem = None
        if deployment is None:
            problem = f"The model deployment '{model}' does not exist."
        elif deployment["sku"]["name"] not in BATCH_SKUS:
            problem = (
                f"The model deployment '{model}' is of type {deployment['sku']['name']}; a batch needs a GlobalBatch "
                "deployment of a base model."
            )
        elif deployment["model_ref"]["kind"] != "base":
            problem = f"The model deployment '{model}' serves a fine-tuned model; fine-tuned models cannot run in batch."
        if problem:
            return {"ok": False, "error": {"code": "model_not_found", "message": problem, "param": "body.model"}}
        return {"ok": True, "total": len(requests), "model": model}

    def _batch_status(self, batch: dict[str, Any], now: float) -> tuple[str, dict[str, float]]:
        """(status, the timestamps reached) of a batch at ``now``."""
        step = batch["step_seconds"]
        start = batch["created_at"]
        reached: dict[str, float] = {}
        valid = batch["validation"]["ok"]
        plan: list[tuple[str, float]] = [("in_progress", start + step)] if valid else [("failed", start + step)]
        if valid:
            if batch.get("expire"):
                plan.append(("expired", start + 2 * step))
            else:
                plan += [("finalizing", start + 2 * step), ("completed", start + 3 * step)]
        cancelled = batch.get("cancelled_at")
        status = "validating"
        for name, when in plan:
            if cancelled is not None and when > cancelled:
                break
            if now >= when:
                status = name
                reached[f"{name}_at"] = when
        if cancelled is not None and status not in BATCH_TERMINAL:
            reached["cancelling_at"] = cancelled
            status = "cancelling"
            if now >= cancelled + step:
                status = "cancelled"
                reached["cancelled_at"] = cancelled + step
        return status, reached

    def _materialize_batch(self, batch_id: str) -> None:
        """Run a batch's requests once and write its output/error files (shuffled, as the service does)."""
        import numpy as np

        with self.store.lock:
            batch = self.store.get("batch", batch_id)
            if batch is None or batch.get("outcome_done"):
                return
            status, reached = self._batch_status(batch, self.now())
            raw = (self.blob_dir / batch["input_file_id"]).read_bytes()
            requests, model = datafiles.parse_batch_input(raw, endpoint=batch["endpoint"])
            outputs: list[dict[str, Any]] = []
            errors: list[dict[str, Any]] = []
            deployment = self.store.get("deployment", model)
            for number, request in enumerate(requests):
                line_id = "batch_req_" + _hex(f"{batch_id}:{number}")
                if status == "expired":
                    errors.append(
                        {
                            "id": line_id,
                            "custom_id": request.custom_id,
                            "response": None,
                            "error": {
                                "code": "batch_expired",
                                "message": "This request could not be executed before the completion window expired.",
                            },
                        }
                    )
                    continue
                try:
                    if deployment is None:
                        raise ApiError(404, "DeploymentNotFound", DEPLOYMENT_NOT_FOUND)
                    body = self._answer(deployment, request.body, nonce=learners.image_digest(line_id.encode()))
                    outputs.append(
                        {
                            "id": line_id,
                            "custom_id": request.custom_id,
                            "response": {"status_code": 200, "request_id": uuid.uuid4().hex, "body": body},
                            "error": None,
                        }
                    )
                except ApiError as exc:
                    errors.append(
                        {
                            "id": line_id,
                            "custom_id": request.custom_id,
                            "response": {"status_code": exc.status, "request_id": uuid.uuid4().hex, "body": exc.body()},
                            "error": None,
                        }
                    )
            rng = np.random.default_rng(int(_hex(batch_id)[:8], 16))
            outputs = [outputs[i] for i in rng.permutation(len(outputs))]
            errors = [errors[i] for i in rng.permutation(len(errors))]
            visible_at = reached.get("completed_at", reached.get("expired_at", self.now()))
            if status == "finalizing":
                visible_at = batch["created_at"] + 3 * batch["step_seconds"]
            output_id = error_id = None
            if outputs:
                output_id = self._new_output_file(
                    f"{batch_id}_output.jsonl", "batch_output", _jsonl(outputs), visible_at
                )
            if errors:
                error_id = self._new_output_file(f"{batch_id}_error.jsonl", "batch_output", _jsonl(errors), visible_at)
            batch.update(
                outcome_done=True,
                output_file_id=output_id,
                error_file_id=error_id,
                counts={"total": len(requests), "completed": len(outputs), "failed": len(errors)},
            )
            self.store.put("batch", batch)

    def batch_public(self, batch: dict[str, Any]) -> dict[str, Any]:
        now = self.now()
        status, reached = self._batch_status(batch, now)
        if status in ("completed", "expired") and not batch.get("outcome_done"):
            self._materialize_batch(batch["id"])
            batch = self.store.get("batch", batch["id"]) or batch
        public: dict[str, Any] = {
            "id": batch["id"],
            "object": "batch",
            "endpoint": batch["endpoint"],
            "input_file_id": batch["input_file_id"],
            "completion_window": batch["completion_window"],
            "status": status,
            "created_at": int(batch["created_at"]),
            "expires_at": int(batch["created_at"] + BATCH_WINDOW_SECONDS),
        }
        for key, when in reached.items():
            public[key] = int(when)
        total = batch["validation"].get("total", 0) if status != "validating" else 0
        counts = {"total": total, "completed": 0, "failed": 0}
        if status in ("completed", "expired"):
            counts = dict(batch["counts"])
            if batch.get("output_file_id"):
                public["output_file_id"] = batch["output_file_id"]
            if batch.get("error_file_id"):
                public["error_file_id"] = batch["error_file_id"]
        public["request_counts"] = counts
        if status == "failed":
            public["errors"] = {"object": "list", "data": [batch["validation"]["error"]]}
        if batch.get("metadata"):
            public["metadata"] = batch["metadata"]
        return public

    def _batch(self, batch_id: str) -> dict[str, Any]:
        batch = self.store.get("batch", batch_id)
        if batch is None:
            raise not_found(f"Batch {batch_id} not found.")
        return batch

    def get_batch(self, batch_id: str) -> dict[str, Any]:
        return self.batch_public(self._batch(batch_id))

    def list_batches(self, after: str | None, limit: int) -> dict[str, Any]:
        page = self._page([self.batch_public(b) for b in self.store.list("batch")], after, limit)
        if page["data"]:
            page["first_id"] = page["data"][0]["id"]
            page["last_id"] = page["data"][-1]["id"]
        return page

    def cancel_batch(self, batch_id: str) -> dict[str, Any]:
        batch = self._batch(batch_id)
        status, _ = self._batch_status(batch, self.now())
        if status in BATCH_TERMINAL or status == "finalizing":
            raise ApiError(
                400, "unexpectedEntityState", f"Batch {batch_id} has status '{status}' and cannot be cancelled."
            )
        if status == "cancelling":
            return self.batch_public(batch)
        return self.batch_public(self._update("batch", batch_id, cancelled_at=self.now()))

    # ------------------------------------------------------------------------------------------
    # deployments (control plane)
    # ------------------------------------------------------------------------------------------
    def _ensure_default_deployments(self) -> None:
        for name, sku in ((BASE_DEPLOYMENT, "GlobalStandard"), (BATCH_DEPLOYMENT, "GlobalBatch")):
            if self.store.get("deployment", name) is None:
                now = self.now()
                self.store.put(
                    "deployment",
                    {
                        "id": name,
                        "created_at": now,
                        "modified_at": now,
                        "sku": {"name": sku, "capacity": 100 if sku == "GlobalBatch" else 50},
                        "model": {"format": "OpenAI", "name": BASE_MODEL, "version": "2025-04-14"},
                        "model_ref": {"kind": "base", "name": BASE_MODEL},
                        "ready_at": now,
                        "fail": None,
                    },
                )

    def _deployment_state(self, deployment: dict[str, Any]) -> dict[str, Any]:
        if self.now() < deployment["ready_at"]:
            return {"state": "Creating" if deployment["created_at"] == deployment["modified_at"] else "Updating"}
        if deployment.get("fail"):
            return {"state": "Failed", "error": deployment["fail"]}
        return {"state": "Succeeded"}

    def deployment_resource(self, deployment: dict[str, Any]) -> dict[str, Any]:
        state = self._deployment_state(deployment)
        name = deployment["id"]
        return {
            "id": f"{arm_account_path()}/deployments/{name}",
            "name": name,
            "type": "Microsoft.CognitiveServices/accounts/deployments",
            "sku": dict(deployment["sku"]),
            "properties": {
                "model": dict(deployment["model"]),
                "provisioningState": state["state"],
                "capabilities": {"chatCompletion": "true"},
                "versionUpgradeOption": "NoAutoUpgrade",
                "raiPolicyName": "Microsoft.DefaultV2",
            },
            "systemData": {
                "createdAt": _iso(deployment["created_at"]),
                "createdByType": "User",
                "lastModifiedAt": _iso(deployment["modified_at"]),
                "lastModifiedByType": "User",
            },
            "etag": f"\"{_hex(name + str(deployment['modified_at']))}\"",
        }

    def put_deployment(self, name: str, body: Any) -> tuple[int, dict[str, Any], str]:
        """Create or update a deployment. Returns (HTTP status, resource, operation id)."""
        if not re.match(r"^[A-Za-z0-9][A-Za-z0-9._-]{1,63}$", name):
            raise ApiError(400, "InvalidResourceName", f"The deployment name '{name}' is invalid.")
        if not isinstance(body, dict):
            raise ApiError(400, "InvalidRequestContent", "The request content is not a JSON object.")
        sku = body.get("sku") or {}
        model = ((body.get("properties") or {}).get("model")) or {}
        if not isinstance(sku, dict) or sku.get("name") not in KNOWN_SKUS:
            raise ApiError(
                400, "InvalidSkuName", f"The SKU '{sku.get('name') if isinstance(sku, dict) else sku}' is not valid."
            )
        capacity = sku.get("capacity", 1)
        if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity < 1:
            raise ApiError(400, "InvalidCapacity", "sku.capacity must be a positive integer.")
        model_name = model.get("name") if isinstance(model, dict) else None
        if not isinstance(model_name, str) or not model_name:
            raise ApiError(400, "InvalidResourceProperties", "properties.model.name is required.")
        if model.get("format", "OpenAI") != "OpenAI":
            raise ApiError(400, "InvalidResourceProperties", "properties.model.format must be 'OpenAI'.")
        reference = self._resolve_model(model_name)
        if reference is None:
            raise ApiError(
                400,
                "DeploymentModelNotSupported",
                f"The model '{model_name}' is not a base model of this resource nor a fine-tuned model or "
                "checkpoint of a succeeded job.",
            )
        if reference["kind"] == "fine_tuned" and sku["name"] not in FINE_TUNED_SKUS:
            raise ApiError(
                400,
                "InvalidSkuName",
                f"A fine-tuned model can only be deployed with the SKU Standard, GlobalStandard or DeveloperTier, "
                f"not {sku['name']}.",
            )
        with self.store.lock:
            existing = self.store.get("deployment", name)
            if existing is not None and existing["model"]["name"] != model_name:
                raise ApiError(
                    400,
                    "DeploymentModelNotUpdatable",
                    f"The model of deployment '{name}' is '{existing['model']['name']}' and cannot be changed to "
                    f"'{model_name}'. Create a new deployment for the new model.",
                )
            if reference["kind"] == "fine_tuned" and existing is None:
                fine_tuned = [d for d in self.store.list("deployment") if d["model_ref"]["kind"] == "fine_tuned"]
                if len(fine_tuned) >= self.config.max_fine_tuned_deployments:
                    raise ApiError(
                        400,
                        "QuotaExceeded",
                        f"This resource already has {len(fine_tuned)} fine-tuned model deployments; the limit is "
                        f"{self.config.max_fine_tuned_deployments}. Delete one before deploying another.",
                    )
            failure_phase = self.faults.take_deployment_failure()
            dependent_failure = {
                "code": "BadRequestForDependentService",
                "message": f"The dependent service is not ready to serve the model '{model_name}' yet. "
                "Please retry the deployment in a few minutes.",
            }
            if failure_phase == "initial":
                raise ApiError(400, dependent_failure["code"], dependent_failure["message"])
            now = self.now()
            deployment = {
                "id": name,
                "created_at": existing["created_at"] if existing else now,
                "modified_at": now,
                "sku": {"name": sku["name"], "capacity": capacity},
                "model": {"format": "OpenAI", "name": model_name, "version": str(model.get("version") or "1")},
                "model_ref": reference,
                "ready_at": now + self.config.deployment_seconds,
                "fail": dependent_failure if failure_phase == "provisioning" else None,
            }
            self.store.put("deployment", deployment)
            operation_id = uuid.uuid4().hex
            self.store.put(
                "operation", {"id": operation_id, "created_at": now, "deployment": name, "modified_at": now}
            )
        return (200 if existing else 201), self.deployment_resource(deployment), operation_id

    def operation_status(self, operation_id: str) -> dict[str, Any]:
        operation = self.store.get("operation", operation_id)
        if operation is None:
            raise ApiError(404, "ResourceNotFound", f"The operation '{operation_id}' was not found.")
        deployment = self.store.get("deployment", operation["deployment"])
        body: dict[str, Any] = {"id": operation_id, "name": operation_id, "startTime": _iso(operation["created_at"])}
        if deployment is None or deployment["modified_at"] != operation["modified_at"]:
            body["status"] = "Canceled" if deployment is None else "Succeeded"
            return body
        state = self._deployment_state(deployment)
        body["status"] = state["state"]
        if state["state"] == "Failed":
            body["error"] = dict(state["error"])
        return body

    def get_deployment(self, name: str) -> dict[str, Any]:
        deployment = self.store.get("deployment", name)
        if deployment is None:
            raise ApiError(
                404,
                "DeploymentNotFound",
                f"Deployment '{name}' not found under account '{ACCOUNT}'.",
            )
        return self.deployment_resource(deployment)

    def list_deployments(self) -> dict[str, Any]:
        deployments = sorted(self.store.list("deployment"), key=lambda d: d["created_at"])
        return {"value": [self.deployment_resource(d) for d in deployments]}

    def delete_deployment(self, name: str) -> bool:
        """Delete a deployment; False when there was none."""
        with self.store.lock:
            if self.store.get("deployment", name) is None:
                return False
            self.store.delete("deployment", name)
            return True


def arm_account_path() -> str:
    return (
        f"/subscriptions/{SUBSCRIPTION_ID}/resourceGroups/{RESOURCE_GROUP}"
        f"/providers/Microsoft.CognitiveServices/accounts/{ACCOUNT}"
    )


def _jsonl(rows: list[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(row) + "\n" for row in rows).encode()
