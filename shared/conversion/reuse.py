"""Reusing the lines of the previous version's JSONL, so a dataset that grows by 5% rewrites 5% of its files.

A JSONL line is a pure function of the system prompt, the label and the converted JPEG
(``examples.example_line``), and a split's lines are ordered by a hash of each file's path
(``splits.line_order_key``), so when a few files are added, the lines of the files that were already there
keep their bytes and their relative order: the new file is the old one with a few lines inserted or removed.
``plan_split`` cuts the new file into ranges of the previous version's published file (copied server-side by
the sink's ``assemble``: Put Block From URL on Azure, no byte passes through the function) and the lines
that are new. The result is byte-identical to writing every line.

Each conversion that has an image cache records its lines in the cache's store, ``lines/<version>.json``:
``{"format": 1, "version": ..., "splits": {split: [[line_id, length], ...]}}`` in file order, where
``line_id`` digests the prompt, the label and the image's cache key (which covers the source bytes and every
image setting). A later conversion reuses the newest such version whose published files still exist with
the recorded sizes. Anything missing or different simply means the line is written again.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from shared.conversion.cache import CacheStore, lines_document
from shared.conversion.examples import IMAGE_DETAIL
from shared.layout import SPLITS

log = logging.getLogger(__name__)

LINES_FORMAT = 1


def prompt_digest(prompt: str) -> str:
    return hashlib.sha256(f"{IMAGE_DETAIL}\n{prompt}".encode()).hexdigest()


def line_id(prompt_sha: str, label: str, image_key: str) -> str:
    """The identity of one JSONL line: equal ids mean equal bytes (``image_key``: the cache key)."""
    return hashlib.sha256(f"{prompt_sha}\n{label}\n{image_key}".encode()).hexdigest()[:32]


@dataclass(frozen=True)
class PublishedLine:
    offset: int
    length: int


@dataclass
class PreviousLines:
    """The lines of a published version: ``splits[split][line_id]`` is where that line sits in the
    version's ``<split>.jsonl``, whose blob (or file) is ``sources[split]``."""

    version: str
    splits: dict[str, dict[str, PublishedLine]]
    sources: dict[str, str]


def record_lines(store: CacheStore, version: str, lines: dict[str, list[tuple[str, int]]]) -> None:
    """Write ``version``'s ``{split: [(line_id, length), ...]}`` (file order) for later conversions."""
    document = {"format": LINES_FORMAT, "version": version, "splits": {s: lines.get(s, []) for s in SPLITS}}
    store.write(lines_document(version), json.dumps(document, separators=(",", ":")).encode())


def find_previous_lines(
    store: CacheStore,
    versions: Sequence[str],
    published: Callable[[str, str], tuple[str, int] | None],
) -> PreviousLines | None:
    """The newest of ``versions`` (oldest first) whose line record exists and whose published files
    have the recorded sizes; ``published(version, "<split>.jsonl")`` gives ``(source, size)`` or None.
    None when there is none (every line is then written)."""
    for version in reversed(versions):
        try:
            raw = store.read(lines_document(version))
            if raw is None:
                continue
            document: Any = json.loads(raw)
            if not isinstance(document, dict) or document.get("format") != LINES_FORMAT:
                continue
            splits: dict[str, dict[str, PublishedLine]] = {}
            sources: dict[str, str] = {}
            usable = True
            names = [f"{split}.jsonl" for split in SPLITS]
            with ThreadPoolExecutor(max_workers=len(SPLITS)) as pool:  # one request each: at once
                found = dict(zip(SPLITS, pool.map(published, [version] * len(names), names), strict=True))
            for split in SPLITS:
                entries = document["splits"].get(split, [])
                where = found[split]
                size = sum(int(length) for _id, length in entries)
                if where is None or where[1] != size:
                    usable = False  # deleted, or not what the record says: do not trust any of it
                    break
                sources[split] = where[0]
                table: dict[str, PublishedLine] = {}
                offset = 0
                for identity, length in entries:
                    table.setdefault(str(identity), PublishedLine(offset, int(length)))
                    offset += int(length)
                splits[split] = table
            if usable:
                return PreviousLines(version=version, splits=splits, sources=sources)
        except Exception as error:  # noqa: BLE001 - a bad record costs a rewrite, never a conversion
            log.warning("image cache: ignoring the line record of %s: %s", version, error)
    return None


@dataclass(frozen=True)
class Reused:
    """Lines ``[offset, offset + length)`` of the previous version's file: ``count`` whole lines."""

    offset: int
    length: int
    count: int


@dataclass(frozen=True)
class Fresh:
    """Positions ``[start, stop)`` of the new split's members, whose lines are written."""

    start: int
    stop: int


def plan_split(ids: Sequence[str], previous: dict[str, PublishedLine]) -> list[Reused | Fresh]:
    """Cut a split whose members (in file order) have line ids ``ids`` into runs of consecutive lines of
    the previous file (``previous``: that split's lines) and runs of lines to write."""
    plan: list[Reused | Fresh] = []
    for position, identity in enumerate(ids):
        found = previous.get(identity)
        last = plan[-1] if plan else None
        if found is None:
            if isinstance(last, Fresh):
                plan[-1] = Fresh(last.start, position + 1)
            else:
                plan.append(Fresh(position, position + 1))
        elif isinstance(last, Reused) and last.offset + last.length == found.offset:
            plan[-1] = Reused(last.offset, last.length + found.length, last.count + 1)
        else:
            plan.append(Reused(found.offset, found.length, 1))
    return plan


def reused_lines(plan: Iterable[Reused | Fresh]) -> int:
    return sum(step.count for step in plan if isinstance(step, Reused))
