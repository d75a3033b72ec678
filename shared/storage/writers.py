"""Writing block blobs: a stream that stages blocks of a few MB and commits them on close, and the
artifact sink that stages a converted version and publishes it atomically (manifest last)."""

from __future__ import annotations

import base64
import io
import logging
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, BinaryIO

from shared.layout import MANIFEST_NAME
from shared.storage.clients import readable_url

if TYPE_CHECKING:  # pragma: no cover - typing only
    from azure.storage.blob import BlobClient, ContainerClient

log = logging.getLogger(__name__)

DEFAULT_BLOCK_SIZE = 4 * 1024 * 1024
STAGING_PREFIX = "_staging/"
# Staged artifacts carry this suffix so that no trigger pattern or Event Grid suffix filter
# (``.../manifest.json``) ever matches a half-published version.
STAGING_SUFFIX = ".part"


class BlockBlobWriter(io.RawIOBase):
    """A write-only stream to a block blob: buffers up to ``block_size`` bytes, stages each full block,
    and commits the block list on ``close()``. Memory use is one block, whatever the blob's size."""

    def __init__(self, blob: BlobClient, block_size: int = DEFAULT_BLOCK_SIZE) -> None:
        super().__init__()
        self._blob = blob
        self._block_size = block_size
        self._buffer = bytearray()
        self._block_ids: list[str] = []
        self._prefix = uuid.uuid4().hex[:16]
        self.bytes_written = 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        if self.closed:
            raise ValueError("write to a closed blob writer")
        chunk = memoryview(data).cast("B")
        self._buffer += chunk
        self.bytes_written += len(chunk)
        while len(self._buffer) >= self._block_size:
            self._stage(bytes(self._buffer[: self._block_size]))
            del self._buffer[: self._block_size]
        return len(chunk)

    def _stage(self, block: bytes) -> None:
        # Block ids must all have the same length within a blob; base64 of a fixed-width string.
        block_id = base64.b64encode(f"{self._prefix}-{len(self._block_ids):08d}".encode()).decode()
        self._blob.stage_block(block_id=block_id, data=block, length=len(block))
        self._block_ids.append(block_id)

    def close(self) -> None:
        if self.closed:
            return
        from azure.storage.blob import BlobBlock

        try:
            if self._buffer or not self._block_ids:
                self._stage(bytes(self._buffer))
                self._buffer.clear()
            self._blob.commit_block_list([BlobBlock(block_id=b) for b in self._block_ids])
        finally:
            super().close()

    def abort(self) -> None:
        """Drop what was buffered without committing (the staged blocks expire on their own)."""
        self._buffer.clear()
        super().close()


# Put Block From URL (Learn, "Put Block From URL", REST reference; "Scalability and performance targets
# for Blob storage"): blocks are kept at 100 MiB, the block limit of service versions before 2019-12-12
# (4000 MiB since), so every version accepts them and a failed block costs little to redo.
MAX_BLOCK_FROM_URL = 100 * 1024 * 1024
# Learn, "Scalability and performance targets for Blob storage": at most 50,000 blocks per block blob.
MAX_BLOCKS_PER_BLOB = 50_000
ASSEMBLE_CONCURRENCY = 16  # blocks staged at once by BlobArtifactSink.assemble


class BlobArtifactSink:
    """An ``ArtifactSink`` that streams each artifact to ``_staging/<dataset>/<token>/<name>.part`` in the
    training container and, on ``commit(version)``, copies them to ``<dataset>/<version>/`` with
    ``manifest.json`` last, so the ``training_ready`` trigger fires only once everything is in place.

    ``before_publish(version)`` runs after staging and before anything is published (the pipeline creates
    the run there, so the trigger always finds it). If ``<dataset>/<version>/manifest.json`` already
    exists, the version is already published: nothing is copied (same data dropped twice starts nothing).
    ``published`` says afterwards whether this sink published the version.
    """

    def __init__(
        self,
        container: ContainerClient,
        dataset: str,
        *,
        block_size: int = DEFAULT_BLOCK_SIZE,
        before_publish: Callable[[str], None] | None = None,
        copy_timeout: float = 600.0,
    ) -> None:
        self._container = container
        self._dataset = dataset
        self._block_size = block_size
        self._before_publish = before_publish
        self._copy_timeout = copy_timeout
        self._staging = f"{STAGING_PREFIX}{dataset}/{uuid.uuid4().hex}/"
        self._names: list[str] = []
        self.version: str | None = None
        self.published = False

    def _staged_name(self, name: str) -> str:
        return f"{self._staging}{name}{STAGING_SUFFIX}"

    @contextmanager
    def open(self, name: str) -> Iterator[BinaryIO]:
        if "/" in name or not name:
            raise ValueError(f"artifact names are plain file names, got {name!r}")
        writer = BlockBlobWriter(self._container.get_blob_client(self._staged_name(name)), self._block_size)
        try:
            yield writer  # type: ignore[misc]
        except BaseException:
            writer.abort()
            raise
        writer.close()
        if name not in self._names:
            self._names.append(name)

    def published_artifact(self, version: str, name: str) -> tuple[str, int] | None:
        """``(blob, size)`` of artifact ``name`` of this dataset's published ``version``, or None when it is
        not there (or is the target of a copy that has not succeeded)."""
        from azure.core.exceptions import ResourceNotFoundError

        blob = f"{self._dataset}/{version}/{name}"
        try:
            properties = self._container.get_blob_client(blob).get_blob_properties()
        except ResourceNotFoundError:
            return None
        copy = getattr(properties, "copy", None)
        if copy is not None and copy.status not in (None, "success"):
            return None
        return blob, int(properties.size)

    def assemble(
        self, name: str, segments: Iterable[bytes | tuple[str, int, int]], *, concurrency: int = ASSEMBLE_CONCURRENCY
    ) -> int:
        """Stage artifact ``name`` as the concatenation of ``segments``: ``(blob, offset, length)`` ranges of
        other blobs of this container, copied server-side (Put Block From URL: those bytes never pass through
        this process), and bytes (Put Block). Returns its size. Blocks are staged ``concurrency`` at a time
        (a few MB of bytes held at most) and committed in order by Put Block List, whose list alone decides
        the blob's content (Learn, "Put Block List"), so the staging order does not matter. Ranges longer
        than ``MAX_BLOCK_FROM_URL`` are cut into several blocks."""
        from azure.storage.blob import BlobBlock

        if "/" in name or not name:
            raise ValueError(f"artifact names are plain file names, got {name!r}")
        target = self._container.get_blob_client(self._staged_name(name))
        prefix = uuid.uuid4().hex[:16]
        block_ids: list[str] = []
        size = 0
        sources: dict[str, str] = {}
        pending: set[Future[Any]] = set()

        def next_id() -> str:
            if len(block_ids) >= MAX_BLOCKS_PER_BLOB:
                raise ValueError(f"{name}: more than the {MAX_BLOCKS_PER_BLOB} blocks Azure allows per blob")
            block_ids.append(base64.b64encode(f"{prefix}-{len(block_ids):08d}".encode()).decode())
            return block_ids[-1]

        with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="visiontune-assemble") as pool:

            def submit(call: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
                nonlocal pending
                while len(pending) >= 2 * concurrency:
                    done, pending = wait(pending, return_when=FIRST_COMPLETED)
                    for future in done:
                        future.result()  # the first failure stops the assembly
                pending.add(pool.submit(call, *args, **kwargs))

            try:
                for segment in segments:
                    if isinstance(segment, bytes):
                        if segment:
                            submit(target.stage_block, next_id(), segment, length=len(segment))
                            size += len(segment)
                        continue
                    blob, offset, length = segment
                    if blob not in sources:
                        sources[blob] = readable_url(self._container, blob)
                    done_bytes = 0
                    while done_bytes < length:
                        step = min(MAX_BLOCK_FROM_URL, length - done_bytes)
                        submit(
                            target.stage_block_from_url, next_id(), sources[blob],
                            source_offset=offset + done_bytes, source_length=step,
                        )  # fmt: skip
                        done_bytes += step
                    size += length
                for future in pending:
                    future.result()
            finally:
                for future in pending:
                    future.cancel()
        target.commit_block_list([BlobBlock(block_id=b) for b in block_ids])
        if name not in self._names:
            self._names.append(name)
        return size

    def read_staged(self, name: str) -> bytes:
        """The bytes of an artifact staged by this sink (small ones: the manifest)."""
        return self._container.get_blob_client(self._staged_name(name)).download_blob().readall()

    def commit(self, version: str) -> None:
        if MANIFEST_NAME not in self._names:
            raise ValueError(f"commit({version!r}) before {MANIFEST_NAME} was written")
        self.version = version
        final_prefix = f"{self._dataset}/{version}/"
        try:
            if self._container.get_blob_client(final_prefix + MANIFEST_NAME).exists():
                log.info("%s%s already published; nothing to copy", final_prefix, MANIFEST_NAME)
            else:
                if self._before_publish is not None:
                    self._before_publish(version)
                ordered = [n for n in self._names if n != MANIFEST_NAME] + [MANIFEST_NAME]
                for name in ordered:
                    self._copy(self._staged_name(name), final_prefix + name)
                self.published = True
        finally:
            self.discard()

    def _copy(self, source: str, target: str) -> None:
        """Server-side copy within the account (authorised by this request, also with Entra ID)."""
        source_client = self._container.get_blob_client(source)
        target_client = self._container.get_blob_client(target)
        result = target_client.start_copy_from_url(source_client.url)
        status = result.get("copy_status")
        deadline = time.monotonic() + self._copy_timeout
        while status == "pending":
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"copying {source} to {target} did not finish in {self._copy_timeout:.0f} s"
                )
            time.sleep(0.2)
            status = target_client.get_blob_properties().copy.status
        if status not in (None, "success"):
            raise OSError(f"copying {source} to {target} ended with status {status}")

    def discard(self) -> None:
        """Delete the staged blobs (best effort: leftovers are only wasted space under ``_staging/``)."""
        for blob in self._container.list_blobs(name_starts_with=self._staging):
            try:
                self._container.delete_blob(blob.name)
            except Exception as error:  # noqa: BLE001 - cleanup must not hide the real outcome
                log.warning("could not delete staged %s: %s", blob.name, error)

    abort = discard  # the converter calls ``abort()`` when a conversion fails
