"""Reusing the previous version's lines (shared.conversion.reuse, and the converter's use of it): the output
is byte-identical to a fresh conversion whatever is reused, and reused lines are never read or written again."""

from __future__ import annotations

import contextlib
import io
import shutil
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest

from shared.conversion import ConvertOptions, FolderSink, FolderSource, convert_dataset
from shared.conversion.cache import ImageCache, folder_cache
from shared.conversion.options import CONVERTER_FORMAT, image_settings
from shared.conversion.reuse import Fresh, PublishedLine, Reused, plan_split
from shared.conversion.sinks import AssemblingSink
from shared.layout import cache_prefix
from shared.storage.cache_store import BlobCacheStore
from shared.storage.readers import BlobDatasetSource
from shared.storage.writers import BlobArtifactSink
from tests.shared.conversion import image_cases as cases

ARTIFACTS = ("train.jsonl", "validation.jsonl", "test.jsonl", "rejected.json", "manifest.json")


class PublishingSink:
    """An ``AssemblingSink`` in memory: versions published by earlier conversions live in ``store`` (shared
    between sinks, like a container); ``assemble`` copies ranges of them and records what it was given."""

    def __init__(self, store: dict[str, dict[str, bytes]], *, fail_assemble: bool = False) -> None:
        self.store = store
        self.staged: dict[str, bytes] = {}
        self.assembled: dict[str, list[bytes | tuple[str, int, int]]] = {}
        self.fail_assemble = fail_assemble

    @contextlib.contextmanager
    def open(self, name: str) -> Iterator[io.BytesIO]:
        buffer = io.BytesIO()
        yield buffer
        self.staged[name] = buffer.getvalue()

    def commit(self, version: str) -> None:
        self.store.setdefault(version, dict(self.staged))

    def published_artifact(self, version: str, name: str) -> tuple[str, int] | None:
        data = self.store.get(version, {}).get(name)
        return None if data is None else (f"{version}/{name}", len(data))

    def assemble(self, name: str, segments: Iterable[bytes | tuple[str, int, int]], *, base: str | None = None) -> int:
        if self.fail_assemble:
            raise OSError("injected: the previous version's file is gone")
        parts = list(segments)
        out = bytearray()
        for part in parts:
            if isinstance(part, bytes):
                out += part
            else:
                source, offset, length = part
                version, artifact = source.split("/", 1)
                out += self.store[version][artifact][offset : offset + length]
        self.assembled[name] = parts
        self.staged[name] = bytes(out)
        return len(out)


def drop(per_label: int, *, start: int = 0, labels: tuple[str, ...] = ("cat", "dog")) -> dict[str, bytes]:
    return cases.good_set(labels, per_label=per_label, start=start)


def convert(files: dict[str, bytes], root: Path, store, cache_dir: Path | None, **sink_options):
    src = cases.write(root, files)
    options = ConvertOptions(workers=1)
    cache = None if cache_dir is None else folder_cache(cache_dir, image_settings(options), CONVERTER_FORMAT, grace_seconds=0)
    sink = PublishingSink(store, **sink_options)
    result = convert_dataset(FolderSource(src), sink, options, cache=cache)
    return result, sink, cache


def fresh(files: dict[str, bytes], root: Path) -> dict[str, bytes]:
    out = root / "out"
    convert_dataset(FolderSource(cases.write(root / "src", files)), FolderSink(out), ConvertOptions(workers=1))
    return {name: (out / name).read_bytes() for name in ARTIFACTS}


def test_the_in_memory_sink_is_an_assembling_sink():
    assert isinstance(PublishingSink({}), AssemblingSink)
    assert not isinstance(FolderSink(Path("unused")), AssemblingSink)


def test_plan_keeps_runs_of_the_previous_file_and_cuts_around_new_lines():
    previous = {"a": PublishedLine(0, 10), "b": PublishedLine(10, 5), "c": PublishedLine(15, 7), "d": PublishedLine(22, 3)}
    assert plan_split(["a", "b", "c", "d"], previous) == [Reused(0, 25, 4)]
    assert plan_split(["a", "x", "b", "c", "y", "z"], previous) == [
        Reused(0, 10, 1), Fresh(1, 2), Reused(10, 12, 2), Fresh(4, 6),
    ]  # fmt: skip
    # a removed line ("b") breaks the run; lines in another order are separate ranges
    assert plan_split(["a", "c", "d"], previous) == [Reused(0, 10, 1), Reused(15, 10, 2)]
    assert plan_split(["d", "a"], previous) == [Reused(22, 3, 1), Reused(0, 10, 1)]
    assert plan_split(["x"], previous) == [Fresh(0, 1)]


def test_a_grown_drop_reuses_the_previous_lines_and_matches_a_fresh_conversion(tmp_path):
    store: dict[str, dict[str, bytes]] = {}
    first_files = drop(30)
    first, _, _ = convert(first_files, tmp_path / "v1", store, tmp_path / "cache")
    assert first.stats["lines_reused"] == 0

    grown_files = {**first_files, **{f"cat/new{i}.jpg": cases.photo_jpeg(seed=600 + i) for i in range(3)}}
    second, sink, cache = convert(grown_files, tmp_path / "v2", store, tmp_path / "cache")
    assert second.version != first.version
    assert store[second.version] == fresh(grown_files, tmp_path / "fresh")
    assert second.stats["lines_reused"] == first.manifest["examples"]
    assert second.stats["images_converted"] == 3
    assert cache is not None and cache.hits == 0  # no cached JPEG was read: the lines came whole
    new_bytes = sum(len(p) for parts in sink.assembled.values() for p in parts if isinstance(p, bytes))
    total = sum(len(store[second.version][f"{s}.jsonl"]) for s in ("train", "validation", "test"))
    assert 0 < new_bytes < total / 5  # only the new lines were written


def test_a_changed_image_and_a_relabelled_image_are_written_again_from_the_cache(tmp_path):
    store: dict[str, dict[str, bytes]] = {}
    first_files = drop(30)
    convert(first_files, tmp_path / "v1", store, tmp_path / "cache")
    changed = dict(first_files)
    changed["dog/003.jpg"] = cases.photo_jpeg(seed=4242)  # new bytes under an old name
    changed["dog/renamed.jpg"] = changed.pop("dog/005.jpg")  # same bytes and label: the same line, elsewhere
    changed["cat/relabelled.jpg"] = changed.pop("dog/004.jpg")  # same image, another label: another line
    second, _, cache = convert(changed, tmp_path / "v2", store, tmp_path / "cache")
    assert store[second.version] == fresh(changed, tmp_path / "fresh")
    assert second.stats["images_converted"] == 1
    assert cache is not None and cache.hits == 1  # only the relabelled image's JPEG was read from the cache
    assert second.stats["lines_reused"] >= 50


def test_a_new_label_changes_every_line_and_nothing_is_reused(tmp_path):
    store: dict[str, dict[str, bytes]] = {}
    first_files = drop(20)
    convert(first_files, tmp_path / "v1", store, tmp_path / "cache")
    more = {**first_files, **drop(20, labels=("bird",), start=500)}
    second, sink, _ = convert(more, tmp_path / "v2", store, tmp_path / "cache")
    assert second.stats["lines_reused"] == 0 and not sink.assembled  # the prompt lists the labels
    assert store[second.version] == fresh(more, tmp_path / "fresh")


@pytest.mark.parametrize("damage", ["resized", "deleted", "assemble_fails"])
def test_a_previous_file_that_cannot_be_used_means_every_line_is_written(tmp_path, damage):
    store: dict[str, dict[str, bytes]] = {}
    first_files = drop(30)
    first, _, _ = convert(first_files, tmp_path / "v1", store, tmp_path / "cache")
    if damage == "resized":
        store[first.version]["train.jsonl"] += b"\n"
    elif damage == "deleted":
        del store[first.version]["validation.jsonl"]
    grown = {**first_files, "dog/new.jpg": cases.photo_jpeg(seed=5151)}
    second, _, _ = convert(grown, tmp_path / "v2", store, tmp_path / "cache", fail_assemble=damage == "assemble_fails")
    assert store[second.version] == fresh(grown, tmp_path / "fresh")
    assert second.stats["lines_reused"] == 0


def test_a_collected_pack_is_converted_again_when_its_image_is_needed(tmp_path):
    store: dict[str, dict[str, bytes]] = {}
    first_files = drop(30)
    convert(first_files, tmp_path / "v1", store, tmp_path / "cache")
    moved = dict(first_files)
    moved["dog/relabelled.jpg"] = moved.pop("cat/005.jpg")  # a new line: needs its JPEG
    # the pack goes away after the listing was loaded (a collector elsewhere): simulate by emptying packs now
    options = ConvertOptions(workers=1)
    cache = folder_cache(tmp_path / "cache", image_settings(options), CONVERTER_FORMAT, grace_seconds=0)
    original_load = cache.load

    def load_then_lose_packs(*args, **kwargs):
        found = original_load(*args, **kwargs)
        shutil.rmtree(tmp_path / "cache" / "packs")
        return found

    cache.load = load_then_lose_packs  # type: ignore[method-assign]
    sink = PublishingSink(store)
    result = convert_dataset(FolderSource(cases.write(tmp_path / "v2", moved)), sink, options, cache=cache)
    assert store[result.version] == fresh(moved, tmp_path / "fresh")
    assert result.stats["lines_reused"] >= 50


# --------------------------------------------------------------------------------------------------
# on Azurite: the blob sink copies the reused ranges server-side (Put Block From URL)


class CountingBlobSource:
    """A ``BlobDatasetSource`` that records which blobs were read."""

    def __init__(self, inner) -> None:
        self.inner, self.reads = inner, []
        self.read_concurrency = inner.read_concurrency

    def entries(self):
        return self.inner.entries()

    def read(self, path: str) -> bytes:
        self.reads.append(path)
        return self.inner.read(path)


def blob_convert(blob_service, datasets: str, training: str, dataset: str, sinks: list | None = None):
    """Convert ``dataset`` from blobs with its cache; the sink (one JSONL line per block) goes to ``sinks``."""
    options = ConvertOptions(workers=1)
    container = blob_service.get_container_client(training)
    source = CountingBlobSource(BlobDatasetSource(blob_service.get_container_client(datasets), f"{dataset}/"))
    cache = ImageCache(BlobCacheStore(container, cache_prefix(dataset)), image_settings(options), CONVERTER_FORMAT)
    sink = BlobArtifactSink(container, dataset, line_block_size=1)
    if sinks is not None:
        sinks.append(sink)
    result = convert_dataset(source, sink, options, cache=cache)
    published = {
        name: container.get_blob_client(f"{dataset}/{result.version}/{name}").download_blob().readall()
        for name in ARTIFACTS
    }
    return result, published, source, cache


def upload(blob_service, container: str, dataset: str, files: dict[str, bytes]) -> None:
    client = blob_service.get_container_client(container)
    for path, data in files.items():
        client.upload_blob(f"{dataset}/{path}", data, overwrite=True)


def test_on_blob_storage_a_grown_drop_copies_the_previous_lines_and_reads_only_new_files(
    blob_service, unique_name, tmp_path
):
    datasets, training = unique_name("datasets"), unique_name("training")
    blob_service.create_container(datasets)
    blob_service.create_container(training)
    files = drop(40)
    upload(blob_service, datasets, "pets", files)
    first, _, _, _ = blob_convert(blob_service, datasets, training, "pets")

    new = {f"dog/new{i}.jpg": cases.photo_jpeg(seed=700 + i) for i in range(4)}
    upload(blob_service, datasets, "pets", new)
    sinks: list[BlobArtifactSink] = []
    second, published, source, cache = blob_convert(blob_service, datasets, training, "pets", sinks)
    assert published == fresh({**files, **new}, tmp_path / "fresh")
    assert sorted(source.reads) == sorted(f"{p}" for p in new)  # unchanged blobs: neither read nor hashed
    assert second.stats["lines_reused"] == first.manifest["examples"] and cache.hits == 0
    # the previous file was copied (Copy Blob) and its blocks, one line each, committed again: no byte of
    # the old lines was copied by range nor uploaded
    assemblies = sinks[0].assemblies.values()
    assert assemblies and all(a.base_blocks_usable and a.bytes_copied == 0 for a in assemblies)
    assert sum(a.blocks_committed_again for a in assemblies) == first.manifest["examples"]

    # the previous version's file gone (retention deleted it): every line is written, same bytes
    container = blob_service.get_container_client(training)
    container.delete_blob(f"pets/{second.version}/train.jsonl")
    upload(blob_service, datasets, "pets", {"cat/later.jpg": cases.photo_jpeg(seed=799)})
    third, published, _, _ = blob_convert(blob_service, datasets, training, "pets")
    assert published == fresh({**files, **new, "cat/later.jpg": cases.photo_jpeg(seed=799)}, tmp_path / "fresh3")
    assert third.stats["lines_reused"] > 0  # from the first version, whose files are all still there
