"""Writing block blobs: a stream that stages blocks of a few MB and commits them on close, and the
artifact sink that stages a converted version and publishes it atomically (manifest last)."""

from __future__ import annotations

import base64
import bisect
import io
import logging
import re
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, BinaryIO

from shared.layout import MANIFEST_NAME
from shared.storage.clients import readable_url

if TYPE_CHECKING:  # pragma: no cover - typing only
    from azure.storage.blob import BlobClient, ContainerClient

log = logging.getLogger(__name__)

DEFAULT_BLOCK_SIZE = 4 * 1024 * 1024
# JSONL artifacts are staged in blocks of whole lines of about this size: a later version that keeps most
# lines commits those blocks again by ID instead of copying their bytes (``BlobArtifactSink.assemble``), and
# a new line inserted among them costs copying about one such block. Smaller blocks mean more requests for
# a first conversion (2,000 phone-photo lines: 500 Put Block instead of 33 at 4 MB).
LINE_BLOCK_BYTES = 256 * 1024
STAGING_PREFIX = "_staging/"
# Staged artifacts carry this suffix so that no trigger pattern or Event Grid suffix filter
# (``.../manifest.json``) ever matches a half-published version.
STAGING_SUFFIX = ".part"


def new_block_prefix() -> str:
    return uuid.uuid4().hex[:16]


def block_id(prefix: str, number: int) -> str:
    """The ID of block ``number`` staged under ``prefix``. Every block ID of a blob must have the same length
    (Learn, "Put Block"): all of this module's IDs are base64 of ``<16 hex>-<8 digits>``."""
    return base64.b64encode(f"{prefix}-{number:08d}".encode()).decode()


_OUR_BLOCK_ID = re.compile(r"[0-9a-f]{16}-[0-9]{8}")


def is_our_block_id(value: str) -> bool:
    """Whether ``value`` (as the SDK's Get Block List returns it) was made by ``block_id``."""
    try:
        return _OUR_BLOCK_ID.fullmatch(base64.b64decode(value, validate=True).decode("ascii")) is not None
    except (ValueError, UnicodeDecodeError):
        return False


class BlockBlobWriter(io.RawIOBase):
    """A write-only stream to a block blob: buffers up to ``block_size`` bytes, stages each full block,
    and commits the block list on ``close()``.

    ``whole_writes``: a block ends only where a ``write`` call ended (the first one that brings the buffer to
    ``block_size``), so a caller that writes one JSONL line per call gets blocks of whole lines.
    ``concurrency``: blocks staged at once on threads (each request waits on latency, not bandwidth); memory
    holds that many blocks at most. The first failed block fails the next ``write`` or ``close``."""

    def __init__(
        self, blob: BlobClient, block_size: int = DEFAULT_BLOCK_SIZE, *, whole_writes: bool = False, concurrency: int = 1
    ) -> None:
        super().__init__()
        self._blob = blob
        self._block_size = block_size
        self._whole_writes = whole_writes
        self._buffer = bytearray()
        self._block_ids: list[str] = []
        self._prefix = new_block_prefix()
        self._concurrency = max(1, concurrency)
        self._pool: ThreadPoolExecutor | None = None
        self._pending: set[Future[Any]] = set()
        self.bytes_written = 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        if self.closed:
            raise ValueError("write to a closed blob writer")
        chunk = memoryview(data).cast("B")
        self._buffer += chunk
        self.bytes_written += len(chunk)
        if self._whole_writes:
            if len(self._buffer) >= self._block_size:
                self._stage(bytes(self._buffer))
                self._buffer.clear()
            return len(chunk)
        while len(self._buffer) >= self._block_size:
            self._stage(bytes(self._buffer[: self._block_size]))
            del self._buffer[: self._block_size]
        return len(chunk)

    def _stage(self, block: bytes) -> None:
        identity = block_id(self._prefix, len(self._block_ids))
        self._block_ids.append(identity)
        if self._concurrency == 1:
            self._blob.stage_block(block_id=identity, data=block, length=len(block))
            return
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=self._concurrency, thread_name_prefix="visiontune-write")
        while len(self._pending) >= self._concurrency:
            done, self._pending = wait(self._pending, return_when=FIRST_COMPLETED)
            for future in done:
                future.result()
        self._pending.add(self._pool.submit(self._blob.stage_block, block_id=identity, data=block, length=len(block)))

    def _drain(self, *, cancel: bool = False) -> None:
        pending, self._pending = self._pending, set()
        try:
            for future in pending:
                if cancel:
                    future.cancel()
                else:
                    future.result()
        finally:
            if self._pool is not None:
                self._pool.shutdown(wait=True, cancel_futures=True)
                self._pool = None

    def close(self) -> None:
        if self.closed:
            return
        from azure.storage.blob import BlobBlock

        try:
            if not self._block_ids and not self._whole_writes:
                # small enough for one block: one Put Blob instead of Put Block + Put Block List (a JSONL
                # file always gets its block list, which a later version reuses)
                self._blob.upload_blob(bytes(self._buffer), length=len(self._buffer), overwrite=True)
                self._buffer.clear()
                return
            if self._buffer or not self._block_ids:
                self._stage(bytes(self._buffer))
                self._buffer.clear()
            self._drain()
            self._blob.commit_block_list([BlobBlock(block_id=b) for b in self._block_ids])
        finally:
            self._drain(cancel=True)
            super().close()

    def abort(self) -> None:
        """Drop what was buffered without committing (the staged blocks expire on their own)."""
        self._buffer.clear()
        self._drain(cancel=True)
        super().close()


# Put Block From URL (Learn, "Put Block From URL", REST reference; "Scalability and performance targets
# for Blob storage"): blocks are kept at 100 MiB, the block limit of service versions before 2019-12-12
# (4000 MiB since), so every version accepts them and a failed block costs little to redo.
MAX_BLOCK_FROM_URL = 100 * 1024 * 1024
# Learn, "Scalability and performance targets for Blob storage": at most 50,000 blocks per block blob.
MAX_BLOCKS_PER_BLOB = 50_000
ASSEMBLE_CONCURRENCY = 16  # blocks staged at once by BlobArtifactSink.assemble
WRITE_CONCURRENCY = 16  # blocks of a JSONL artifact staged at once by BlobArtifactSink.open


@dataclass
class AssemblyStats:
    """What one ``assemble`` did: blocks of the base committed again, bytes of cut blocks read back, bytes
    copied server-side (Put Block From URL), new bytes uploaded."""

    base_blocks_usable: bool = False
    blocks_committed_again: int = 0
    bytes_committed_again: int = 0
    bytes_read_back: int = 0  # parts of cut blocks, read from the copy and uploaded again
    bytes_copied: int = 0
    bytes_uploaded: int = 0


class CommittedBlocks:
    """A blob's committed blocks, in order: which of them a byte range covers whole."""

    def __init__(self, ids: list[str], sizes: list[int], etag: str | None = None) -> None:
        self.etag = etag  # the version of the blob the list was read from
        self._ids = ids
        self._starts = [0]
        for size in sizes:
            self._starts.append(self._starts[-1] + size)
        self._index = {identity: k for k, identity in enumerate(ids)}

    def size_of(self, identity: str) -> int:
        k = self._index[identity]
        return self._starts[k + 1] - self._starts[k]

    def span(self, piece: str | tuple[int, int]) -> tuple[int, int]:
        """``[start, stop)`` of a block (by ID) or of a partial piece."""
        if isinstance(piece, str):
            k = self._index[piece]
            return self._starts[k], self._starts[k + 1]
        return piece

    def cover(self, offset: int, length: int) -> list[str | tuple[int, int]]:
        """``[offset, offset + length)`` as the IDs of the blocks it holds whole, in order, and the
        ``(start, stop)`` byte ranges left over at its ends (parts of blocks)."""
        stop = offset + length
        if offset < 0 or stop > self._starts[-1]:
            raise ValueError(f"range [{offset}, {stop}) is outside the blob's {self._starts[-1]} bytes")
        first = bisect.bisect_left(self._starts, offset)  # first block starting at or after offset
        last = bisect.bisect_right(self._starts, stop) - 1  # last block boundary at or before stop
        if first >= last:  # no whole block inside
            return [(offset, stop)] if length else []
        pieces: list[str | tuple[int, int]] = []
        if offset < self._starts[first]:
            pieces.append((offset, self._starts[first]))
        pieces.extend(self._ids[first:last])
        if self._starts[last] < stop:
            pieces.append((self._starts[last], stop))
        return pieces


def delete_blobs(container: ContainerClient, names: list[str], *, concurrency: int = 8) -> None:
    """Delete ``names``, a few at once (each delete waits on latency), best effort: a failure is logged
    (leftovers only cost space) and never hides the caller's outcome."""

    def delete(name: str) -> None:
        try:
            container.delete_blob(name)
        except Exception as error:  # noqa: BLE001 - cleanup must not hide the real outcome
            log.warning("could not delete %s: %s", name, error)

    if names:
        with ThreadPoolExecutor(max_workers=min(concurrency, len(names)), thread_name_prefix="visiontune-delete") as pool:
            list(pool.map(delete, names))


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
        line_block_size: int = LINE_BLOCK_BYTES,
        before_publish: Callable[[str], None] | None = None,
        copy_timeout: float = 600.0,
    ) -> None:
        self._container = container
        self._dataset = dataset
        self._block_size = block_size
        self._line_block_size = line_block_size
        self._before_publish = before_publish
        self._copy_timeout = copy_timeout
        self._staging = f"{STAGING_PREFIX}{dataset}/{uuid.uuid4().hex}/"
        self._names: list[str] = []
        self.version: str | None = None
        self.published = False
        self.assemblies: dict[str, AssemblyStats] = {}  # what ``assemble`` did, per artifact

    def _staged_name(self, name: str) -> str:
        return f"{self._staging}{name}{STAGING_SUFFIX}"

    @contextmanager
    def open(self, name: str) -> Iterator[BinaryIO]:
        if "/" in name or not name:
            raise ValueError(f"artifact names are plain file names, got {name!r}")
        blob = self._container.get_blob_client(self._staged_name(name))
        if name.endswith(".jsonl"):  # one write per line: blocks of whole lines a later version can reuse
            writer = BlockBlobWriter(blob, self._line_block_size, whole_writes=True, concurrency=WRITE_CONCURRENCY)
        else:
            writer = BlockBlobWriter(blob, self._block_size)
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
        self,
        name: str,
        segments: Iterable[bytes | tuple[str, int, int]],
        *,
        base: str | None = None,
        concurrency: int = ASSEMBLE_CONCURRENCY,
    ) -> int:
        """Stage artifact ``name`` as the concatenation of ``segments``: ``(blob, offset, length)`` ranges of
        other blobs of this container, and bytes (Put Block, consecutive ones grouped in blocks of about
        ``line_block_size``). Returns its size. Blocks are staged
        ``concurrency`` at a time (a few MB of bytes held at most) and committed in order by Put Block List,
        whose list alone decides the blob's content (Learn, "Put Block List"), so the staging order does not
        matter.

        Ranges are copied server-side: no byte of them passes through this process. ``base``, the blob most
        ranges come from (the previous version's file), is first copied onto the artifact (Copy Blob); where
        the copy kept the base's committed blocks, a range's whole blocks are committed again by ID (Put Block
        List's ``Committed`` list); the parts of blocks a range cuts are read back from the copy and uploaded
        together with the bytes between them. Without a usable base every range is copied with Put Block From
        URL. ``assemblies[name]`` says what was done."""
        from azure.core import MatchConditions
        from azure.storage.blob import BlobBlock, BlockState

        if "/" in name or not name:
            raise ValueError(f"artifact names are plain file names, got {name!r}")
        target = self._container.get_blob_client(self._staged_name(name))
        # The copy must come first: Copy Blob drops the uncommitted blocks of its destination.
        blocks = self._adopt_blocks(base, target) if base is not None else None
        prefix = new_block_prefix()
        block_list: list[BlobBlock] = []
        staged = 0
        stats = AssemblyStats(base_blocks_usable=blocks is not None)
        sources: dict[str, str] = {}
        pending: set[Future[Any]] = set()
        committed_again: set[str] = set()

        def add_block(identity: str, state: BlockState) -> str:
            if len(block_list) >= MAX_BLOCKS_PER_BLOB:
                raise ValueError(f"{name}: more than the {MAX_BLOCKS_PER_BLOB} blocks Azure allows per blob")
            block_list.append(BlobBlock(block_id=identity, state=state))
            return identity

        def next_block() -> str:
            nonlocal staged
            staged += 1
            return add_block(block_id(prefix, staged - 1), BlockState.UNCOMMITTED)

        with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="visiontune-assemble") as pool:

            def submit(call: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
                nonlocal pending
                while len(pending) >= 2 * concurrency:
                    done, pending = wait(pending, return_when=FIRST_COMPLETED)
                    for future in done:
                        future.result()  # the first failure stops the assembly
                pending.add(pool.submit(call, *args, **kwargs))

            def copy_range(blob: str, offset: int, length: int) -> None:
                if blob not in sources:
                    sources[blob] = readable_url(self._container, blob)
                done_bytes = 0
                while done_bytes < length:
                    step = min(MAX_BLOCK_FROM_URL, length - done_bytes)
                    submit(
                        target.stage_block_from_url, next_block(), sources[blob],
                        source_offset=offset + done_bytes, source_length=step,
                    )  # fmt: skip
                    done_bytes += step
                stats.bytes_copied += length

            # Bytes are uploaded in blocks of about ``line_block_size``. Where the base is usable, the cut ends
            # of its blocks are read back from the copy and uploaded in one block with the lines inserted
            # between them: a cut block stays one block (no fragments piling up version after version) and
            # costs one read instead of two Put Block From URL.
            group: list[bytes | tuple[int, int]] = []
            group_bytes = 0

            def read_copy(start: int, stop: int) -> bytes:
                return target.download_blob(
                    offset=start, length=stop - start, etag=blocks.etag,  # type: ignore[union-attr]
                    match_condition=MatchConditions.IfNotModified, max_concurrency=1,
                ).readall()  # fmt: skip

            def stage_group(identity: str, parts: list[bytes | tuple[int, int]]) -> None:
                # The two ends of a block cut by new lines are contiguous in the copy: one read serves both.
                spans: list[list[int]] = []
                for part in sorted(p for p in parts if not isinstance(p, bytes)):
                    if spans and spans[-1][1] == part[0]:
                        spans[-1][1] = part[1]
                    else:
                        spans.append([part[0], part[1]])
                read = {start: read_copy(start, stop) for start, stop in spans}

                def piece(part: bytes | tuple[int, int]) -> bytes:
                    if isinstance(part, bytes):
                        return part
                    start = max(s for s in read if s <= part[0])
                    return read[start][part[0] - start : part[1] - start]

                data = b"".join(piece(part) for part in parts)
                target.stage_block(identity, data, length=len(data))

            def add_to_group(part: bytes | tuple[int, int], length: int) -> None:
                nonlocal group_bytes
                group.append(part)
                group_bytes += length
                if group_bytes >= self._line_block_size:
                    flush_group()

            def flush_group() -> None:
                nonlocal group, group_bytes
                if group:
                    submit(stage_group, next_block(), group)
                group, group_bytes = [], 0

            size = 0
            try:
                for segment in segments:
                    if isinstance(segment, bytes):
                        if segment:
                            size += len(segment)
                            stats.bytes_uploaded += len(segment)
                            add_to_group(segment, len(segment))
                        continue
                    blob, offset, length = segment
                    size += length
                    if blocks is None or blob != base:
                        flush_group()
                        copy_range(blob, offset, length)
                        continue
                    for piece in blocks.cover(offset, length):
                        if isinstance(piece, str) and piece not in committed_again:
                            flush_group()
                            committed_again.add(piece)  # a block listed twice: its second use is read back
                            add_block(piece, BlockState.COMMITTED)
                            stats.blocks_committed_again += 1
                            stats.bytes_committed_again += blocks.size_of(piece)
                        else:
                            start, stop = blocks.span(piece)
                            stats.bytes_read_back += stop - start
                            add_to_group((start, stop), stop - start)
                flush_group()
                for future in pending:
                    future.result()
            finally:
                for future in pending:
                    future.cancel()
        target.commit_block_list(block_list)
        self.assemblies[name] = stats
        log.info(
            "%s assembled: %d blocks of %s committed again (%d bytes), %d bytes read back, %d copied by range, "
            "%d uploaded",
            name, stats.blocks_committed_again, base, stats.bytes_committed_again, stats.bytes_read_back,
            stats.bytes_copied, stats.bytes_uploaded,
        )  # fmt: skip
        if name not in self._names:
            self._names.append(name)
        return size

    def _adopt_blocks(self, base: str, target: BlobClient) -> CommittedBlocks | None:
        """Copy ``base`` onto ``target`` and return the committed blocks the copy holds, or None when they
        cannot be used (and the ranges of ``base`` are then copied with Put Block From URL).

        Learn documents Copy Blob as copying the blob, not its block list, so nothing is assumed: the copy's
        block list (Get Block List) is used only if its sizes add up to the copied blob's size and every ID is
        one of ours (same length as the blocks staged next, which Put Block requires). Azurite keeps the list
        (its Copy Blob copies the blob's committed block list)."""
        try:
            self._copy(base, target.blob_name)
            # Get Block List answers with the blob's length and ETag (Learn, "Get Block List", response
            # headers x-ms-blob-content-length and ETag): no Get Blob Properties round trip when they are there
            headers: dict[str, str] = {}
            committed, _uncommitted = target.get_block_list(
                "committed",
                raw_response_hook=lambda response: headers.update(
                    (key.lower(), value) for key, value in response.http_response.headers.items()
                ),
            )
            size_header, etag = headers.get("x-ms-blob-content-length"), headers.get("etag")
            if size_header is None or etag is None:
                properties = target.get_blob_properties()
                size_header, etag = str(properties.size), properties.etag
            size = int(size_header)
        except Exception as error:  # noqa: BLE001 - the ranges are then copied one by one
            log.warning("could not copy %s to reuse its blocks (%s); copying its ranges instead", base, error)
            return None
        ids = [str(block.id) for block in committed]
        sizes = [int(block.size or 0) for block in committed]
        usable = all(s > 0 for s in sizes) and all(is_our_block_id(i) for i in ids) and len(set(ids)) == len(ids)
        if not ids or sum(sizes) != size or not usable:
            log.info("the copy of %s kept no usable block list (%d blocks); copying its ranges instead", base, len(ids))
            return None
        return CommittedBlocks(ids, sizes, etag)

    def read_staged(self, name: str) -> bytes:
        """The bytes of an artifact staged by this sink (small ones: the manifest)."""
        return self._container.get_blob_client(self._staged_name(name)).download_blob().readall()

    def commit(self, version: str) -> None:
        if MANIFEST_NAME not in self._names:
            raise ValueError(f"commit({version!r}) before {MANIFEST_NAME} was written")
        self.version = version
        final_prefix = f"{self._dataset}/{version}/"
        staged = [self._staged_name(n) for n in self._names]  # every staged blob: each artifact was completed
        try:
            if self._container.get_blob_client(final_prefix + MANIFEST_NAME).exists():
                log.info("%s%s already published; nothing to copy", final_prefix, MANIFEST_NAME)
            else:
                if self._before_publish is not None:
                    self._before_publish(version)
                # the data files at once (each copy waits on latency, not bandwidth), the manifest after them all
                data = [n for n in self._names if n != MANIFEST_NAME]
                with ThreadPoolExecutor(max_workers=max(1, len(data)), thread_name_prefix="visiontune-publish") as pool:
                    for future in [pool.submit(self._copy, self._staged_name(n), final_prefix + n) for n in data]:
                        future.result()
                    # published: their staged copies go while the manifest is copied
                    cleanup = pool.submit(delete_blobs, self._container, [self._staged_name(n) for n in data])
                    self._copy(self._staged_name(MANIFEST_NAME), final_prefix + MANIFEST_NAME)
                    self.published = True
                    cleanup.result()
                staged = [self._staged_name(MANIFEST_NAME)]
        except BaseException:
            self.discard()
            raise
        delete_blobs(self._container, staged)  # known names: no listing needed

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
        delete_blobs(self._container, [blob.name for blob in self._container.list_blobs(name_starts_with=self._staging)])

    abort = discard  # the converter calls ``abort()`` when a conversion fails
