"""RangedZipSource: a zip read by ranged requests, the directory in a few, then one per entry read and
nothing of the entries it is not asked for."""

from __future__ import annotations

import io
import struct
import zipfile

from shared.conversion.ranged_zip import RangedZipSource
from shared.conversion.sources import ZipSource


class CountingRaw(io.RawIOBase):
    """A raw file over bytes that records every ``(offset, length)`` read (as a blob's ranged downloads)."""

    def __init__(self, data: bytes) -> None:
        super().__init__()
        self.data = data
        self.position = 0
        self.reads: list[tuple[int, int]] = []

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        self.position = offset + (len(self.data) if whence == io.SEEK_END else self.position if whence == io.SEEK_CUR else 0)
        return self.position

    def readinto(self, buffer) -> int:
        chunk = self.data[self.position : self.position + len(buffer)]
        buffer[: len(chunk)] = chunk
        self.reads.append((self.position, len(chunk)))
        self.position += len(chunk)
        return len(chunk)


def archive(entries: dict[str, bytes], *, local_extra: dict[str, bytes] | None = None) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for k, (name, data) in enumerate(entries.items()):
            info = zipfile.ZipInfo(name)
            info.compress_type = zipfile.ZIP_DEFLATED if k % 2 else zipfile.ZIP_STORED
            info.extra = (local_extra or {}).get(name, b"")
            zf.writestr(info, data)
    return buffer.getvalue()


def entries(count: int = 12) -> dict[str, bytes]:
    return {f"pets/{label}/{i:03d}.jpg": bytes([i]) * (700 + 37 * i) for i in range(count) for label in ("cat", "dog")}


def test_each_entry_is_one_request_of_its_own_bytes():
    files = entries()
    data = archive(files)
    raw = CountingRaw(data)
    source = RangedZipSource(raw, len(data))
    directory_requests = len(source.requests)
    assert directory_requests <= 3  # the end record (and the zip64 locator probe), then the directory
    paths = sorted(e.path for e in source.entries())
    assert paths[0] == "cat/000.jpg"  # the single top folder is unwrapped, as ZipSource does
    wanted = paths[::3]
    for path in wanted:
        assert source.read(path) == files[f"pets/{path}"]
    reads = source.requests[directory_requests:]
    assert len(reads) == len(wanted)
    with ZipSource(io.BytesIO(data)) as listing:
        spans = {path: listing.entry_span(path) for path in paths}
    for (offset, length), path in zip(reads, wanted, strict=True):
        start, _ = spans[path]
        assert offset == start
        # a read ends before the next entry's data (only the slack of its header may be read)
        following = [spans[p][0] for p in paths if spans[p][0] > start]
        if following:
            assert offset + length <= min(following) + 30 + 20 + 256
    assert raw.reads == source.requests


def test_an_entry_longer_than_its_span_is_read_whole_with_more_requests(monkeypatch):
    """A local extra field longer than the central one (some tools write it so) makes the entry outgrow the
    span prefetched for it: the rest is read by further requests, never a truncated member."""
    from shared.conversion import sources

    files = entries(3)
    data = archive(files, local_extra={"pets/cat/001.jpg": struct.pack("<HH", 0xCAFE, 8) + b"\1" * 8})
    monkeypatch.setattr(sources, "ENTRY_SPAN_SLACK", -40)  # the span ends 40 bytes short of the data
    source = RangedZipSource(CountingRaw(data), len(data))
    before = len(source.requests)
    assert source.read("cat/001.jpg") == files["pets/cat/001.jpg"]  # stored: 737 bytes
    assert len(source.requests) - before == 2
    assert source.read("cat/002.jpg") == files["pets/cat/002.jpg"]
