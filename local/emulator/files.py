"""Files and uploads (large files in parts): storing, validating and serving what the pipeline uploads."""

from __future__ import annotations

import uuid
from typing import Any

from local.emulator import datafiles, learners
from local.emulator.core import EmulatorCore
from local.emulator.errors import ApiError, bad_request, not_found, quota_exceeded

UPLOAD_PURPOSES = ("fine-tune", "batch", "assistants")
MAX_UPLOAD_BYTES = 8 * 1024**3  # the Uploads API's limit
MAX_UPLOAD_PART_BYTES = 64 * 1024**2


class FilesMixin(EmulatorCore):
    """The Files API and the Uploads API."""

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
                    raise quota_exceeded(
                        f"Quota exceeded: this resource already has {len(existing)} fine-tuning files and the limit is "
                        f"{self.config.max_files}. Delete files you no longer need and try again.",
                    )
                used = sum(f["bytes"] for f in existing)
                if used + len(content) > self.config.max_total_file_bytes:
                    raise quota_exceeded(
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
        for label, thumbnail in zip(labels, thumbnails, strict=True):
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

    # -- uploads (large files in parts) --
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

