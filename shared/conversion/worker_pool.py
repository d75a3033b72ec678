"""Worker processes that read the files they convert themselves (pass 1, when the source can be read from
another process: a folder, or blobs through a read-only SAS).

Why not the main process reading and shipping bytes: on a 2-core instance the main process then spends,
per 2.4 MB phone photo, about 3.6 ms in the Storage SDK's download and 3 ms pickling the bytes through a
pipe to a worker and back out, on the same cores the decoders need (measured: 43 vs 56 images/s with the
workers reading). Here the main process only sends ``(index, path, etag)`` and receives JPEGs.

Each worker runs ``read_threads`` reader threads that pull tasks from one shared queue (so a slow file
never holds up the others' work) and a decoder that converts what they fetched: a read's latency (10-30 ms
per blob) is hidden behind the decoding of the file before it. Memory: a worker holds at most
``2 * read_threads + 1`` files; the caller bounds the tasks and bytes it leaves outstanding.

A worker that dies (killed, out of memory) raises ``WorkerDied``: the caller converts the files that have
no result yet in its own process, as it does when a process pool breaks.
"""

from __future__ import annotations

import hashlib
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from shared.conversion.allocator import keep_freed_memory
from shared.conversion.images import ImageResult, ImageSettings, normalise_image
from shared.conversion.records import too_large, unreadable
from shared.errors import SourceChangedError, VisiontuneError

if TYPE_CHECKING:
    import multiprocessing.context

log = logging.getLogger(__name__)

# a worker's reader threads: one read in flight while the file before it decodes, and one to spare
DEFAULT_READ_THREADS = 2
MAX_READ_THREADS = 4
_POLL_SECONDS = 1.0  # how often a wait for results checks that every worker is still alive
_EXIT_SECONDS = 3.0  # how long finished workers may take to exit before they are stopped


class ProcessReader(Protocol):
    """Reads a source's files in a worker process. Picklable (it travels with each task) and cheap to copy."""

    def read(self, path: str, etag: str | None, limit: int) -> bytes:
        """At most ``limit + 1`` bytes of ``path`` (more than ``limit``: the file is too large).
        ``SourceChangedError`` when ``etag`` is given and the file is no longer that version; any other
        exception is that one file's problem (reported as unreadable, without the credentials)."""
        ...


@dataclass(frozen=True)
class CacheFilter:
    """Which digests the image cache held when the conversion started, for a worker to skip decoding them.

    Holds the first 8 bytes of each cache key (a few MB for 100,000 entries, sent once to each worker).
    A match is only a hint: the caller looks the full key up and asks for a decode when it is missing."""

    fingerprint: str
    key_prefixes: frozenset[int]

    def may_have(self, source_sha256: str) -> bool:
        key = hashlib.sha256(f"{self.fingerprint}:{source_sha256}".encode()).digest()
        return int.from_bytes(key[:8], "big") in self.key_prefixes


@dataclass(frozen=True)
class WorkerTask:
    index: int
    path: str
    etag: str | None
    size: int
    decode: bool = False  # decode even if the cache filter says the image is cached


@dataclass(frozen=True)
class WorkerResult:
    """``result`` None: the digest may be cached (``CacheFilter``); the image was not decoded."""

    index: int
    sha256: str
    result: ImageResult | None


class WorkerDied(VisiontuneError, RuntimeError):
    """A worker process ended before the conversion did (the caller finishes its files itself)."""

    transient = True


def decode(data: bytes, settings: ImageSettings) -> ImageResult:
    """``normalise_image``, with a decoder bug on one odd file turned into that file's rejection."""
    try:
        return normalise_image(data, settings)
    except Exception as exc:  # a decoder bug on one odd file must not stop the rest
        return ImageResult(code="corrupt", reason=f"cannot decode the image: {type(exc).__name__}: {exc}")


def _read_one(reader: ProcessReader, task: WorkerTask, limit: int) -> tuple[bytes | None, Any]:
    try:
        return reader.read(task.path, task.etag, limit), None
    except SourceChangedError as exc:
        return None, exc
    except Exception as exc:  # one unreadable file must not stop the rest
        return None, unreadable(exc)


def _worker_main(
    tasks: Any, results: Any, settings: ImageSettings, max_bytes: int, cache_filter: CacheFilter | None, read_threads: int
) -> None:
    """A worker process: ``read_threads`` threads pull ``(task, reader)`` pairs and read them; this thread
    hashes and decodes what they read and puts ``WorkerResult``s (or an exception to raise) on ``results``."""
    keep_freed_memory()
    fetched: queue.Queue[tuple[WorkerTask, bytes | None, Any] | None] = queue.Queue(maxsize=read_threads)

    def pull() -> None:
        while True:
            item = tasks.get()
            if item is None:
                fetched.put(None)
                return
            task, reader = item
            data, problem = _read_one(reader, task, max_bytes)
            fetched.put((task, data, problem))

    for _ in range(read_threads):
        threading.Thread(target=pull, name="visiontune-pull", daemon=True).start()
    running = read_threads
    try:
        while running:
            item = fetched.get()
            if item is None:
                running -= 1
                continue
            task, data, problem = item
            if isinstance(problem, BaseException):
                results.put(problem)
                continue
            if problem is not None:
                results.put(WorkerResult(task.index, "", problem))
                continue
            assert data is not None
            if len(data) > max_bytes:
                results.put(WorkerResult(task.index, "", too_large(max(len(data), task.size), max_bytes)))
                continue
            digest = hashlib.sha256(data).hexdigest()
            if cache_filter is not None and not task.decode and cache_filter.may_have(digest):
                results.put(WorkerResult(task.index, digest, None))
                continue
            result = decode(data, settings)
            del data
            results.put(WorkerResult(task.index, digest, result))
    except BaseException as exc:  # a bug here: the caller raises it rather than wait forever
        results.put(exc)
        raise


@dataclass
class PullPool:
    """``workers`` processes converting the ``WorkerTask``s given to ``run``. A context manager: the
    processes start on entry and are stopped on exit (terminated if the block raised)."""

    context: multiprocessing.context.BaseContext
    workers: int
    settings: ImageSettings
    max_bytes: int
    cache_filter: CacheFilter | None = None
    read_threads: int = DEFAULT_READ_THREADS

    _processes: list[Any] = field(default_factory=list, init=False)

    def __enter__(self) -> PullPool:
        return self if self._processes else self.start()

    def start(self) -> PullPool:
        """Start the worker processes (``OSError`` and the like when this system cannot)."""
        self._tasks = self.context.Queue()
        self._results = self.context.Queue()
        self._processes = [
            self.context.Process(  # type: ignore[attr-defined]
                target=_worker_main,
                args=(self._tasks, self._results, self.settings, self.max_bytes, self.cache_filter, self.read_threads),
                name=f"visiontune-convert-{n}",
                daemon=True,
            )
            for n in range(self.workers)
        ]
        try:
            for process in self._processes:
                process.start()
        except BaseException:
            self._stop(graceful=False)
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop(graceful=exc[0] is None)

    def _stop(self, *, graceful: bool) -> None:
        started = [p for p in self._processes if p.pid is not None]
        if graceful:  # every result is in: a worker has only to see its end marks and exit
            for _ in range(len(started) * self.read_threads):
                self._tasks.put(None)
            deadline = time.monotonic() + _EXIT_SECONDS
            for process in started:
                process.join(timeout=max(0.0, deadline - time.monotonic()))
        for process in started:
            if process.is_alive():
                if graceful:
                    log.warning("worker process %s did not exit %.0f s after its last file; stopped", process.name,
                                _EXIT_SECONDS)  # fmt: skip
                process.terminate()
                process.join(timeout=5)
        for q in (self._tasks, self._results):
            q.cancel_join_thread()  # never block on a queue whose reader is gone
            q.close()

    def run(
        self,
        tasks: Iterable[WorkerTask],
        reader: ProcessReader,
        handle: Callable[[WorkerResult], WorkerTask | None],
        *,
        max_outstanding: int,
        max_bytes_outstanding: int,
        renew: Callable[[], ProcessReader] | None = None,
        renew_seconds: float = 900.0,
    ) -> None:
        """Send every task with ``reader`` (replaced by ``renew()`` every ``renew_seconds``: a SAS expires),
        at most ``max_outstanding`` tasks and ``max_bytes_outstanding`` source bytes without a result (one
        task alone may always go), and call ``handle`` with each result as it comes, in any order. ``handle``
        may return a task to send again (a cache hint that was wrong).
        Raises what a worker raised (``SourceChangedError``), or ``WorkerDied``."""
        current = reader
        made = time.monotonic()
        outstanding: dict[int, int] = {}  # task index -> its size

        def send(task: WorkerTask) -> None:
            nonlocal current, made
            if renew is not None and time.monotonic() - made > renew_seconds:
                current, made = renew(), time.monotonic()
            outstanding[task.index] = task.size
            self._tasks.put((task, current))

        def receive() -> None:
            while True:
                try:
                    got = self._results.get(timeout=_POLL_SECONDS)
                    break
                except queue.Empty:
                    dead = [p for p in self._processes if p.exitcode is not None]
                    if dead:
                        raise WorkerDied(f"worker process {dead[0].name} ended with exit code {dead[0].exitcode}") from None
            if isinstance(got, BaseException):
                raise got
            outstanding.pop(got.index, None)
            again = handle(got)
            if again is not None:
                send(again)

        for task in tasks:
            while outstanding and (
                len(outstanding) >= max_outstanding or sum(outstanding.values()) + task.size > max_bytes_outstanding
            ):
                receive()
            send(task)
        while outstanding:
            receive()


def read_threads_for(read_concurrency: int, workers: int) -> int:
    """Reader threads per worker for a source that allows ``read_concurrency`` reads at once overall."""
    return max(1, min(MAX_READ_THREADS, read_concurrency // max(1, workers) or DEFAULT_READ_THREADS))
