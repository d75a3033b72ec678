"""Worker processes that read the files they convert: same output as one process, this process never reads,
a dead worker's files are finished here, a changed file stops the conversion, cache hints are checked."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest

from shared.conversion import ConvertOptions, FolderSink, FolderSource, convert_dataset
from shared.conversion.cache import FolderCacheStore, ImageCache
from shared.conversion.images import ImageSettings
from shared.conversion.options import CONVERTER_FORMAT, image_settings
from shared.conversion.processing import MAX_BYTES_IN_FLIGHT, _mp_context
from shared.conversion.sources import LocalFileReader
from shared.conversion.worker_pool import CacheFilter, PullPool, WorkerResult, WorkerTask, read_threads_for
from shared.errors import SourceChangedError
from tests.fixtures.conversion import convert_to_folder
from tests.shared.conversion import image_cases as cases

MAIN_PID = os.getpid()
ARTIFACTS = ("train.jsonl", "validation.jsonl", "test.jsonl", "rejected.json", "manifest.json")


@dataclass(frozen=True)
class DyingReader(LocalFileReader):
    """Kills the worker process that reads ``victim`` (the process ``survivor`` reads it normally)."""

    victim: str = ""
    survivor: int = 0

    def read(self, path: str, etag: str | None, limit: int) -> bytes:
        if path == self.victim and os.getpid() != self.survivor:
            os._exit(7)
        return super().read(path, etag, limit)


@dataclass(frozen=True)
class FlakyReader(LocalFileReader):
    """``problem`` on ``path``: "changed" raises ``SourceChangedError``, "unreadable" a ``PermissionError``."""

    path: str = ""
    problem: str = ""

    def read(self, path: str, etag: str | None, limit: int) -> bytes:
        if path == self.path:
            if self.problem == "changed":
                raise SourceChangedError(f"{path} changed since the drop was listed")
            raise PermissionError("access denied")
        return super().read(path, etag, limit)


class WorkersOnlySource(FolderSource):
    """A folder this process must not read: every file is read by the workers, with ``reader``."""

    def __init__(self, root: Path, reader: LocalFileReader | None = None) -> None:
        super().__init__(root)
        self.reader = reader or LocalFileReader(str(root))

    def read(self, path: str) -> bytes:
        if os.getpid() == MAIN_PID and self.reader.__class__ is LocalFileReader:
            raise AssertionError(f"the main process read {path}")
        return super().read(path)

    def process_reader(self) -> LocalFileReader:
        return self.reader


@pytest.fixture
def drop(tmp_path):
    root = cases.write(tmp_path / "src", cases.good_set(("cat", "dog"), per_label=12))
    reference = convert_to_folder(FolderSource(root), tmp_path / "reference", workers=1)
    return root, tmp_path / "reference", reference


def same_artifacts(left: Path, right: Path) -> None:
    for name in ARTIFACTS:
        assert (left / name).read_bytes() == (right / name).read_bytes(), name


def test_the_workers_read_the_files_and_the_output_matches_one_process(tmp_path, drop, caplog):
    root, reference_out, reference = drop
    result = convert_dataset(WorkersOnlySource(root), FolderSink(tmp_path / "out"), ConvertOptions(workers=2))
    assert result.version == reference.version and result.stats["workers"] == 2
    same_artifacts(tmp_path / "out", reference_out)
    assert "did not exit" not in caplog.text  # finished workers exit on their own


def test_a_worker_that_dies_leaves_its_files_to_this_process(tmp_path, drop):
    root, reference_out, reference = drop
    source = WorkersOnlySource(root, DyingReader(str(root), victim="dog/005.jpg", survivor=os.getpid()))
    result = convert_dataset(source, FolderSink(tmp_path / "out"), ConvertOptions(workers=2))
    assert result.version == reference.version
    assert result.stats["workers"] == 1  # finished in this process
    same_artifacts(tmp_path / "out", reference_out)


def test_a_file_changed_under_a_worker_stops_the_conversion(tmp_path, drop):
    root, _reference_out, _reference = drop
    source = WorkersOnlySource(root, FlakyReader(str(root), path="cat/003.jpg", problem="changed"))
    with pytest.raises(SourceChangedError, match="cat/003.jpg changed"):
        convert_dataset(source, FolderSink(tmp_path / "out"), ConvertOptions(workers=2))
    assert not (tmp_path / "out" / "manifest.json").exists()


def test_a_file_a_worker_cannot_read_is_rejected_and_the_rest_converted(tmp_path, drop):
    root, _reference_out, reference = drop
    source = WorkersOnlySource(root, FlakyReader(str(root), path="cat/003.jpg", problem="unreadable"))
    result = convert_dataset(source, FolderSink(tmp_path / "out"), ConvertOptions(workers=2))
    assert [(r["path"], r["code"]) for r in result.rejected] == [("cat/003.jpg", "unreadable")]
    assert "PermissionError: access denied" in result.rejected[0]["reason"]
    assert result.manifest["examples"] == reference.manifest["examples"] - 1


def test_files_the_cache_holds_under_other_names_are_hashed_in_the_workers_not_decoded(tmp_path, drop):
    root, reference_out, reference = drop
    options = ConvertOptions(workers=2)
    store = FolderCacheStore(tmp_path / "cache")
    first = ImageCache(store, image_settings(options), CONVERTER_FORMAT)
    first.load()
    convert_dataset(FolderSource(root), FolderSink(tmp_path / "first"), options, cache=first)
    # the same images copied to a new folder: no ETags, so every file is read and hashed again
    copy = cases.write(tmp_path / "copy", {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*.jpg")})
    second = ImageCache(store, image_settings(options), CONVERTER_FORMAT)
    result = convert_dataset(WorkersOnlySource(copy), FolderSink(tmp_path / "out"), options, cache=second)
    assert result.stats["images_converted"] == 0
    assert result.stats["images_reused"] == reference.stats["files_processed"]
    assert result.version == reference.version
    same_artifacts(tmp_path / "out", reference_out)


@dataclass(frozen=True)
class EveryDigestFilter(CacheFilter):
    def may_have(self, source_sha256: str) -> bool:
        return True


def test_a_wrong_cache_hint_gets_the_image_decoded(tmp_path, drop, monkeypatch):
    root, reference_out, reference = drop
    options = ConvertOptions(workers=2)
    cache = ImageCache(FolderCacheStore(tmp_path / "cache"), image_settings(options), CONVERTER_FORMAT)
    monkeypatch.setattr(ImageCache, "process_filter", lambda self: EveryDigestFilter("x", frozenset()))
    result = convert_dataset(WorkersOnlySource(root), FolderSink(tmp_path / "out"), options, cache=cache)
    assert result.stats["images_converted"] == reference.stats["files_processed"]
    same_artifacts(tmp_path / "out", reference_out)


def test_the_cache_filter_knows_the_keys_the_cache_holds(tmp_path):
    settings = ImageSettings()
    cache = ImageCache(FolderCacheStore(tmp_path / "cache"), settings, CONVERTER_FORMAT)
    cache.put(cache.key("a" * 64), b"jpeg")
    cache.finish("v1", [cache.key("a" * 64)])
    loaded = ImageCache(FolderCacheStore(tmp_path / "cache"), settings, CONVERTER_FORMAT)
    loaded.load()
    hints = loaded.process_filter()
    assert hints.may_have("a" * 64)
    assert not hints.may_have("b" * 64)


def test_tasks_and_bytes_without_a_result_are_bounded(tmp_path):
    root = cases.write(tmp_path / "src", cases.good_set(("cat", "dog"), per_label=6))
    paths = sorted(p.relative_to(root).as_posix() for p in root.rglob("*.jpg"))
    size = 20 * 1024 * 1024  # as the listing says: 3 of them fill the budget
    sent = 0
    waiting: list[int] = []

    def tasks():
        nonlocal sent
        for index, path in enumerate(paths):
            sent += 1
            yield WorkerTask(index, path, None, size)

    def handle(result: WorkerResult) -> None:
        waiting.append(sent - len(waiting) - 1)
        assert result.result is not None and result.result.ok

    with PullPool(_mp_context(), 2, ImageSettings(), 50 * 1024 * 1024) as pool:
        pool.run(tasks(), LocalFileReader(str(root)), handle, max_outstanding=8, max_bytes_outstanding=MAX_BYTES_IN_FLIGHT)
    assert len(waiting) == len(paths)
    assert max(waiting) <= MAX_BYTES_IN_FLIGHT // size, waiting  # one task alone may always go


def test_reader_threads_follow_the_sources_concurrency():
    assert read_threads_for(16, 2) == 4  # blobs: capped
    assert read_threads_for(4, 2) == 2  # a folder
    assert read_threads_for(1, 4) == 2  # fewer reads than workers: the default
