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

import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from shared.conversion.cache import ImageCache
from shared.conversion.decisions import decide
from shared.conversion.estimate import tokens_per_label
from shared.conversion.examples import build_prompt, example_line
from shared.conversion.manifest import canonical_json, describe, split_summary
from shared.conversion.options import ConvertOptions, image_settings
from shared.conversion.processing import run_pass_one
from shared.conversion.records import prepare_records
from shared.conversion.sinks import ArtifactSink
from shared.conversion.sources import DatasetSource
from shared.layout import MANIFEST_NAME, REJECTED_NAME, SPLITS


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
        pass_one = run_pass_one(source, records, settings, options, spill, progress, cache)
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
        out.write(canonical_json(rejected))
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
        out.write(canonical_json(manifest))
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

