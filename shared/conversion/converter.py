"""``convert_dataset``: an ImageFolder source in, fine-tuning JSONL + ``rejected.json`` + ``manifest.json``
out, streamed to an ``ArtifactSink``.

Pass 1 (``processing``) reads every file once (in worker processes when the source has local paths, otherwise the main
process reads and ships the bytes), hashes it and normalises the image; the small JPEGs are spilled to
a temporary file, so memory holds only one record per file and a bounded number of images in flight.
Pass 2 (``decisions``) resolves duplicates and ambiguous labels, assigns splits, and writes the artifacts in a
deterministic order: the same input and options give byte-identical artifacts and the same version,
whatever the number of workers or the order of the source's listing.
"""

from __future__ import annotations

import logging
import os
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import IO, Any

from shared.conversion.cache import ImageCache
from shared.conversion.decisions import decide
from shared.conversion.estimate import tokens_per_label
from shared.conversion.examples import build_prompt, example_line
from shared.conversion.images import ImageSettings
from shared.conversion.manifest import canonical_json, describe, identify, split_summary
from shared.conversion.options import ConvertOptions, image_settings
from shared.conversion.processing import run_pass_one, spill_cached
from shared.conversion.records import Record, prepare_records
from shared.conversion.reuse import (
    Fresh,
    PreviousLines,
    PublishedLine,
    Reused,
    find_previous_lines,
    line_id,
    plan_split,
    prompt_digest,
    record_lines,
    reused_lines,
)
from shared.conversion.sinks import ArtifactSink, AssemblingSink
from shared.conversion.sources import DatasetSource
from shared.layout import MANIFEST_NAME, REJECTED_NAME, SPLITS

log = logging.getLogger(__name__)

# Reusing lines: a plan of more steps than this is written line by line instead (Azure allows 50,000 blocks
# per blob, and a step is one block or more). New lines go to the sink one by one: it groups them in blocks.
MAX_ASSEMBLED_STEPS = 20_000


@dataclass
class ConversionResult:
    """``manifest`` is exactly what ``manifest.json`` holds; ``rejected`` exactly ``rejected.json``.
    ``stats`` holds run figures that are not part of the output (timings, workers)."""

    version: str
    manifest: dict[str, Any]
    rejected: list[dict[str, str]]
    stats: dict[str, Any] = field(default_factory=dict)


def convert_dataset(
    source: DatasetSource,
    sink: ArtifactSink,
    options: ConvertOptions,
    progress: Callable[[int, int], None] | None = None,
    cache: ImageCache | None = None,
    live_stats: dict[str, Any] | None = None,
) -> ConversionResult:
    """Convert an ImageFolder ``source`` into ``train.jsonl``, ``validation.jsonl``, ``test.jsonl``,
    ``rejected.json`` and ``manifest.json``, the manifest last, then ``sink.commit(version)``. A sink that
    assembles (blob storage) gets the three JSONL files and ``rejected.json`` at once, on threads.

    One bad file never stops the rest: it lands in ``rejected.json`` with a code and a reason.
    ``DatasetError`` when the dataset as a whole cannot train (fewer than 2 labels or 10 training
    examples, a label without training examples); ``ValueError`` for bad options. ``progress(done,
    total)`` is called from this thread as files are processed. On any failure the sink's ``abort()``
    (if it has one) is called and nothing is committed.

    ``cache`` (an ``ImageCache`` built with this conversion's image settings): images found in it are
    reused, the others are converted and added; the artifacts are byte-identical either way. Its new
    pack is sealed while the JSONL is written, the version's refs and line record just before the
    artifacts are committed (a failure in between leaves a sealed pack no version refers to, which
    ``cache.collect`` deletes after its grace period); collecting old entries is the caller's job.

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


def _convert(
    source: DatasetSource,
    sink: ArtifactSink,
    options: ConvertOptions,
    progress: Callable[[int, int], None] | None,
    cache: ImageCache | None,
    live_stats: dict[str, Any] | None = None,
) -> ConversionResult:
    started = time.perf_counter()
    previous: PreviousLines | None = None
    if cache is None:
        prepared = prepare_records(source, options)
    else:
        # Independent round trips: the cache's documents and the previous version's line record are read
        # while the source is listed.
        def load_cache() -> PreviousLines | None:
            cache.load()
            return _previous_lines(cache, sink)

        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="visiontune-cache") as pool:
            loading = pool.submit(load_cache)
            prepared = prepare_records(source, options)
            previous = loading.result()
    records = prepared.records
    settings = image_settings(options)
    with tempfile.TemporaryFile(prefix="visiontune-images-") as spill:
        pass_one = run_pass_one(source, records, settings, options, spill, progress, cache, defer_cached=previous is not None)
        processed_at = time.perf_counter()
        by_split, labels = decide(prepared, options)
        identity = identify(prepared, options)  # known now: the version and rejections need no JSONL
        prompt = build_prompt(labels, options.prompt)
        writer = _SplitWriter(source, records, settings, options, spill, cache, sink, prompt)

        label_tokens = tokens_per_label(prompt, labels, options.model)
        splits_manifest: dict[str, Any] = {}
        lines: dict[str, list[tuple[str, int]]] = {}
        reused_lines = 0
        plans = [writer.plan(split, by_split[split], previous) for split in SPLITS]
        writer.spill_needed(plans)

        def write_side_documents() -> None:
            """``rejected.json`` and the cache's new pack index: neither depends on the JSONL."""
            with sink.open(REJECTED_NAME) as out:
                out.write(canonical_json(identity.rejected))
            if cache is not None:
                cache.seal()

        if isinstance(sink, AssemblingSink):  # blob storage: each write waits on round trips, not on CPU
            with ThreadPoolExecutor(max_workers=len(plans) + 1, thread_name_prefix="visiontune-split") as pool:
                side = pool.submit(write_side_documents)
                written = list(pool.map(writer.write, plans))
                side.result()
        else:
            written = [writer.write(plan) for plan in plans]
            write_side_documents()
        for split, (lengths, reused) in zip(SPLITS, written, strict=True):
            members = by_split[split]
            reused_lines += reused
            splits_manifest[split] = split_summary(members, labels, label_tokens, sum(lengths))
            lines[split] = list(zip(writer.line_ids(members), lengths, strict=True))

    version, manifest, rejected = describe(prepared, options, labels, prompt, splits_manifest, identity)

    def write_manifest() -> None:
        with sink.open(MANIFEST_NAME) as out:
            out.write(canonical_json(manifest))

    if cache is None:
        write_manifest()
    else:  # three independent documents, each one round trip on blob storage: at once
        with ThreadPoolExecutor(max_workers=3, thread_name_prefix="visiontune-finish") as pool:
            done = [
                pool.submit(
                    cache.finish,
                    version,
                    (cache.key(r.sha256) for r in records if r.code is None),
                    {r.path: (r.size, r.etag, r.sha256) for r in records if r.code is None and r.etag is not None},
                ),
                pool.submit(record_lines, cache.store, version, lines),
                pool.submit(write_manifest),
            ]
            for future in done:
                future.result()
    if live_stats is not None:
        live_stats.update(
            images_converted=pass_one.converted, images_reused=pass_one.reused, files_rejected=len(rejected)
        )
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
            "lines_reused": reused_lines,
            "files_rejected": len(rejected),
            "seconds": round(finished - started, 3),
            "seconds_processing": round(processed_at - started, 3),
            "images_per_second": round(processed / max(processed_at - started, 1e-9), 2),
        },
    )



def _previous_lines(cache: ImageCache | None, sink: ArtifactSink) -> PreviousLines | None:
    """The published version whose lines this conversion may copy, when the sink can copy them."""
    if cache is None or not isinstance(sink, AssemblingSink):
        return None
    versions = [version for version, _modified in cache.loaded_versions()]  # load() listed them just before
    return find_previous_lines(cache.store, versions, sink.published_artifact)


@dataclass
class _SplitPlan:
    """One split's JSONL: its members, and when lines of the previous version are reused, the steps."""

    split: str
    members: list[Record]
    steps: list[Reused | Fresh] | None = None
    reused: int = 0
    ids: list[str] = field(default_factory=list)
    table: dict[str, PublishedLine] | None = None
    base: str = ""
    version: str = ""


class _SplitWriter:
    """Writes one split's JSONL: from the previous version's lines where they can be reused (assembled
    by the sink), otherwise line by line from the spilled JPEGs."""

    def __init__(
        self,
        source: DatasetSource,
        records: list[Record],
        settings: ImageSettings,
        options: ConvertOptions,
        spill: IO[bytes],
        cache: ImageCache | None,
        sink: ArtifactSink,
        prompt: str,
    ) -> None:
        self.source, self.records, self.settings, self.options = source, records, settings, options
        self.spill, self.cache, self.sink, self.prompt = spill, cache, sink, prompt
        self._spill_lock = threading.Lock()
        self._prompt_sha = prompt_digest(prompt)

    def line_ids(self, members: list[Record]) -> list[str]:
        if self.cache is None:
            return ["" for _ in members]
        return [line_id(self._prompt_sha, r.label, self.cache.key(r.sha256)) for r in members]

    def plan(self, split: str, members: list[Record], previous: PreviousLines | None) -> _SplitPlan:
        """How ``<split>.jsonl`` will be written: from the previous version's lines where some can be
        reused (and the sink can assemble), otherwise line by line."""
        plan = _SplitPlan(split, members)
        if previous is not None and isinstance(self.sink, AssemblingSink):
            ids = self.line_ids(members)
            steps = plan_split(ids, previous.splits[split])
            reused = reused_lines(steps)
            if reused and len(steps) <= MAX_ASSEMBLED_STEPS:
                plan.steps, plan.reused, plan.ids = steps, reused, ids
                plan.table, plan.base, plan.version = previous.splits[split], previous.sources[split], previous.version
        return plan

    def spill_needed(self, plans: list[_SplitPlan]) -> None:
        """Read the cached images of every line that must be built (the fresh lines of an assembled split,
        every line of the others) into the spill file, in one pass."""
        needed: list[Record] = []
        for plan in plans:
            if plan.steps is None:
                needed.extend(plan.members)
            else:
                needed.extend(m for step in plan.steps if isinstance(step, Fresh) for m in plan.members[step.start : step.stop])
        self._spill(needed)

    def write(self, plan: _SplitPlan) -> tuple[list[int], int]:
        """Write ``<split>.jsonl`` as planned (``spill_needed`` first); returns each member's line length and
        how many lines were reused. Splits may be written at once, on threads."""
        name = f"{plan.split}.jsonl"
        if plan.steps is not None:
            try:
                return self._assemble(self.sink, name, plan), plan.reused  # type: ignore[arg-type]
            except Exception as error:  # noqa: BLE001 - e.g. the previous file deleted meanwhile: write it all
                log.warning("%s: cannot reuse the lines of version %s (%s); writing every line", name,
                            plan.version, error)  # fmt: skip
                self._spill(plan.members)
        lengths: list[int] = []
        with self.sink.open(name) as out:
            for record in plan.members:
                line = self._line(record)
                out.write(line)
                lengths.append(len(line))
        return lengths, 0

    def _line(self, record: Record) -> bytes:
        return example_line(self.prompt, record.label, self._read_spill(record.offset, record.length))

    def _read_spill(self, offset: int, length: int) -> bytes:
        if hasattr(os, "pread"):  # no shared file position: splits are written on threads
            return os.pread(self.spill.fileno(), length, offset)
        with self._spill_lock:
            self.spill.seek(offset)
            return self.spill.read(length)

    def _spill(self, members: list[Record]) -> None:
        with self._spill_lock:
            if self.cache is not None and any(r.in_cache for r in members):
                spill_cached(self.source, self.records, members, self.settings, self.options, self.spill, self.cache)
            self.spill.flush()  # ``pread`` reads the file, not this object's buffer

    def _assemble(self, sink: AssemblingSink, name: str, plan: _SplitPlan) -> list[int]:
        steps, members, ids, table = plan.steps, plan.members, plan.ids, plan.table
        assert steps is not None and table is not None
        lengths: list[int] = []

        def segments() -> Iterator[bytes | tuple[str, int, int]]:
            position = 0
            for step in steps:
                if isinstance(step, Reused):
                    yield plan.base, step.offset, step.length
                    lengths.extend(table[ids[position + k]].length for k in range(step.count))
                    position += step.count
                    continue
                for record in members[step.start : step.stop]:
                    line = self._line(record)
                    lengths.append(len(line))
                    yield line
                position = step.stop

        sink.assemble(name, segments(), base=plan.base)
        return lengths
