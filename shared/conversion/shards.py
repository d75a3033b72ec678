"""Converting one drop in shards: the pure part of the fan-out (``shared.pipeline.fanout`` runs it on
blobs and queues).

The output must be byte-identical to ``convert_dataset`` in one process, so the shards are cut where the
output is decided by the listing alone: a file's split (its given folder or a hash of its path) and its
place among its split's lines (a hash of its path) do not depend on any image. Each shard takes one
contiguous run of lines of every split, converts those files (pass 1, with the same cache) and writes
their lines, in order, into one part per split. Only pass 2 needs every shard's results: duplicates
across shards, Azure's per-file cap, the labels. The assembler decides it from the shards' small
result documents (``decide``) and builds each split's file from ranges of the parts, so the file is
the concatenation of the same lines in the same order. The prompt on each line is built from the labels
found in the listing: ``decide`` refuses a conversion whose trained labels differ (a label without
training examples), so a published version always used those labels.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, Protocol

from shared.conversion.cache import ImageCache
from shared.conversion.decisions import decide
from shared.conversion.estimate import tokens_per_label
from shared.conversion.examples import build_prompt, example_line
from shared.conversion.manifest import describe, split_summary
from shared.conversion.options import ConvertOptions, image_settings
from shared.conversion.processing import run_pass_one
from shared.conversion.records import Prepared, Record
from shared.conversion.sources import DatasetSource
from shared.conversion.splits import hash_split, line_order_key
from shared.errors import VisiontuneError
from shared.layout import SPLITS

RESULT_FORMAT = 1


class ShardFileError(VisiontuneError, RuntimeError):
    """A shard failed while handling one file; ``path`` names it."""

    def __init__(self, path: str, error: BaseException) -> None:
        super().__init__(f"{path}: {type(error).__name__}: {error}")
        self.path = path


def part_name(shard: int, split: str) -> str:
    """The name of shard ``shard``'s part of ``<split>.jsonl``."""
    return f"part-{shard:05d}-{split}.jsonl"


def _split_of(record: Record, options: ConvertOptions) -> str:
    return record.given_split or hash_split(record.path, options.split, options.seed)


def assign_shards(prepared: Prepared, options: ConvertOptions, shards: int) -> list[list[int]]:
    """Record indexes of each shard: shard ``k`` holds the ``k``-th contiguous run of every split's lines
    (in line order), so the parts concatenate to the split's file."""
    if shards < 1:
        raise ValueError(f"shards must be >= 1, got {shards}")
    by_split: dict[str, list[Record]] = {s: [] for s in SPLITS}
    for record in prepared.records:
        if record.code is None:
            by_split[_split_of(record, options)].append(record)
    assignment: list[list[int]] = [[] for _ in range(shards)]
    for members in by_split.values():
        members.sort(key=lambda r: line_order_key(r.path, options.seed))
        for k in range(shards):
            start, stop = len(members) * k // shards, len(members) * (k + 1) // shards
            assignment[k].extend(r.index for r in members[start:stop])
    return assignment


class PartWriter(Protocol):
    """Where a shard writes its part of a split: a file locally, a block blob writer on Azure."""

    def write(self, data: bytes, /) -> object: ...


def convert_shard(
    source: DatasetSource,
    prepared: Prepared,
    indexes: list[int],
    options: ConvertOptions,
    open_part: Callable[[str], AbstractContextManager[PartWriter]],
    *,
    shard: int,
    cache: ImageCache | None = None,
    line: Callable[[str, Record, bytes], bytes] | None = None,
) -> dict[str, Any]:
    """Convert the records ``indexes`` of ``prepared`` and write their lines into ``open_part(part_name)``
    for each split, in line order. Returns the shard's result document (digest, rejection and place in
    its part of every record; images converted and reused). ``ShardFileError`` names the file being
    written when writing fails. ``line`` builds one line (tests inject failures through it)."""
    options = options.validated()
    make_line = line or (lambda prompt, record, jpeg: example_line(prompt, record.label, jpeg))
    records = prepared.records
    mine = [records[i] for i in indexes]
    prompt = build_prompt(prepared.found_labels, options.prompt)
    places: dict[int, tuple[int, int]] = {}
    with tempfile.TemporaryFile(prefix="visiontune-shard-") as spill:
        outcome = run_pass_one(source, records, image_settings(options), options, spill, None, cache, only=mine)
        for split in SPLITS:
            members = [r for r in mine if r.code is None and _split_of(r, options) == split]
            members.sort(key=lambda r: line_order_key(r.path, options.seed))
            written = 0
            with open_part(part_name(shard, split)) as out:
                for record in members:
                    try:
                        spill.seek(record.offset)
                        data = make_line(prompt, record, spill.read(record.length))
                        out.write(data)
                    except Exception as error:
                        raise ShardFileError(record.path, error) from error
                    places[record.index] = (written, len(data))
                    written += len(data)
    return {
        "format": RESULT_FORMAT,
        "shard": shard,
        "images_converted": outcome.converted,
        "images_reused": outcome.reused,
        "records": [
            [r.index, r.sha256, r.code, r.reason, *places.get(r.index, (0, 0))] for r in mine
        ],
    }


@dataclass
class Assembly:
    """What the assembler publishes: the version, ``manifest.json``, ``rejected.json``, each split's file
    as ``(shard, offset, length)`` ranges of the parts, and the cache references of the version."""

    version: str
    manifest: dict[str, Any]
    rejected: list[dict[str, str]]
    ranges: dict[str, list[tuple[int, int, int]]]
    cache_keys: list[str] = field(default_factory=list)
    sources: dict[str, tuple[int, str | None, str]] = field(default_factory=dict)
    images_converted: int = 0
    images_reused: int = 0


def assemble(
    prepared: Prepared, options: ConvertOptions, results: list[dict[str, Any]], cache: ImageCache | None = None
) -> Assembly:
    """Pass 2 over every shard's result: ``DatasetError`` when the drop cannot train, else the
    ``Assembly`` (byte-identical to ``convert_dataset``'s output for the same drop and options)."""
    options = options.validated()
    records = prepared.records
    where: dict[int, tuple[int, int, int]] = {}
    for result in results:
        if result.get("format") != RESULT_FORMAT:
            raise ValueError(f"shard {result.get('shard')}: result format {result.get('format')!r} is not {RESULT_FORMAT}")
        for index, sha256, code, reason, offset, length in result["records"]:
            record = records[index]
            record.sha256, record.code, record.reason = sha256, code, reason
            if code is None:
                where[index] = (int(result["shard"]), int(offset), int(length))
    by_split, labels = decide(prepared, options)
    if labels != prepared.found_labels:  # decide refuses this; a guard so the prompt on the lines is right
        raise ValueError(f"labels {labels} differ from the labels found {prepared.found_labels}")
    prompt = build_prompt(labels, options.prompt)
    label_tokens = tokens_per_label(prompt, labels, options.model)
    splits_manifest: dict[str, Any] = {}
    ranges: dict[str, list[tuple[int, int, int]]] = {}
    for split in SPLITS:
        merged: list[tuple[int, int, int]] = []
        for record in by_split[split]:
            shard, offset, length = where[record.index]
            if merged and merged[-1][0] == shard and merged[-1][1] + merged[-1][2] == offset:
                merged[-1] = (shard, merged[-1][1], merged[-1][2] + length)
            else:
                merged.append((shard, offset, length))
        ranges[split] = merged
        splits_manifest[split] = split_summary(by_split[split], labels, label_tokens, sum(r[2] for r in merged))
    version, manifest, rejected = describe(prepared, options, labels, prompt, splits_manifest)
    kept = [r for r in records if r.code is None]
    return Assembly(
        version=version,
        manifest=manifest,
        rejected=rejected,
        ranges=ranges,
        cache_keys=[cache.key(r.sha256) for r in kept] if cache is not None else [],
        sources={r.path: (r.size, r.etag, r.sha256) for r in kept if r.etag is not None},
        images_converted=sum(int(r.get("images_converted", 0)) for r in results),
        images_reused=sum(int(r.get("images_reused", 0)) for r in results),
    )

