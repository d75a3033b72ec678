"""Upload training / batch files to Azure OpenAI, idempotently.

``upload_file`` looks before it creates: a file with the same filename, size and purpose that is not in
``error`` is reused, so replaying a trigger (or a crash between the upload and saving its id) never
leaves a second copy counting against the resource's 50-file / 1 GB quota. Files up to 512 MB go through
the Files API; larger ones through the Uploads API in parts of at most 64 MB.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, BinaryIO, Literal

from shared.aoai.errors import AoaiError, describe_openai_error

if TYPE_CHECKING:
    from openai.types import FileObject

    from shared.aoai.clients import AzureOpenAIClient

FILES_API_MAX_BYTES = 512 * 1024 * 1024
UPLOAD_PART_MAX_BYTES = 64 * 1024 * 1024
UPLOADS_API_MAX_BYTES = 8 * 1024 * 1024 * 1024
UPLOAD_TIMEOUT_SECONDS = 600.0
JSONL_MIME_TYPE = "application/jsonl"
# Streams that cannot seek are copied to a spooled temp file first: the SDK rewinds the body on retries.
_SPOOL_IN_MEMORY_BYTES = 32 * 1024 * 1024

FilePurpose = Literal["fine-tune", "batch"]
# Azure's file statuses (uploaded, pending, running, processed, error, deleting, deleted) folded to three.
FileStatus = Literal["pending", "processed", "error"]


class FileUploadError(AoaiError):
    """The file could not be uploaded (the message carries the service's own words)."""


@dataclass(frozen=True)
class FileState:
    """A file's processing state. ``status`` is ``pending`` until Azure says ``processed`` or ``error``;
    ``raw_status`` is what the service said; ``error`` its message when ``status == "error"``."""

    id: str
    status: FileStatus
    raw_status: str
    error: str | None = None
    filename: str | None = None
    bytes: int | None = None
    purpose: str | None = None

    @property
    def processed(self) -> bool:
        return self.status == "processed"


def _fold_status(raw: str | None) -> FileStatus:
    if raw == "processed":
        return "processed"
    if raw in ("error", "deleting", "deleted"):
        return "error"
    return "pending"  # uploaded, pending, running and anything new: not ready yet


def _state_of(file: FileObject) -> FileState:
    # Azure answers statuses the SDK's Literal does not list (pending, running, deleting, ...), and its
    # error files carry an ``error`` object the SDK model keeps as an extra field.
    raw = str(file.status or "pending")
    status = _fold_status(raw)
    error = None
    if status == "error":
        details = file.status_details or (file.model_extra or {}).get("error")
        error = str(details) if details else f"file {file.id} is in state {raw!r}"
    return FileState(
        id=file.id,
        status=status,
        raw_status=raw,
        error=error,
        filename=file.filename,
        bytes=file.bytes,
        purpose=file.purpose,
    )


def list_files(client: AzureOpenAIClient, *, purpose: FilePurpose | None = None) -> list[FileObject]:
    """Every file on the resource (optionally of one purpose), following pages."""
    try:
        page = client.files.list(purpose=purpose) if purpose else client.files.list()
        files = list(page)
    except Exception as exc:  # noqa: BLE001 - re-raised with the service's message
        raise AoaiError(f"could not list files: {describe_openai_error(exc)}") from exc
    return [f for f in files if purpose is None or f.purpose == purpose]


def find_file(client: AzureOpenAIClient, *, name: str, size: int, purpose: FilePurpose) -> FileState | None:
    """The oldest usable (not ``error``) file with this exact filename, size in bytes and purpose."""
    matches = [
        f
        for f in list_files(client, purpose=purpose)
        if f.filename == name and f.bytes == size and _fold_status(f.status) != "error"
    ]
    if not matches:
        return None
    oldest = min(matches, key=lambda f: (f.created_at or 0, f.id))
    return _state_of(oldest)


def _seekable(stream: IO[bytes]) -> IO[bytes]:
    try:
        if stream.seekable():
            return stream
    except (AttributeError, ValueError):
        pass
    spooled = tempfile.SpooledTemporaryFile(max_size=_SPOOL_IN_MEMORY_BYTES)
    shutil.copyfileobj(stream, spooled, length=1024 * 1024)
    spooled.seek(0)
    return spooled


def _read_parts(stream: IO[bytes], part_size: int) -> Iterator[bytes]:
    while True:
        chunk = stream.read(part_size)
        if not chunk:
            return
        # A raw stream may return short reads: fill the part up to part_size.
        while len(chunk) < part_size:
            more = stream.read(part_size - len(chunk))
            if not more:
                break
            chunk += more
        yield chunk


def _upload_with_files_api(client: AzureOpenAIClient, name: str, stream: IO[bytes], purpose: FilePurpose) -> str:
    file = client.files.create(
        file=(name, _seekable(stream), JSONL_MIME_TYPE), purpose=purpose, timeout=UPLOAD_TIMEOUT_SECONDS
    )
    return str(file.id)


def _upload_with_uploads_api(
    client: AzureOpenAIClient, name: str, size: int, stream: IO[bytes], purpose: FilePurpose
) -> str:
    upload = client.uploads.create(bytes=size, filename=name, mime_type=JSONL_MIME_TYPE, purpose=purpose)
    part_ids: list[str] = []
    sent = 0
    try:
        for chunk in _read_parts(stream, UPLOAD_PART_MAX_BYTES):
            part = client.uploads.parts.create(upload.id, data=chunk, timeout=UPLOAD_TIMEOUT_SECONDS)
            part_ids.append(part.id)
            sent += len(chunk)
        if sent != size:
            raise FileUploadError(f"{name}: announced {size} bytes but the stream gave {sent}")
        completed = client.uploads.complete(upload.id, part_ids=part_ids)
    except BaseException:
        try:  # an abandoned upload expires after an hour anyway; cancelling is a courtesy
            client.uploads.cancel(upload.id)
        except Exception:  # noqa: BLE001
            pass
        raise
    file = completed.file
    if file is None:
        raise FileUploadError(
            f"{name}: the upload {upload.id} completed without a file (status {completed.status})"
        )
    return str(file.id)


def upload_file(
    client: AzureOpenAIClient,
    *,
    name: str,
    size: int,
    open_stream: Callable[[], BinaryIO],
    purpose: FilePurpose,
) -> str:
    """Upload (or find) ``name`` and return its file id. Idempotent: an existing file with the same
    filename, size and purpose that is not in ``error`` is reused. ``open_stream`` is called only when an
    upload is really needed; the stream is closed afterwards. ``name`` must be unique per content (e.g.
    ``vt-<dataset>-<version>-train.jsonl``): equal name and size is taken to mean equal bytes.

    Two concurrent callers can both create; the file list is checked again afterwards and every caller
    converges on the oldest copy (the newer duplicates are deleted)."""
    if size <= 0:
        raise FileUploadError(f"{name}: refusing to upload an empty file")
    if size > UPLOADS_API_MAX_BYTES:
        raise FileUploadError(f"{name}: {size} bytes is over Azure OpenAI's 8 GB upload limit")
    existing = find_file(client, name=name, size=size, purpose=purpose)
    if existing is not None:
        return existing.id

    try:
        with open_stream() as stream:
            if size <= FILES_API_MAX_BYTES:
                file_id = _upload_with_files_api(client, name, stream, purpose)
            else:
                file_id = _upload_with_uploads_api(client, name, size, stream, purpose)
    except AoaiError:
        raise
    except Exception as exc:
        import openai

        if isinstance(exc, openai.OpenAIError):
            raise FileUploadError(f"could not upload {name}: {describe_openai_error(exc)}") from exc
        raise

    return _converge_on_oldest(client, name=name, size=size, purpose=purpose, created=file_id)


def _converge_on_oldest(client: AzureOpenAIClient, *, name: str, size: int, purpose: FilePurpose, created: str) -> str:
    winner = find_file(client, name=name, size=size, purpose=purpose)
    if winner is None or winner.id == created:
        return created
    delete_file(client, created)  # a concurrent caller uploaded the same file first
    return winner.id


def file_state(client: AzureOpenAIClient, file_id: str) -> FileState:
    """The file's state; a file that no longer exists is reported as ``error`` saying so."""
    import openai

    try:
        file = client.files.retrieve(file_id)
    except openai.NotFoundError as exc:
        return FileState(
            id=file_id, status="error", raw_status="not_found",
            error=f"file {file_id} does not exist (deleted?): {describe_openai_error(exc)}",
        )
    except openai.OpenAIError as exc:
        raise AoaiError(f"could not read file {file_id}: {describe_openai_error(exc)}") from exc
    return _state_of(file)


def delete_file(client: AzureOpenAIClient, file_id: str) -> None:
    """Delete a file; a file that does not exist is fine."""
    import openai

    try:
        client.files.delete(file_id)
    except openai.NotFoundError:
        return
    except openai.OpenAIError as exc:
        raise AoaiError(f"could not delete file {file_id}: {describe_openai_error(exc)}") from exc


def read_file_bytes(client: AzureOpenAIClient, file_id: str) -> bytes:
    """The content of a file (results.csv, batch output / error files)."""
    import openai

    try:
        return bytes(client.files.content(file_id).content)
    except openai.OpenAIError as exc:
        raise AoaiError(f"could not download file {file_id}: {describe_openai_error(exc)}") from exc
