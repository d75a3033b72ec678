"""A content-addressed cache of converted images, so a dataset that grows converts only what is new.

Key: ``sha256(settings fingerprint + sha256(source bytes))``; the fingerprint covers every setting that
changes the JPEG (max side, quality, pixel limit, draft tolerance, converter format, Pillow version), so a
hit returns exactly the bytes a fresh conversion would produce and the output stays byte-identical.

Layout (the same in a folder on disk and under ``_cache/<dataset>/`` in the training container):

- ``packs/<id>.pack``: converted JPEGs back to back (one pack per conversion that converted something);
- ``index/<id>.json``: ``{"format": 1, "pack": "<id>", "entries": [[key, offset, length], ...]}``, written
  after its pack is complete, so an index always describes a whole pack;
- ``refs/<version>.json``: ``{"version": ..., "keys": [...], "sources": {path: [size, etag, sha256]}}``, the
  entries a version uses and, for sources with ETags (blobs), the digest of each file as it was then: a
  later conversion trusts an unchanged (path, size, ETag) and does not read that file again. Azure gives a
  blob a new ETag on every write (Microsoft Learn, "Manage concurrency in Blob Storage": the ETag is
  updated whenever the blob is written), so an equal ETag means equal bytes; a metadata-only change also
  moves it, which costs one read, never a wrong image;
- ``lines/<version>.json``: where each line of the version's JSONL files is (``shared.conversion.reuse``).

``collect(kept)`` drops the refs of versions that are not kept, deletes packs none of whose entries a kept
version uses, rewrites packs that are mostly dead, and merges the smallest packs when there are more than
``MAX_PACKS`` (one per daily drop adds up). Anything younger than ``grace_seconds`` is left
alone, so a conversion running at the same time never loses the pack it is writing or reading. A cache that
cannot be read is a miss, never an error: the image is converted again.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from shared.conversion.images import DRAFT_TOLERANCE, ImageSettings
from shared.conversion.reading import read_ahead
from shared.conversion.worker_pool import CacheFilter

log = logging.getLogger(__name__)

CACHE_FORMAT = 1
DEFAULT_GRACE_SECONDS = 3600.0
COMPACT_BELOW = 0.5  # a pack whose live share of bytes falls below this is rewritten
MAX_PACKS = 16  # above this many packs, the smallest old ones are merged into one
PACKS, INDEX, REFS, LINES = "packs/", "index/", "refs/", "lines/"


def lines_document(version: str) -> str:
    """The name, in a cache's store, of the line record of ``version`` (``shared.conversion.reuse``)."""
    return f"{LINES}{version}.json"


class PackWriter(Protocol):
    def write(self, data: bytes) -> int: ...

    def close(self) -> None: ...

    def abort(self) -> None: ...


class CacheStore(Protocol):
    """Where a cache lives. Names are relative, ``/``-separated. Must be safe to read from threads."""

    def list(self, prefix: str) -> list[tuple[str, float]]:
        """``(name, last-modified epoch seconds)`` of every object under ``prefix``."""
        ...

    def read(self, name: str) -> bytes | None: ...

    def read_range(self, name: str, offset: int, length: int) -> bytes: ...

    def write(self, name: str, data: bytes) -> None: ...

    def create(self, name: str) -> PackWriter: ...

    def delete(self, name: str) -> None: ...


class FolderCacheStore:
    """A cache in a folder on disk (``visiontune convert --cache DIR``)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def _path(self, name: str) -> Path:
        return self.root.joinpath(*name.split("/"))

    def list(self, prefix: str) -> list[tuple[str, float]]:
        folder = self._path(prefix.rstrip("/"))
        if not folder.is_dir():
            return []
        found = []
        for path in sorted(folder.iterdir()):
            if path.is_file() and not path.name.startswith("."):
                found.append((prefix + path.name, path.stat().st_mtime))
        return found

    def read(self, name: str) -> bytes | None:
        try:
            return self._path(name).read_bytes()
        except FileNotFoundError:
            return None

    def read_range(self, name: str, offset: int, length: int) -> bytes:
        with open(self._path(name), "rb") as handle:
            handle.seek(offset)
            data = handle.read(length)
        if len(data) != length:
            raise OSError(f"{name}: {length} bytes expected at {offset}, got {len(data)}")
        return data

    def write(self, name: str, data: bytes) -> None:
        path = self._path(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}")
        temporary.write_bytes(data)
        os.replace(temporary, path)

    def create(self, name: str) -> PackWriter:
        return _FilePackWriter(self._path(name))

    def delete(self, name: str) -> None:
        self._path(name).unlink(missing_ok=True)


class _FilePackWriter:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._path = path
        self._temporary = path.with_name(f".{path.name}.partial")
        self._handle = open(self._temporary, "wb")

    def write(self, data: bytes) -> int:
        return self._handle.write(data)

    def close(self) -> None:
        self._handle.close()
        os.replace(self._temporary, self._path)

    def abort(self) -> None:
        self._handle.close()
        self._temporary.unlink(missing_ok=True)


@dataclass(frozen=True)
class _Entry:
    pack: str
    offset: int
    length: int


def settings_fingerprint(settings: ImageSettings, converter_format: int) -> str:
    """A digest of everything that changes the converted bytes of one image."""
    import PIL

    described = {
        "cache": CACHE_FORMAT,
        "converter": converter_format,
        **dataclasses.asdict(settings),  # every image setting, including ones added later
        "draft_tolerance": DRAFT_TOLERANCE,
        "pillow": PIL.__version__,
    }
    return hashlib.sha256(json.dumps(described, sort_keys=True).encode()).hexdigest()


class ImageCache:
    """Converted images by source digest. Use: ``load()``; ``get``/``put`` while converting;
    ``finish(version, keys)`` once the version is decided (before it is published); ``abort()`` on failure;
    ``collect(kept_versions)`` after publishing. ``get`` may be called from reader threads."""

    def __init__(
        self,
        store: CacheStore,
        settings: ImageSettings,
        converter_format: int,
        *,
        grace_seconds: float = DEFAULT_GRACE_SECONDS,
    ) -> None:
        self.store = store
        self.grace_seconds = grace_seconds
        self._fingerprint = settings_fingerprint(settings, converter_format)
        self._entries: dict[str, _Entry] = {}
        self._sources: dict[str, tuple[int, str, str]] = {}
        self._loaded_refs: list[tuple[str, float]] = []
        self._new: list[tuple[str, int, int]] = []
        self._new_keys: set[str] = set()
        self._pack_id = f"{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}-{uuid.uuid4().hex[:12]}"
        self._writer: PackWriter | None = None
        self._written = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def key(self, source_sha256: str) -> str:
        return hashlib.sha256(f"{self._fingerprint}:{source_sha256}".encode()).hexdigest()

    def load(self, concurrency: int = 8) -> int:
        """Read every index and refs document (``concurrency`` at a time); returns the number of entries
        known. Unreadable documents are skipped (their entries are misses). The two listings go out at once,
        then every document in one stream of reads: two round trips deep, not four."""
        def fetch(name: str) -> Any:
            try:
                return json.loads(self.store.read(name) or b"null")
            except Exception as error:  # noqa: BLE001 - a bad document is a miss, not a failed conversion
                log.warning("image cache: ignoring %s: %s", name, error)
                return None

        with ThreadPoolExecutor(max_workers=2, thread_name_prefix="visiontune-cache-list") as pool:
            listing = pool.submit(self.store.list, REFS)
            indexes = [name for name, _modified in self.store.list(INDEX)]
            found_refs = sorted(listing.result(), key=lambda item: item[1])
        self._loaded_refs = [(name[len(REFS) : -len(".json")], modified) for name, modified in found_refs]
        refs = [name for name, _modified in found_refs]
        for name, document in read_ahead(indexes + refs, fetch, concurrency=concurrency):  # in order: newest refs win
            if name.startswith(REFS):
                try:
                    for path, (size, etag, digest) in ((document or {}).get("sources") or {}).items():
                        self._sources[path] = (int(size), str(etag), str(digest))
                except Exception as error:  # noqa: BLE001 - without it, files are read and hashed again
                    log.warning("image cache: ignoring the sources of %s: %s", name, error)
                continue
            try:
                if not isinstance(document, dict) or document.get("format") != CACHE_FORMAT:
                    continue
                pack = f"{PACKS}{document['pack']}.pack"
                for key, offset, length in document["entries"]:
                    self._entries.setdefault(key, _Entry(pack, int(offset), int(length)))
            except Exception as error:  # noqa: BLE001
                log.warning("image cache: ignoring index %s: %s", name, error)
        return len(self._entries)

    def process_filter(self) -> CacheFilter:
        """The keys known now, so worker processes that read and hash files can skip decoding cached ones."""
        return CacheFilter(self._fingerprint, frozenset(int(key[:16], 16) for key in self._entries))

    def known_digest(self, path: str, size: int, etag: str) -> str | None:
        """The sha256 of ``path`` as a cached version saw it, if its size and ETag are unchanged."""
        known = self._sources.get(path)
        if known is None or known[0] != size or known[1] != etag:
            return None
        return known[2]

    def has(self, key: str) -> bool:
        """Whether ``key`` is in a pack this cache knows (``get`` may still fail: the pack may be gone)."""
        return key in self._entries

    def get(self, key: str) -> bytes | None:
        """The cached JPEG for ``key`` or None (not cached, or its pack could not be read)."""
        entry = self._entries.get(key)
        if entry is None:
            with self._lock:
                self.misses += 1
            return None
        try:
            data = self.store.read_range(entry.pack, entry.offset, entry.length)
        except Exception as error:  # noqa: BLE001 - collected meanwhile, or a transient failure: convert again
            log.warning("image cache: cannot read %s (%s); converting the image again", entry.pack, error)
            with self._lock:
                self.misses += 1
            return None
        with self._lock:
            self.hits += 1
        return data

    def put(self, key: str, jpeg: bytes) -> None:
        """Add a converted image to this conversion's new pack (once per key)."""
        if key in self._entries or key in self._new_keys:
            return
        if self._writer is None:
            self._writer = self.store.create(f"{PACKS}{self._pack_id}.pack")
        self._writer.write(jpeg)
        self._new.append((key, self._written, len(jpeg)))
        self._new_keys.add(key)
        self._written += len(jpeg)

    def finish(
        self, version: str, keys: Iterable[str], sources: dict[str, tuple[int, str | None, str]] | None = None
    ) -> None:
        """Complete the new pack and its index, and record which entries ``version`` uses (and the
        ``{path: (size, etag, sha256)}`` of its files that have ETags)."""
        self.seal()
        refs = {"version": version, "keys": sorted(set(keys)), "sources": dict(sorted((sources or {}).items()))}
        self.store.write(f"{REFS}{version}.json", _dump(refs))

    def seal(self) -> None:
        """Complete the new pack and its index (a fan-out shard does this; the assembler, which knows the
        version, writes the refs with ``finish``). Entries of a sealed pack no version refers to yet are
        protected by ``grace_seconds`` until a version does."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None
            self.store.write(
                f"{INDEX}{self._pack_id}.json",
                _dump({"format": CACHE_FORMAT, "pack": self._pack_id, "entries": self._new}),
            )
            pack = f"{PACKS}{self._pack_id}.pack"
            for key, offset, length in self._new:
                self._entries.setdefault(key, _Entry(pack, offset, length))

    def abort(self) -> None:
        """Drop the pack being written (an unfinished pack has no index and is never read)."""
        if self._writer is not None:
            try:
                self._writer.abort()
            finally:
                self._writer = None

    def loaded_versions(self) -> list[tuple[str, float]]:
        """``referenced_versions()`` as ``load()`` found them (no request; empty before ``load``)."""
        return list(self._loaded_refs)

    def referenced_versions(self) -> list[tuple[str, float]]:
        """``(version, last-modified)`` of every version with a refs document, oldest first."""
        found = [(name[len(REFS) : -len(".json")], modified) for name, modified in self.store.list(REFS)]
        return sorted(found, key=lambda item: item[1])

    def collect(self, kept_versions: Iterable[str], *, now: float | None = None) -> dict[str, int]:
        """Delete what no kept version uses (see the module docstring); returns what was done."""
        now = time.time() if now is None else now
        kept = set(kept_versions)
        def old(modified: float) -> bool:
            return now - modified >= self.grace_seconds

        stats = {"refs_deleted": 0, "packs_deleted": 0, "packs_compacted": 0, "entries_collected": 0}
        live: set[str] = set()
        for name, modified in self.store.list(REFS):
            version = name[len(REFS) : -len(".json")]
            if version not in kept and old(modified):
                self.store.delete(lines_document(version))
                self.store.delete(name)
                stats["refs_deleted"] += 1
                continue
            document = json.loads(self.store.read(name) or b'{"keys": []}')
            live.update(document.get("keys", []))
        indexed: set[str] = set()
        small: list[tuple[int, str, str, list[Any]]] = []  # old packs kept as they are: candidates to merge
        for name, modified in self.store.list(INDEX):
            document = json.loads(self.store.read(name) or b"null")
            if not isinstance(document, dict):
                continue
            pack = f"{PACKS}{document['pack']}.pack"
            indexed.add(pack)
            entries = document["entries"]
            if not old(modified):
                continue
            alive = [e for e in entries if e[0] in live]
            total_bytes = sum(e[2] for e in entries) or 1
            if not alive:
                self.store.delete(name)  # the index first: a pack without an index is never read
                self.store.delete(pack)
                stats["packs_deleted"] += 1
                stats["entries_collected"] += len(entries)
            elif sum(e[2] for e in alive) / total_bytes < COMPACT_BELOW:
                indexed.add(self._rewrite([(pack, e) for e in alive]))
                self.store.delete(name)
                self.store.delete(pack)
                stats["packs_compacted"] += 1
                stats["entries_collected"] += len(entries) - len(alive)
            else:
                small.append((sum(e[2] for e in alive), name, pack, alive))
                continue
            indexed.discard(pack)
        current = len(self.store.list(INDEX))
        if current > MAX_PACKS and len(small) > 1:
            # one pack per daily drop adds up: merge the smallest old ones, so loading stays a few reads
            small.sort(key=lambda item: item[0])
            merged = small[: max(2, current - MAX_PACKS // 2)]
            indexed.add(self._rewrite([(pack, e) for _size, _name, pack, alive in merged for e in alive]))
            for _size, name, pack, _alive in merged:
                self.store.delete(name)
                self.store.delete(pack)
                indexed.discard(pack)
            stats["packs_merged"] = len(merged)
        for name, modified in self.store.list(PACKS):
            if name not in indexed and old(modified):  # left by a conversion that failed
                self.store.delete(name)
                stats["packs_deleted"] += 1
        return stats

    def _rewrite(self, alive: list[tuple[str, list[Any]]]) -> str:
        """Copy the ``(pack, [key, offset, length])`` entries into one new pack with its index; returns the
        new pack's name."""
        pack_id = f"{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}-{uuid.uuid4().hex[:12]}"
        writer = self.store.create(f"{PACKS}{pack_id}.pack")
        entries, written = [], 0

        def fetch(item: tuple[str, list[Any]]) -> bytes:
            pack, (_key, offset, length) = item
            return self.store.read_range(pack, int(offset), int(length))

        try:
            for (_pack, (key, _offset, length)), data in read_ahead(
                alive, fetch, concurrency=8, size=lambda item: int(item[1][2])
            ):
                writer.write(data)
                entries.append((key, written, int(length)))
                written += int(length)
        except BaseException:
            writer.abort()
            raise
        writer.close()
        self.store.write(f"{INDEX}{pack_id}.json", _dump({"format": CACHE_FORMAT, "pack": pack_id, "entries": entries}))
        return f"{PACKS}{pack_id}.pack"


def _dump(document: Any) -> bytes:
    return json.dumps(document, separators=(",", ":")).encode()


def folder_cache(root: Path, settings: ImageSettings, converter_format: int, **kwargs: Any) -> ImageCache:
    """An ``ImageCache`` in a folder on disk."""
    return ImageCache(FolderCacheStore(root), settings, converter_format, **kwargs)


__all__ = ["CacheStore", "FolderCacheStore", "ImageCache", "folder_cache", "settings_fingerprint"]
