"""Pass one of the conversion: the bytes read from a source but not yet converted are bounded."""

from __future__ import annotations

import pytest

from shared.conversion import ConvertOptions, DatasetError, FolderSink, convert_dataset
from shared.conversion.processing import MAX_BYTES_IN_FLIGHT
from shared.conversion.sources import SourceEntry
from shared.errors import SourceChangedError
from tests.shared.conversion import image_cases as cases


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


class _ReplacedArchiveSource:
    """A source whose drop is replaced after a few reads (a zip uploaded again during the conversion)."""

    read_concurrency = 4

    def __init__(self, files: dict[str, bytes]) -> None:
        self.files, self.reads = files, 0

    def entries(self):
        return [SourceEntry(p, len(d)) for p, d in self.files.items()]

    def read(self, path: str) -> bytes:
        self.reads += 1
        if self.reads > 5:
            raise SourceChangedError("datasets/pets.zip changed while it was read")
        return self.files[path]


def test_a_source_that_changed_stops_the_conversion_instead_of_rejecting_files(tmp_path):
    files = cases.good_set(("cat", "dog"), per_label=10)
    sink = FolderSink(tmp_path / "out")
    with pytest.raises(SourceChangedError, match="changed while it was read"):
        convert_dataset(_ReplacedArchiveSource(files), sink, ConvertOptions(workers=1))
    assert not (tmp_path / "out" / "manifest.json").exists()  # nothing published: not the old drop minus files
