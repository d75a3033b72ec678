"""A zip archive read by ranged requests, one per entry: what a shard of a fan-out reads of a zip drop.

``ZipSource`` over ``open_blob_reader`` (the one-process intake) reads the archive front to back through
a large buffer, which suits reading every entry in order. A shard reads a scattered subset of the
entries, and through that buffer it would read most of the archive. ``RangedZipSource`` reads the
central directory (the end record, then the directory in one request), then each entry it is asked for
in one request covering that entry's header and data (``ZipSource.entry_span``), and nothing else.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any

from shared.conversion.sources import SourceEntry, ZipSource
from shared.seekable import SizedRawReader


class SpanReader(SizedRawReader):
    """A seekable raw file over another one (``raw``: e.g. a ``BlobRangeReader``, each read a request)
    that serves reads inside the last prefetched span from memory and reads anything else as asked,
    with no read-ahead. ``requests``: the ``(offset, length)`` of every read passed to ``raw``."""

    def __init__(self, raw: io.RawIOBase, size: int) -> None:
        super().__init__(size)
        self._raw = raw
        self._span_start = 0
        self._span = b""
        self.requests: list[tuple[int, int]] = []

    def prefetch(self, offset: int, length: int) -> None:
        """Read ``[offset, offset + length)`` (clamped to the file) in one request and keep it."""
        length = min(length, self._size - offset)
        self._span_start, self._span = offset, self._read_raw(offset, length) if length > 0 else b""

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        length = min(len(view), self._size - self._position)
        if length <= 0:
            return 0
        inside = self._position - self._span_start
        if 0 <= inside and inside + length <= len(self._span):
            data = self._span[inside : inside + length]
        else:
            data = self._read_raw(self._position, length)
        view[: len(data)] = data
        self._position += len(data)
        return len(data)

    def _read_raw(self, offset: int, length: int) -> bytes:
        self.requests.append((offset, length))
        self._raw.seek(offset)
        chunks = bytearray()
        while len(chunks) < length:
            chunk = self._raw.read(length - len(chunks))
            if not chunk:
                break
            chunks += chunk
        return bytes(chunks)


class RangedZipSource:
    """A ``DatasetSource`` over a zip archive behind ``raw`` (a seekable raw file of ``size`` bytes whose
    every read is a request): the directory costs two or three requests, each ``read`` one (more only
    when an entry's local extra field outgrows its span's slack). Reads are serialised, as in
    ``ZipSource``; ``requests`` lists every range read, for tests and benchmarks."""

    read_concurrency = 1

    def __init__(self, raw: io.RawIOBase, size: int) -> None:
        self._reader = SpanReader(raw, size)
        self._zip = ZipSource(self._reader)  # type: ignore[arg-type]  # a seekable binary file

    @property
    def requests(self) -> list[tuple[int, int]]:
        return self._reader.requests

    def entries(self) -> Iterator[SourceEntry]:
        return self._zip.entries()

    def entry_span(self, path: str) -> tuple[int, int]:
        return self._zip.entry_span(path)

    def read(self, path: str) -> bytes:
        self._reader.prefetch(*self._zip.entry_span(path))
        return self._zip.read(path)

    def close(self) -> None:
        self._zip.close()

    def __enter__(self) -> RangedZipSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
