"""``convert_dataset``: an ImageFolder source in, fine-tuning JSONL + ``rejected.json`` + ``manifest.json``
out, streamed to an ``ArtifactSink``.

Pass 1 reads every file once (in worker processes when the source has local paths, otherwise the main
process reads and ships the bytes), hashes it and normalises the image; the small JPEGs are spilled to
a temporary file, so memory holds only one record per file and a bounded number of images in flight.
Pass 2 resolves duplicates and ambiguous labels, assigns splits, and writes the artifacts in a
deterministic order: the same input and options give byte-identical artifacts and the same version,
whatever the number of workers or the order of the source's listing.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, BinaryIO, Protocol

from shared.conversion.cache import ImageCache
from shared.conversion.estimate import estimate, split_tokens, tokens_per_label
from shared.conversion.examples import IMAGE_DETAIL, build_prompt, example_line
from shared.conversion.images import (
    BACKGROUND,
    DEFAULT_IMAGE_MEMORY_BUDGET,
    DEFAULT_MAX_ASPECT_RATIO,
    DEFAULT_MAX_FILE_BYTES,
    DEFAULT_MAX_PIXELS,
    DEFAULT_MIN_SIDE,
    DRAFT_TOLERANCE,
    ImageResult,
    ImageSettings,
    normalise_image,
)
from shared.conversion.reading import read_ahead
from shared.conversion.sources import DatasetSource, SourceEntry, ignored_reason, read_regular_file
from shared.conversion.splits import (
    LayoutError,
    ambiguous_layout,
    detect_split_layout,
    hash_split,
    line_order_key,
    normalise_ratios,
    place,
)
from shared.errors import VisiontuneError
from shared.layout import MANIFEST_NAME, READY_MARKER, REJECTED_NAME, SPLITS

if TYPE_CHECKING:
    import multiprocessing.context

CONVERTER_FORMAT = 2  # bump when the output of the same input and options changes
MAX_EXAMPLES_PER_FILE = 50_000  # Azure: examples with images per training file
MIN_TRAINING_EXAMPLES = 10
MIN_LABELS = 2
FILE_LIMIT_BYTES = 512 * 1024 * 1024  # Files API upload limit
QUOTA_BYTES = 1024 * 1024 * 1024  # fine-tuning files per resource
NEAR_LIMIT = 0.8  # warn above this share of a limit
FEW_EXAMPLES_PER_LABEL = 10
_IN_FLIGHT_PER_WORKER = 3  # batches queued per worker
_BATCH_FILES = 8  # files per batch sent to a worker ...
_BATCH_BYTES = 4 * 1024 * 1024  # ... or fewer, once their source bytes reach this
# Source bytes the main process may have read and shipped to workers but not yet seen converted (a zip
# entry may be 100 MB: without this, 3 batches per worker of such entries would all be held at once).
MAX_BYTES_IN_FLIGHT = 64 * 1024 * 1024

log = logging.getLogger(__name__)


class DatasetError(VisiontuneError, ValueError):
    """The dataset as a whole cannot be converted (too few examples or labels, a label without training
    examples, ...). The message says what to change."""


class ArtifactSink(Protocol):
    """Where the artifacts go. ``commit`` is called once, last, after every artifact is closed."""

    def open(self, name: str) -> contextlib.AbstractContextManager[BinaryIO]: ...

    def commit(self, version: str) -> None: ...


class FolderSink:
    """Writes the artifacts to a temporary folder next to ``out_dir`` and moves them into ``out_dir``
    on ``commit`` (``manifest.json`` last), so ``out_dir`` never holds a half-written conversion.
    ``abort`` removes the temporary folder (``convert_dataset`` calls it when it fails)."""

    def __init__(self, out_dir: Path) -> None:
        self.out_dir = Path(out_dir)
        self._staging: Path | None = None
        self._written: list[str] = []

    def _staging_dir(self) -> Path:
        if self._staging is None:
            self.out_dir.parent.mkdir(parents=True, exist_ok=True)
            self._staging = Path(tempfile.mkdtemp(prefix=f".{self.out_dir.name}.partial-", dir=self.out_dir.parent))
        return self._staging

    @contextlib.contextmanager
    def open(self, name: str) -> Iterator[BinaryIO]:
        path = self._staging_dir() / name
        with open(path, "wb") as handle:
            yield handle
        if name not in self._written:
            self._written.append(name)

    def commit(self, version: str) -> None:
        staging = self._staging_dir()
        self.out_dir.mkdir(parents=True, exist_ok=True)
        (self.out_dir / MANIFEST_NAME).unlink(missing_ok=True)  # never an old manifest beside new data
        names = [n for n in self._written if n != MANIFEST_NAME] + [n for n in self._written if n == MANIFEST_NAME]
        for name in names:
            os.replace(staging / name, self.out_dir / name)
        shutil.rmtree(staging, ignore_errors=True)
        self._staging = None

    def abort(self) -> None:
        if self._staging is not None:
            shutil.rmtree(self._staging, ignore_errors=True)
            self._staging = None


@dataclass
class ConvertOptions:
    """Conversion settings. All but ``workers`` are part of the dataset version."""

    max_side: int = 512
    quality: int = 85
    split: tuple[float, float, float] = (0.8, 0.1, 0.1)  # ignored when the dataset gives its splits
    seed: int = 0
    workers: int = 0  # 0 = one per core; 1 = in this process
    prompt: str | None = None  # None = the default classifier prompt; "{categories}" = the label lines
    model: str = "gpt-4.1-2025-04-14"
    epochs: int = 2  # for the estimate
    price_per_1m_training_tokens: float = 25.0
    max_pixels: int = DEFAULT_MAX_PIXELS
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES
    min_side: int = DEFAULT_MIN_SIDE  # images with a shorter side are rejected (too_small)
    max_aspect_ratio: float = DEFAULT_MAX_ASPECT_RATIO  # longer/shorter side above this: rejected
    memory_budget: int = DEFAULT_IMAGE_MEMORY_BUDGET  # bytes per image: file + decoded pixels

    def validated(self) -> ConvertOptions:
        """A copy with the split normalised; ``ValueError`` naming the bad option."""
        if not 16 <= self.max_side <= 2048:
            raise ValueError(f"max_side must be 16..2048 pixels, got {self.max_side}")
        if not 1 <= self.quality <= 95:
            raise ValueError(f"quality must be 1..95, got {self.quality}")
        if self.workers < 0:
            raise ValueError(f"workers must be >= 0 (0 = all cores), got {self.workers}")
        if self.epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {self.epochs}")
        if self.memory_budget < 16 * 2**20:
            raise ValueError(f"memory_budget must be at least 16 MiB, got {self.memory_budget}")
        if self.min_side < 1:
            raise ValueError(f"min_side must be >= 1 pixel, got {self.min_side}")
        if not self.max_aspect_ratio >= 1:  # also refuses NaN
            raise ValueError(f"max_aspect_ratio must be >= 1, got {self.max_aspect_ratio}")
        if self.price_per_1m_training_tokens < 0:
            raise ValueError("price_per_1m_training_tokens must be >= 0")
        ratios = normalise_ratios(tuple(float(r) for r in self.split))  # type: ignore[arg-type]
        return ConvertOptions(**{**asdict(self), "split": ratios})


def image_settings(options: ConvertOptions) -> ImageSettings:
    """The per-image settings of a conversion (what a cached image must have been converted with)."""
    return ImageSettings(
        max_side=options.max_side,
        quality=options.quality,
        max_pixels=options.max_pixels,
        min_side=options.min_side,
        max_aspect_ratio=options.max_aspect_ratio,
        memory_budget=options.memory_budget,
    )


@dataclass
class ConversionResult:
    """``manifest`` is exactly what ``manifest.json`` holds; ``rejected`` exactly ``rejected.json``.
    ``stats`` holds run figures that are not part of the output (timings, workers)."""

    version: str
    manifest: dict[str, Any]
    rejected: list[dict[str, str]]
    stats: dict[str, Any] = field(default_factory=dict)


@dataclass
class _Record:
    index: int
    path: str
    label: str
    given_split: str | None
    size: int
    sha256: str = ""
    code: str | None = None
    reason: str | None = None
    offset: int = 0
    length: int = 0
    split: str | None = None
    etag: str | None = None


# --------------------------------------------------------------------------------------------------
# Pass 1: read, hash, normalise (possibly in worker processes)

_Task = tuple[int, "str | None", "bytes | None"]  # record index, local path or the file's bytes


def _process(task: _Task, settings: ImageSettings, max_bytes: int) -> tuple[int, str, ImageResult]:
    """Read (if given a local path), hash and normalise one file."""
    index, local_path, data = task
    if data is None:
        try:
            data = read_regular_file(local_path, max_bytes)  # type: ignore[arg-type]
        except OSError as exc:
            return index, "", ImageResult(code="unreadable", reason=f"cannot read the file: {exc.strerror or exc}")
        if len(data) > max_bytes:
            return index, "", _too_large(len(data), max_bytes)
    digest = hashlib.sha256(data).hexdigest()
    try:
        return index, digest, normalise_image(data, settings)
    except Exception as exc:  # a decoder bug on one odd file must not stop the rest
        return index, digest, ImageResult(code="corrupt", reason=f"cannot decode the image: {type(exc).__name__}: {exc}")


def _process_batch(batch: list[_Task], settings: ImageSettings, max_bytes: int) -> list[tuple[int, str, ImageResult]]:
    """Worker entry point: a few files per call, so small images do not drown in messaging overhead."""
    return [_process(task, settings, max_bytes) for task in batch]


def _too_large(size: int, max_bytes: int) -> ImageResult:
    return ImageResult(
        code="too_large",
        reason=f"file is {size / 1e6:.1f} MB, above the {max_bytes / 1e6:.0f} MB limit per source image; "
        "save a smaller copy",
    )


def _worker_count(requested: int, tasks: int) -> int:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(requested or cores, tasks or 1))


def _mp_context() -> multiprocessing.context.BaseContext:
    import multiprocessing

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


@dataclass
class _PassOne:
    workers: int
    converted: int = 0
    reused: int = 0


def _run_pass_one(
    source: DatasetSource,
    records: list[_Record],
    settings: ImageSettings,
    options: ConvertOptions,
    spill: IO[bytes],
    progress: Callable[[int, int], None] | None,
    cache: ImageCache | None = None,
    only: list[_Record] | None = None,
) -> _PassOne:
    """Process every record (or the records in ``only``). Worker processes read local files themselves; otherwise reader threads
    (``source.read_concurrency`` of them) read, hash and look each file up in ``cache`` ahead of the
    decoders, and only cache misses are decoded."""
    local_path = getattr(source, "local_path", None)
    workers_read = local_path is not None and cache is None
    read_concurrency = max(1, int(getattr(source, "read_concurrency", 1) or 1))
    todo = [r for r in (records if only is None else only) if r.code is None]
    total = len(todo)
    done = 0
    outcome = _PassOne(workers=1)
    if progress:
        progress(0, total)

    def advance() -> None:
        nonlocal done
        done += 1
        if progress:
            progress(done, total)

    def fetch(record: _Record) -> _Fetched:  # on a reader thread
        if cache is not None and record.etag is not None:
            # unchanged since a cached version (same path, size and ETag): its digest is known, skip the read
            known = cache.known_digest(record.path, record.size, record.etag)
            if known is not None:
                jpeg = cache.get(cache.key(known))
                if jpeg is not None:
                    return _Fetched(digest=known, jpeg=jpeg)
        try:
            data = source.read(record.path)
        except Exception as exc:  # one unreadable file must not stop the rest
            return _Fetched(error=ImageResult(code="unreadable", reason=f"cannot read the file: {type(exc).__name__}: {exc}"))
        if len(data) > options.max_file_bytes:
            return _Fetched(error=_too_large(len(data), options.max_file_bytes))
        digest = hashlib.sha256(data).hexdigest()
        if cache is not None:
            jpeg = cache.get(cache.key(digest))
            if jpeg is not None:
                return _Fetched(digest=digest, jpeg=jpeg)
        return _Fetched(digest=digest, data=data)

    def tasks() -> Iterator[_Task]:
        if workers_read:
            for record in todo:
                yield record.index, str(local_path(record.path)), None  # type: ignore[misc]
            return
        for record, fetched in read_ahead(todo, fetch, concurrency=read_concurrency, size=lambda r: r.size):
            if fetched.error is not None:
                record.code, record.reason = fetched.error.code, fetched.error.reason
                advance()
            elif fetched.jpeg is not None:
                record.sha256 = fetched.digest
                record.offset, record.length = spill.tell(), len(fetched.jpeg)
                spill.write(fetched.jpeg)
                outcome.reused += 1
                advance()
            else:
                yield record.index, None, fetched.data

    def batches() -> Iterator[list[_Task]]:
        batch: list[_Task] = []
        batch_bytes = 0
        for task in tasks():
            batch.append(task)
            batch_bytes += records[task[0]].size
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

    workers = _worker_count(options.workers, total)
    pool = None
    if workers > 1:
        try:
            pool = ProcessPoolExecutor(max_workers=workers, mp_context=_mp_context())
        except (OSError, ImportError, NotImplementedError) as exc:  # no working semaphores (e.g. no /dev/shm)
            log.warning("converting in one process: cannot start worker processes (%s)", exc)
    max_bytes = options.max_file_bytes
    if pool is None:
        for task in tasks():
            handle(*_process(task, settings, max_bytes))
        return outcome

    limit = workers * _IN_FLIGHT_PER_WORKER  # bounds the memory held by images in flight
    # source bytes sent with each batch (0 when workers read the files)
    shipped: dict[Future[list[tuple[int, str, ImageResult]]], int] = {}
    try:
        with pool:
            pending: set[Future[list[tuple[int, str, ImageResult]]]] = set()
            for batch in batches():
                batch_bytes = sum(len(data) for _, _, data in batch if data is not None)
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
        todo = [r for r in todo if not r.sha256 and r.code is None]
        for task in tasks():
            handle(*_process(task, settings, max_bytes))
        return outcome
    outcome.workers = workers
    return outcome


# --------------------------------------------------------------------------------------------------
# Pass 2: decide, then write

def _resolve_duplicates(records: list[_Record]) -> None:
    """Same bytes twice under one label: keep the first (train before validation before test, then by
    path), report the rest. Same bytes under two labels: report every copy as ambiguous."""
    groups: dict[str, list[_Record]] = defaultdict(list)
    for record in records:
        if record.code is None and record.sha256:
            groups[record.sha256].append(record)
    for copies in groups.values():
        if len(copies) < 2:
            continue
        copies.sort(key=lambda r: (SPLITS.index(r.given_split) if r.given_split else 0, r.path))
        labels = sorted({r.label for r in copies})
        if len(labels) > 1:
            where = "; ".join(f"{r.label!r} ({r.path})" for r in copies)
            for record in copies:
                record.code = "ambiguous_label"
                record.reason = (
                    f"the same image (identical bytes) is filed under {len(labels)} labels: {where}; "
                    "not used for training - keep it under one label only"
                )
        else:
            for record in copies[1:]:
                record.code = "duplicate"
                record.reason = f"exact duplicate (identical bytes) of {copies[0].path}, which is used instead"


def _source_digest(records: list[_Record]) -> str:
    digest = hashlib.sha256()
    for record in sorted(records, key=lambda r: r.path):
        digest.update(f"{record.path}\t{record.size}\t{record.sha256 or '-'}\n".encode())
    return digest.hexdigest()


def _dump(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def convert_dataset(
    source: DatasetSource,
    sink: ArtifactSink,
    options: ConvertOptions,
    progress: Callable[[int, int], None] | None = None,
    cache: ImageCache | None = None,
    live_stats: dict[str, Any] | None = None,
) -> ConversionResult:
    """Convert an ImageFolder ``source`` into ``train.jsonl``, ``validation.jsonl``, ``test.jsonl``,
    ``rejected.json`` and ``manifest.json`` (written in that order, then ``sink.commit(version)``).

    One bad file never stops the rest: it lands in ``rejected.json`` with a code and a reason.
    ``DatasetError`` when the dataset as a whole cannot train (fewer than 2 labels or 10 training
    examples, a label without training examples); ``ValueError`` for bad options. ``progress(done,
    total)`` is called from this thread as files are processed. On any failure the sink's ``abort()``
    (if it has one) is called and nothing is committed.

    ``cache`` (an ``ImageCache`` built with this conversion's image settings): images found in it are
    reused, the others are converted and added; the artifacts are byte-identical either way. Its new
    pack and the version's refs are written just before the artifacts are committed; collecting old
    entries is the caller's job (``cache.collect``).

    ``live_stats``, if given, receives ``images_converted``, ``images_reused`` and ``files_rejected`` as soon
    as they are known, before ``sink.commit`` (so a sink's publish hook can record them).
    """
    try:
        return _convert(source, sink, options.validated(), progress, cache, live_stats)
    except BaseException:
        if cache is not None:
            cache.abort()
        abort = getattr(sink, "abort", None)
        if callable(abort):
            abort()
        raise


@dataclass
class Prepared:
    """A source's listing, placed and checked before any file is read: one ``_Record`` per candidate
    image (``index`` = its position), the labels found, and what the listing alone rejects or ignores."""

    records: list[_Record]
    found_labels: list[str]
    splits_given: bool
    layout_rejects: list[dict[str, str]]
    ignored: list[str]
    source_files: int
    source_bytes: int

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Prepared:
        return cls(**{**data, "records": [_Record(**r) for r in data["records"]]})


def prepare_records(source: DatasetSource, options: ConvertOptions) -> Prepared:
    """List ``source`` and place each entry (label, given split); ``DatasetError`` when the listing alone
    shows the dataset cannot train (ambiguous layout, too few labels or files)."""
    entries: dict[str, SourceEntry] = {}
    layout_rejects: list[dict[str, str]] = []
    unusable: list[SourceEntry] = []  # entries the source already refused; never read
    for entry in source.entries():
        if entry.problem is not None:
            unusable.append(entry)
            layout_rejects.append({"path": entry.path, "code": entry.problem[0], "reason": entry.problem[1]})
        elif entry.path in entries:  # a source that lists one name twice: report the second
            unusable.append(entry)
            layout_rejects.append(
                {"path": entry.path, "code": "duplicate_name", "reason": "listed twice by the source; the first is used"}
            )
        else:
            entries[entry.path] = entry
    ordered = [entries[p] for p in sorted(entries)]

    ignored: list[str] = []
    candidates: list[SourceEntry] = []
    for entry in ordered:
        if ignored_reason(entry.path) is not None or entry.path == READY_MARKER:
            ignored.append(entry.path)
        else:
            candidates.append(entry)
    splits_given = detect_split_layout(e.path for e in candidates)
    ambiguity = ambiguous_layout(e.path for e in candidates) if splits_given else None
    if ambiguity is not None:
        raise DatasetError(ambiguity)

    records: list[_Record] = []
    for entry in candidates:
        try:
            placement = place(entry.path, splits_given)
        except LayoutError as exc:
            layout_rejects.append({"path": entry.path, "code": "outside_layout", "reason": str(exc)})
            continue
        record = _Record(len(records), entry.path, placement.label, placement.split, entry.size, etag=entry.etag)
        if entry.size > options.max_file_bytes:
            too_large = _too_large(entry.size, options.max_file_bytes)
            record.code, record.reason = too_large.code, too_large.reason
        records.append(record)

    layout_hint = (
        "expected <split>/<label>/<image> with split in train, validation, test"
        if splits_given
        else "expected <label>/<image> (or train/, validation/, test/ folders holding label folders)"
    )
    found_labels = sorted({r.label for r in records})
    if len(found_labels) < MIN_LABELS:
        raise DatasetError(
            f"found {len(found_labels)} label folder(s) ({', '.join(found_labels) or 'none'}) with files; "
            f"at least {MIN_LABELS} labels are needed ({layout_hint})"
        )
    if len(records) < MIN_TRAINING_EXAMPLES:
        raise DatasetError(
            f"found only {len(records)} image file(s); at least {MIN_TRAINING_EXAMPLES} training examples "
            f"are needed, and hundreds per label are better ({layout_hint})"
        )
    return Prepared(
        records=records,
        found_labels=found_labels,
        splits_given=splits_given,
        layout_rejects=layout_rejects,
        ignored=ignored,
        source_files=len(ordered) + len(unusable),
        source_bytes=sum(e.size for e in ordered) + sum(e.size for e in unusable),
    )


def _convert(
    source: DatasetSource,
    sink: ArtifactSink,
    options: ConvertOptions,
    progress: Callable[[int, int], None] | None,
    cache: ImageCache | None,
    live_stats: dict[str, Any] | None = None,
) -> ConversionResult:
    started = time.perf_counter()
    if cache is not None:
        cache.load()
    prepared = prepare_records(source, options)
    records = prepared.records
    settings = image_settings(options)
    with tempfile.TemporaryFile(prefix="visiontune-images-") as spill:
        pass_one = _run_pass_one(source, records, settings, options, spill, progress, cache)
        processed_at = time.perf_counter()
        by_split, labels = decide(prepared, options)
        prompt = build_prompt(labels, options.prompt)

        label_tokens = tokens_per_label(prompt, labels, options.model)
        splits_manifest: dict[str, Any] = {}
        for split in SPLITS:
            members = by_split[split]
            written = 0
            with sink.open(f"{split}.jsonl") as out:
                for record in members:
                    spill.seek(record.offset)
                    line = example_line(prompt, record.label, spill.read(record.length))
                    out.write(line)
                    written += len(line)
            splits_manifest[split] = split_summary(members, labels, label_tokens, written)

    version, manifest, rejected = describe(prepared, options, labels, prompt, splits_manifest)
    with sink.open(REJECTED_NAME) as out:
        out.write(_dump(rejected))
    if cache is not None:
        cache.finish(
            version,
            (cache.key(r.sha256) for r in records if r.code is None),
            {r.path: (r.size, r.etag, r.sha256) for r in records if r.code is None and r.etag is not None},
        )
    if live_stats is not None:
        live_stats.update(
            images_converted=pass_one.converted, images_reused=pass_one.reused, files_rejected=len(rejected)
        )
    with sink.open(MANIFEST_NAME) as out:
        out.write(_dump(manifest))
    sink.commit(version)

    finished = time.perf_counter()
    processed = sum(1 for r in records if r.sha256)
    return ConversionResult(
        version=version,
        manifest=manifest,
        rejected=rejected,
        stats={
            "workers": pass_one.workers,
            "files_processed": processed,
            "images_converted": pass_one.converted,
            "images_reused": pass_one.reused,
            "files_rejected": len(rejected),
            "seconds": round(finished - started, 3),
            "seconds_processing": round(processed_at - started, 3),
            "images_per_second": round(processed / max(processed_at - started, 1e-9), 2),
        },
    )


def decide(prepared: Prepared, options: ConvertOptions) -> tuple[dict[str, list[_Record]], list[str]]:
    """Pass 2's decisions once every record has its digest or rejection: duplicates, splits, line order,
    Azure's per-file cap. Returns the members of each split in line order and the labels.
    ``DatasetError`` when the result cannot train."""
    records = prepared.records
    _resolve_duplicates(records)
    for record in records:
        if record.code is None:
            record.split = record.given_split or hash_split(record.path, options.split, options.seed)
    by_split: dict[str, list[_Record]] = {s: [] for s in SPLITS}
    for record in records:
        if record.code is None:
            by_split[record.split].append(record)  # type: ignore[index]
    for split, members in by_split.items():
        members.sort(key=lambda r: line_order_key(r.path, options.seed))
        for record in members[MAX_EXAMPLES_PER_FILE:]:
            record.code = "too_many_examples"
            record.reason = (
                f"the {split} split already holds {MAX_EXAMPLES_PER_FILE:,} examples, Azure's limit per file"
            )
        del members[MAX_EXAMPLES_PER_FILE:]

    labels = sorted({r.label for members in by_split.values() for r in members})
    _check_trainable(records, by_split, prepared.found_labels, labels)
    return by_split, labels


def split_summary(members: list[_Record], labels: list[str], label_tokens: Any, written: int) -> dict[str, Any]:
    """The manifest's entry for one split whose JSONL file holds ``written`` bytes."""
    per_label = Counter(r.label for r in members)
    text_tokens, image_tokens = split_tokens(per_label, label_tokens)
    return {
        "examples": len(members),
        "per_label": {label: per_label.get(label, 0) for label in labels},
        "files": [r.path for r in members],
        "bytes": written,
        "text_tokens": text_tokens,
        "image_tokens": image_tokens,
    }


def describe(
    prepared: Prepared, options: ConvertOptions, labels: list[str], prompt: str, splits_manifest: dict[str, Any]
) -> tuple[str, dict[str, Any], list[dict[str, str]]]:
    """The version, ``manifest.json`` and ``rejected.json`` of a decided conversion."""
    records = prepared.records
    splits_given = prepared.splits_given
    converter_settings = {
            "name": "visiontune",
            "format": CONVERTER_FORMAT,
            "max_side": options.max_side,
            "quality": options.quality,
            "max_pixels": options.max_pixels,
            "max_file_bytes": options.max_file_bytes,
            "min_side": options.min_side,
            "max_aspect_ratio": options.max_aspect_ratio,
            "memory_budget": options.memory_budget,
            "draft_tolerance": DRAFT_TOLERANCE,
            "split": "given" if splits_given else list(options.split),
            "seed": options.seed,
            "prompt_template": options.prompt,
            "model": options.model,
            "epochs": options.epochs,
            "price_per_1m_training_tokens": options.price_per_1m_training_tokens,
        }
    source_digest = _source_digest(records)
    version = hashlib.sha256(_dump({"source": source_digest, "converter": converter_settings})).hexdigest()[:16]
    # A rejected record always has its reason with its code.
    image_rejects = [{"path": r.path, "code": r.code, "reason": r.reason or ""} for r in records if r.code]
    rejected = sorted(prepared.layout_rejects + image_rejects, key=lambda item: item["path"])
    train = splits_manifest["train"]
    manifest: dict[str, Any] = {
        "version": version,
        "labels": labels,
        "prompt": prompt,
        "image": {
            "format": "jpeg",
            "detail": IMAGE_DETAIL,
            "max_side": options.max_side,
            "quality": options.quality,
            "draft_tolerance": DRAFT_TOLERANCE,
            "background": "#{:02x}{:02x}{:02x}".format(*BACKGROUND),
            "max_pixels": options.max_pixels,
        },
        "split": {
            "given": splits_given,
            "method": "folders" if splits_given else "hash of the relative path",
            "ratios": None if splits_given else list(options.split),
            "seed": options.seed,
        },
        "splits": splits_manifest,
        "examples": sum(s["examples"] for s in splits_manifest.values()),
        "rejected": len(rejected),
        "rejected_by_code": dict(sorted(Counter(r["code"] for r in rejected).items())),
        "ignored": prepared.ignored,
        "warnings": _warnings(splits_manifest, labels),
        "estimate": estimate(
            train["text_tokens"],
            train["image_tokens"],
            epochs=options.epochs,
            price_per_1m=options.price_per_1m_training_tokens,
            model=options.model,
        ),
        "source": {
            "files": prepared.source_files,
            "bytes": prepared.source_bytes,
            "digest": source_digest,
        },
        "converter": {**converter_settings, "pillow": _pillow_version()},
    }
    return version, manifest, rejected


def _check_trainable(
    records: list[_Record], by_split: dict[str, list[_Record]], found_labels: list[str], labels: list[str]
) -> None:
    train_counts = Counter(r.label for r in by_split["train"])
    problems = []
    for label in found_labels:
        if train_counts.get(label):
            continue
        mine = [r for r in records if r.label == label]
        kept = Counter(r.split for r in mine if r.code is None)
        rejected = Counter(r.code for r in mine if r.code)
        detail = []
        if kept:
            detail.append(", ".join(f"{n} in {s}" for s, n in sorted(kept.items())))
        if rejected:
            detail.append("rejected: " + ", ".join(f"{n} {c}" for c, n in sorted(rejected.items())))
        problems.append(f"{label!r} ({'; '.join(detail) or 'no files'})")
    if problems:
        raise DatasetError(
            "every label needs training examples; none for " + ", ".join(problems)
            + ". Add more images to these labels (see rejected files), or give the splits explicitly "
            "with train/<label>/ folders."
        )
    if len(labels) < MIN_LABELS:
        raise DatasetError(f"only {len(labels)} label(s) have usable images; at least {MIN_LABELS} are needed")
    if sum(train_counts.values()) < MIN_TRAINING_EXAMPLES:
        raise DatasetError(
            f"only {sum(train_counts.values())} usable training example(s); at least {MIN_TRAINING_EXAMPLES} "
            "are needed (hundreds per label are better): add images or fix the rejected ones"
        )


def _warnings(splits: dict[str, Any], labels: list[str]) -> list[str]:
    warnings: list[str] = []
    shrink = "lower --quality or --max-side, or train on fewer images"
    total = 0
    for split in SPLITS:
        size = splits[split]["bytes"]
        total += size
        if size >= FILE_LIMIT_BYTES:
            warnings.append(
                f"{split}.jsonl is {size / 2**20:.0f} MiB, above the 512 MiB Files API limit: upload it with the "
                f"Uploads API, or {shrink}"
            )
        elif size >= NEAR_LIMIT * FILE_LIMIT_BYTES:
            warnings.append(f"{split}.jsonl is {size / 2**20:.0f} MiB, near the 512 MiB Files API limit: {shrink}")
    if total >= NEAR_LIMIT * QUOTA_BYTES:
        warnings.append(
            f"the JSONL files total {total / 2**20:.0f} MiB, near the resource's 1 GiB fine-tuning file quota: "
            f"{shrink}, and delete old training files"
        )
    if splits["validation"]["examples"] == 0:
        warnings.append("validation.jsonl is empty: the job will run without a validation file")
    if splits["test"]["examples"] == 0:
        warnings.append("test.jsonl is empty: the model cannot be evaluated on held-out images")
    few = [label for label in labels if splits["train"]["per_label"][label] < FEW_EXAMPLES_PER_LABEL]
    if few:
        warnings.append(
            f"{len(few)} label(s) have fewer than {FEW_EXAMPLES_PER_LABEL} training examples "
            f"({', '.join(few[:10])}{', ...' if len(few) > 10 else ''}): hundreds per label are better"
        )
    for split in ("validation", "test"):
        if splits[split]["examples"]:
            missing = [label for label in labels if not splits[split]["per_label"][label]]
            if missing:
                warnings.append(
                    f"{len(missing)} label(s) have no {split} examples ({', '.join(missing[:10])}"
                    f"{', ...' if len(missing) > 10 else ''})"
                )
    return warnings


def _pillow_version() -> str:
    import PIL

    return PIL.__version__
