"""Pass one of the conversion: the bytes read from a source but not yet converted are bounded."""

from __future__ import annotations

import pytest

from shared.conversion import ConvertOptions, DatasetError, FolderSink, convert_dataset
from shared.conversion.processing import MAX_BYTES_IN_FLIGHT
from shared.conversion.sources import SourceEntry


class _BigEntriesSource:
    """Entries of 20 MB each (not images: they are read, shipped, and rejected). Counts reads."""

    SIZE = 20 * 1024 * 1024

    def __init__(self, count: int) -> None:
        self.count = count
        self.reads = 0
        self.payload = b"\0" * self.SIZE

    def entries(self):
        for n in range(self.count):
            yield SourceEntry(f"{'ab'[n % 2]}/{n:03d}.jpg", self.SIZE)

    def read(self, path: str) -> bytes:
        self.reads += 1
        return self.payload


def test_bytes_read_from_a_source_but_not_converted_are_bounded(tmp_path):
    source = _BigEntriesSource(16)
    outstanding: list[int] = []

    def progress(done: int, total: int) -> None:
        outstanding.append(source.reads - done)

    with pytest.raises(DatasetError):  # nothing usable: every entry is rejected
        convert_dataset(source, FolderSink(tmp_path / "out"), ConvertOptions(workers=2), progress=progress)
    assert source.reads == 16
    # In flight: what the budget allows, plus the batch being submitted and the one being read.
    assert max(outstanding) <= MAX_BYTES_IN_FLIGHT // source.SIZE + 2, outstanding
