"""Pass 1: read, hash and normalise every file (in worker processes when there are several),
reusing cached images; each record gets its digest and the offset of its JPEG in a spill file, or a rejection."""

from __future__ import annotations

import hashlib
import logging
import multiprocessing
import os
import sys
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING

from shared.conversion.allocator import keep_freed_memory
from shared.conversion.cache import ImageCache
from shared.conversion.images import ImageResult, ImageSettings
from shared.conversion.options import ConvertOptions
from shared.conversion.reading import read_ahead
from shared.conversion.records import Record, too_large, unreadable
from shared.conversion.sources import DatasetSource
from shared.conversion.worker_pool import (
    ProcessReader,
    PullPool,
    WorkerDied,
    WorkerResult,
    WorkerTask,
    decode,
    read_threads_for,
)
from shared.errors import SourceChangedError, VisiontuneError

if TYPE_CHECKING:
    import multiprocessing.context

log = logging.getLogger(__name__)


_IN_FLIGHT_PER_WORKER = 3  # batches queued per worker
_BATCH_FILES = 8  # files per batch sent to a worker ...
_BATCH_BYTES = 4 * 1024 * 1024  # ... or fewer, once their source bytes reach this
# Source bytes the main process may have read and shipped to workers but not yet seen converted (a zip
# entry may be 100 MB: without this, 3 batches per worker of such entries would all be held at once).
MAX_BYTES_IN_FLIGHT = 64 * 1024 * 1024


# record index, the file's bytes, and the bytes' digest when the reader already computed it
_Task = tuple[int, bytes, str]


def _process(task: _Task, settings: ImageSettings, max_bytes: int) -> tuple[int, str, ImageResult]:
    """Hash (unless the digest came with the bytes) and normalise one file."""
    index, data, digest = task
    digest = digest or hashlib.sha256(data).hexdigest()
    return index, digest, decode(data, settings)


def _process_batch(batch: list[_Task], settings: ImageSettings, max_bytes: int) -> list[tuple[int, str, ImageResult]]:
    """Worker entry point: a few files per call, so small images do not drown in messaging overhead."""
    return [_process(task, settings, max_bytes) for task in batch]


def _worker_count(requested: int, tasks: int) -> int:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(requested or cores, tasks or 1))


def _mp_context() -> multiprocessing.context.BaseContext:
    # forkserver: workers start fast and never inherit the caller's threads (progress bars, SDK pools).
    # It re-imports __main__ by path in the workers, which fails for `python -` (stdin): fork then.
    methods = multiprocessing.get_all_start_methods()
    method = "forkserver" if "forkserver" in methods else "spawn"
    main_file = getattr(sys.modules.get("__main__"), "__file__", None)
    if main_file and not os.path.isfile(main_file) and "fork" in methods:
        method = "fork"
    context = multiprocessing.get_context(method)
    if method == "forkserver":
        context.set_forkserver_preload(["shared.conversion.images", "PIL.Image", "PIL.JpegImagePlugin"])
    return context


@dataclass
class _Fetched:
    """What a reader thread got for one record: an error, a cached JPEG, or the bytes to convert."""

    digest: str = ""
    data: bytes | None = None
    jpeg: bytes | None = None
    error: ImageResult | None = None
    in_cache: bool = False  # a cache hit whose JPEG is read later, if at all (``defer_cached``)


@dataclass
class PassOne:
    workers: int
    converted: int = 0
    reused: int = 0


def run_pass_one(
    source: DatasetSource,
    records: list[Record],
    settings: ImageSettings,
    options: ConvertOptions,
    spill: IO[bytes],
    progress: Callable[[int, int], None] | None,
    cache: ImageCache | None = None,
    only: list[Record] | None = None,
    defer_cached: bool = False,
) -> PassOne:
    """Process every record (or the records in ``only``).

    With several workers and a source that can be read from another process (``process_reader()``: a
    folder, blobs), the workers read, hash and decode the files themselves (``worker_pool``); this process
    only looks up the files the cache knows unchanged (same path, size and ETag) and never reads the others.
    Otherwise reader threads (``source.read_concurrency`` of them; with the source's process reader when it
    has one) read, hash and look each file up in ``cache`` ahead of the decoders, and only cache misses are
    decoded. ``defer_cached``: a cache hit only marks its record ``in_cache`` (its JPEG is not read);
    ``spill_cached`` reads the ones that turn out to be needed."""
    keep_freed_memory()
    read_concurrency = max(1, int(getattr(source, "read_concurrency", 1) or 1))
    todo = [r for r in (records if only is None else only) if r.code is None]
    total = len(todo)
    done = 0
    outcome = PassOne(workers=1)
    if progress:
        progress(0, total)

    def advance() -> None:
        nonlocal done
        done += 1
        if progress:
            progress(done, total)

    def cached(key: str) -> _Fetched | None:
        if defer_cached:
            return _Fetched(in_cache=True) if cache.has(key) else None  # type: ignore[union-attr]
        jpeg = cache.get(key)  # type: ignore[union-attr]
        return None if jpeg is None else _Fetched(jpeg=jpeg)

    def known(record: Record) -> _Fetched | None:  # on a reader thread
        """The cached image of a file unchanged since a cached version (same path, size and ETag): its
        digest is known, so it is not read."""
        if cache is None or record.etag is None:
            return None
        digest = cache.known_digest(record.path, record.size, record.etag)
        if digest is None:
            return None
        hit = cached(cache.key(digest))
        if hit is not None:
            hit.digest = digest
        return hit

    def fetch(record: Record) -> _Fetched:  # on a reader thread
        hit = known(record)
        if hit is not None:
            return hit
        try:
            data = source.read(record.path) if reader is None else reader.read(record.path, record.etag, options.max_file_bytes)
        except SourceChangedError:
            raise  # not one bad file: the whole drop changed under the reader
        except Exception as exc:  # one unreadable file must not stop the rest
            return _Fetched(error=unreadable(exc))
        if len(data) > options.max_file_bytes:
            return _Fetched(error=too_large(max(len(data), record.size), options.max_file_bytes))
        if cache is None:
            return _Fetched(data=data)  # hashed where it is decoded, in a worker process
        digest = hashlib.sha256(data).hexdigest()  # the cache is looked up by it
        hit = cached(cache.key(digest))
        if hit is not None:
            hit.digest = digest
            return hit
        return _Fetched(digest=digest, data=data)

    def take(record: Record, fetched: _Fetched) -> None:
        """Record an error or a cache hit (``fetched`` without bytes to convert)."""
        if fetched.error is not None:
            record.code, record.reason = fetched.error.code, fetched.error.reason
        elif fetched.in_cache:
            record.sha256, record.in_cache = fetched.digest, True
            outcome.reused += 1
        else:
            record.sha256 = fetched.digest
            record.offset, record.length = spill.tell(), len(fetched.jpeg)  # type: ignore[arg-type]
            spill.write(fetched.jpeg)  # type: ignore[arg-type]
            outcome.reused += 1
        advance()

    def tasks() -> Iterator[_Task]:
        for record, fetched in read_ahead(todo, fetch, concurrency=read_concurrency, size=lambda r: r.size):
            if fetched.data is None:
                take(record, fetched)
            else:
                yield record.index, fetched.data, fetched.digest

    def batches() -> Iterator[list[_Task]]:
        batch: list[_Task] = []
        batch_bytes = 0
        for task in tasks():
            batch.append(task)
            batch_bytes += len(task[1])
            if len(batch) >= _BATCH_FILES or batch_bytes >= _BATCH_BYTES:
                yield batch
                batch, batch_bytes = [], 0
        if batch:
            yield batch

    def handle(index: int, digest: str, result: ImageResult) -> None:
        record = records[index]
        record.sha256 = digest
        if result.ok:
            record.offset = spill.tell()
            record.length = len(result.jpeg)  # type: ignore[arg-type]
            spill.write(result.jpeg)  # type: ignore[arg-type]
            outcome.converted += 1
            if cache is not None:
                cache.put(cache.key(digest), result.jpeg)  # type: ignore[arg-type]
        else:
            record.code, record.reason = result.code, result.reason
        advance()

    def unfinished() -> list[Record]:
        return [r for r in todo if not r.sha256 and r.code is None]

    workers = _worker_count(options.workers, total)
    max_bytes = options.max_file_bytes
    # The same reader serves this process's reader threads when it converts alone (fewer CPU per blob than
    # the Storage SDK's download).
    reader = _process_reader(source) if total else None
    if reader is not None and workers > 1:

        def worker_tasks() -> Iterator[WorkerTask]:
            pairs = read_ahead(todo, known, concurrency=read_concurrency) if cache is not None else ((r, None) for r in todo)
            for record, hit in pairs:
                if hit is not None:
                    take(record, hit)
                else:
                    yield WorkerTask(record.index, record.path, record.etag, record.size)

        def on_result(got: WorkerResult) -> WorkerTask | None:
            record = records[got.index]
            if got.result is not None:
                handle(got.index, got.sha256, got.result)
                return None
            hit = cached(cache.key(got.sha256))  # type: ignore[union-attr]
            if hit is None:  # the filter's hint was wrong, or the entry cannot be read: decode it
                return WorkerTask(record.index, record.path, record.etag, record.size, decode=True)
            hit.digest = got.sha256
            take(record, hit)
            return None

        threads = read_threads_for(read_concurrency, workers)
        pull = PullPool(
            _mp_context(), workers, settings, max_bytes,
            cache_filter=None if cache is None else cache.process_filter(), read_threads=threads,
        )  # fmt: skip
        try:
            pull.start()
        except (OSError, ImportError, NotImplementedError) as exc:  # no working semaphores (e.g. no /dev/shm)
            log.warning("converting in one process: cannot start worker processes (%s)", exc)
            workers = 1
        else:
            try:
                with pull:
                    pull.run(
                        worker_tasks(), reader, on_result,
                        max_outstanding=workers * (2 * threads + 2), max_bytes_outstanding=MAX_BYTES_IN_FLIGHT,
                        renew=lambda: _process_reader(source, strict=True) or reader,
                    )  # fmt: skip
                outcome.workers = workers
                return outcome
            except WorkerDied as exc:
                # A worker died: finish the files that have no result in this process.
                log.warning("worker processes failed (%s); converting the remaining files in this process", exc)
                todo, workers = unfinished(), 1

    pool = None
    if workers > 1:
        try:
            pool = ProcessPoolExecutor(max_workers=workers, mp_context=_mp_context(), initializer=keep_freed_memory)
        except (OSError, ImportError, NotImplementedError) as exc:  # no working semaphores (e.g. no /dev/shm)
            log.warning("converting in one process: cannot start worker processes (%s)", exc)
    if pool is None:
        for task in tasks():
            handle(*_process(task, settings, max_bytes))
        return outcome

    limit = workers * _IN_FLIGHT_PER_WORKER  # bounds the memory held by images in flight
    # source bytes sent with each batch
    shipped: dict[Future[list[tuple[int, str, ImageResult]]], int] = {}
    try:
        with pool:
            pending: set[Future[list[tuple[int, str, ImageResult]]]] = set()
            for batch in batches():
                batch_bytes = sum(len(data) for _, data, _ in batch)
                # Wait while too many batches, or too many bytes read from the source (zip entries, blobs),
                # are in flight; one batch alone may always go.
                while pending and (
                    len(pending) >= limit or sum(shipped[f] for f in pending) + batch_bytes > MAX_BYTES_IN_FLIGHT
                ):
                    finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                    for future in finished:
                        shipped.pop(future, None)
                        for result in future.result():
                            handle(*result)
                future = pool.submit(_process_batch, batch, settings, max_bytes)
                shipped[future] = batch_bytes
                pending.add(future)
                del batch
            for future in pending:
                for result in future.result():
                    handle(*result)
    except BrokenProcessPool as exc:
        # A worker could not start or died: finish the files that have no result in this process.
        log.warning("worker processes failed (%s); converting the remaining files in this process", exc)
        todo = unfinished()
        for task in tasks():
            handle(*_process(task, settings, max_bytes))
        return outcome
    outcome.workers = workers
    return outcome


def _process_reader(source: DatasetSource, *, strict: bool = False) -> ProcessReader | None:
    """``source.process_reader()``: how a worker process reads the source's files itself, or None (the
    source has none, e.g. a zip; or it could not make one, e.g. no role to sign a SAS: then this process
    reads, with a warning). ``strict``: raise instead (a reader renewed mid-conversion)."""
    make = getattr(source, "process_reader", None)
    if make is None:
        return None
    try:
        return make()  # type: ignore[no-any-return]
    except Exception as exc:
        if strict:
            raise
        log.warning("reading the files in this process: the worker processes cannot read them (%s)", exc)
        return None


def spill_cached(
    source: DatasetSource,
    records: list[Record],
    wanted: list[Record],
    settings: ImageSettings,
    options: ConvertOptions,
    spill: IO[bytes],
    cache: ImageCache,
) -> None:
    """Read the cached JPEGs of the ``wanted`` records (of ``records``, every record of the conversion) marked
    ``in_cache`` into ``spill`` (a few reads at a time).
    An entry that cannot be read any more (its pack collected, a failed read) is converted again from the
    source; ``CacheLostError`` if that fails too (the file changed since: converting the drop again
    decides it afresh)."""
    wanted = [r for r in wanted if r.in_cache]
    lost: list[Record] = []
    spill.seek(0, os.SEEK_END)  # lines may have been read back from it since pass 1
    concurrency = max(1, int(getattr(source, "read_concurrency", 1) or 1))
    for record, jpeg in read_ahead(wanted, lambda r: cache.get(cache.key(r.sha256)), concurrency=concurrency):
        record.in_cache = False
        if jpeg is None:
            lost.append(record)
            continue
        record.offset, record.length = spill.tell(), len(jpeg)
        spill.write(jpeg)
    if not lost:
        return
    digests = {r.index: r.sha256 for r in lost}
    run_pass_one(source, records, settings, options, spill, None, None, only=lost)
    failed = [r for r in lost if r.code is not None or r.sha256 != digests[r.index]]
    if failed:
        raise CacheLostError(
            f"{len(failed)} image(s) left the image cache during the conversion and could not be converted "
            f"again as they were ({failed[0].path}: {failed[0].reason or 'its bytes changed'}); drop the dataset again"
        )


class CacheLostError(VisiontuneError, RuntimeError):
    """Cached images needed by a conversion could not be read nor converted again identically."""

    transient = True
