"""Batches: validating the input file, the batch's status clock, and running its lines once."""

from __future__ import annotations

import re
import uuid
from typing import Any

from local.emulator import datafiles, learners
from local.emulator.chat import BATCH_SKUS, DEPLOYMENT_NOT_FOUND
from local.emulator.core import EmulatorCore, hex_id, jsonl
from local.emulator.errors import ApiError, bad_request, not_found
from local.emulator.specs import load_catalog

BATCH_TERMINAL = ("completed", "failed", "expired", "cancelled")
BATCH_WINDOW_SECONDS = 24 * 3600


class BatchesMixin(EmulatorCore):
    """The Batch API."""

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
        # Validated before the clock starts: the batch's statuses are timed from created_at.
        validation = self._validate_batch_input(record["id"], endpoint)
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
            "validation": validation,
            "outcome_done": False,
        }
        self.store.put("batch", batch)
        return self.batch_public(batch)

    def _validate_batch_input(self, file_id: str, endpoint: str) -> dict[str, Any]:
        raw = (self.blob_dir / file_id).read_bytes()
        try:
            requests, model = datafiles.parse_batch_input(raw, endpoint=endpoint)
        except datafiles.FileValidationError as exc:
            line = re.match(r"Line (\d+)", str(exc))
            error: dict[str, Any] = {"code": "invalid_request", "message": str(exc)}
            if line:
                error["line"] = int(line.group(1))
            return {"ok": False, "error": error}
        problem = _line_body_problem(requests, self.config.specs_dir)
        if problem is not None:
            return {"ok": False, "error": problem}
        if len(requests) > self.config.max_batch_requests:
            # The per-file request limit (Learn "Azure OpenAI quotas and limits": 100,000 requests per file).
            message = (
                f"The input file has {len(requests)} requests; a batch file may hold at most "
                f"{self.config.max_batch_requests}."
            )
            return {"ok": False, "error": {"code": "too_many_requests_in_file", "message": message}}
        deployment = self.store.get("deployment", model)
        deployment_problem = None
        if deployment is None:
            deployment_problem = f"The model deployment '{model}' does not exist."
        elif deployment["sku"]["name"] not in BATCH_SKUS:
            deployment_problem = (
                f"The model deployment '{model}' is of type {deployment['sku']['name']}; a batch needs a GlobalBatch "
                "deployment of a base model."
            )
        elif deployment["model_ref"]["kind"] != "base":
            deployment_problem = (
                f"The model deployment '{model}' serves a fine-tuned model; fine-tuned models cannot run in batch."
            )
        if deployment_problem:
            return {
                "ok": False,
                "error": {"code": "model_not_found", "message": deployment_problem, "param": "body.model"},
            }
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
                line_id = "batch_req_" + hex_id(f"{batch_id}:{number}")
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
            rng = np.random.default_rng(int(hex_id(batch_id)[:8], 16))
            outputs = [outputs[i] for i in rng.permutation(len(outputs))]
            errors = [errors[i] for i in rng.permutation(len(errors))]
            visible_at = reached.get("completed_at", reached.get("expired_at", self.now()))
            if status == "finalizing":
                visible_at = batch["created_at"] + 3 * batch["step_seconds"]
            output_id = error_id = None
            if outputs:
                output_id = self._new_output_file(
                    f"{batch_id}_output.jsonl", "batch_output", jsonl(outputs), visible_at
                )
            if errors:
                error_id = self._new_output_file(f"{batch_id}_error.jsonl", "batch_output", jsonl(errors), visible_at)
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


def _line_body_problem(requests: list[datafiles.BatchRequest], specs_dir: Any) -> dict[str, Any] | None:
    """The first line whose body is not a chat completions request as OpenAI's spec declares it
    (``CreateChatCompletionRequest``; Learn's batch how-to: each line's body is the chat completions
    request), as a batch error naming the line and the field; None when every line is declared."""
    catalog = load_catalog(specs_dir)
    if catalog is None:
        return None
    operation = catalog.chat_operation()
    for request in requests:
        problems = operation.check(request.body)
        if problems:
            return {
                "code": "invalid_request",
                "message": f"Line {request.line}: body: {'; '.join(problems)} ({operation.source}).",
                "line": request.line,
            }
    return None
