"""Fine-tuning jobs: the create request's validation, the job's status clock, list/get/cancel/delete."""

from __future__ import annotations

import re
import uuid
from typing import Any

from local.emulator import learners
from local.emulator.constants import BASE_MODELS
from local.emulator.core import EmulatorCore, hex_id
from local.emulator.errors import ApiError, bad_request, not_found, quota_exceeded

JOB_TERMINAL = ("succeeded", "failed", "cancelled")
TRAINING_TYPES = ("standard", "globalstandard", "developer")
SUFFIX_RE = re.compile(r"^[A-Za-z0-9_-]{1,18}$")


def _int_or_auto(value: Any, name: str, low: float, high: float, *, number: bool = False) -> Any:
    if value is None or value == "auto":
        return "auto"
    valid_type = (int, float) if number else (int,)
    if isinstance(value, bool) or not isinstance(value, valid_type) or not (low <= value <= high):
        kind = "a number" if number else "an integer"
        raise bad_request(f"hyperparameters.{name} must be 'auto' or {kind} between {low} and {high}.", param=name)
    return value


class FineTuningMixin(EmulatorCore):
    """The fine-tuning jobs API (training itself, checkpoints and events: ``training``)."""

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
                raise quota_exceeded(
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
            model_hex = hex_id(job_id + ":model")
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
