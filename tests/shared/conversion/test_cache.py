"""The converted-image cache: a conversion with the cache in any state (empty, warm, partly warm, damaged,
other settings) writes the same bytes and version as one without it; only new images are converted; entries
no kept version uses are collected."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from shared.conversion import ConvertOptions, FolderSink, FolderSource, convert_dataset
from shared.conversion.cache import FolderCacheStore, ImageCache, folder_cache
from shared.conversion.images import ImageSettings
from shared.conversion.options import CONVERTER_FORMAT, image_settings
from tests.shared.conversion import image_cases as cases

ARTIFACTS = ("train.jsonl", "validation.jsonl", "test.jsonl", "rejected.json", "manifest.json")


def dataset(root: Path, per_label: int = 12, start: int = 0, extra: dict[str, bytes] | None = None) -> Path:
    files = cases.good_set(("cat", "dog"), per_label=per_label, start=start)
    files.update({"dog/notes.jpg": b"not an image\n", "cat/dup.jpg": files["cat/000.jpg"] if "cat/000.jpg" in files else b""})
    files.update(extra or {})
    return cases.write(root, files)


def convert(src: Path, out: Path, cache_dir: Path | None, *, workers: int = 1, max_side: int = 512, grace: float = 0.0):
    options = ConvertOptions(workers=workers, max_side=max_side)
    cache = None
    if cache_dir is not None:
        cache = folder_cache(cache_dir, image_settings(options), CONVERTER_FORMAT, grace_seconds=grace)
    result = convert_dataset(FolderSource(src), FolderSink(out), options, cache=cache)
    return result, cache


def artifacts(out: Path) -> dict[str, bytes]:
    return {name: (out / name).read_bytes() for name in ARTIFACTS}


def test_image_cases_have_the_file_names_the_tests_use(tmp_path):
    src = dataset(tmp_path / "src")
    assert (src / "cat" / "000.jpg").is_file() and (src / "cat" / "dup.jpg").read_bytes()


@pytest.mark.parametrize("workers", [1, 2])
def test_output_is_byte_identical_whatever_the_cache_holds(tmp_path, workers):
    src = dataset(tmp_path / "src")
    plain, _ = convert(src, tmp_path / "plain", None, workers=workers)
    expected = artifacts(tmp_path / "plain")

    cold, cache = convert(src, tmp_path / "cold", tmp_path / "cache", workers=workers)
    assert artifacts(tmp_path / "cold") == expected and cold.version == plain.version
    assert cold.stats["images_reused"] == 0 and cold.stats["images_converted"] == plain.stats["images_converted"]

    warm, _ = convert(src, tmp_path / "warm", tmp_path / "cache", workers=workers)
    assert artifacts(tmp_path / "warm") == expected and warm.version == plain.version
    assert warm.stats["images_converted"] == 0
    # every readable image comes from the cache (the duplicate too: same bytes, same entry)
    assert warm.stats["images_reused"] == cold.stats["images_converted"] > 0
    assert warm.manifest == plain.manifest


def test_a_grown_dataset_converts_only_the_new_files_and_matches_a_fresh_conversion(tmp_path):
    convert(dataset(tmp_path / "v1"), tmp_path / "out1", tmp_path / "cache")
    grown = dataset(tmp_path / "v2", extra={f"cat/new{i}.jpg": cases.photo_jpeg(seed=900 + i) for i in range(3)})
    (grown / "dog" / "001.jpg").write_bytes(cases.photo_jpeg(seed=777))  # a changed file
    second, _ = convert(grown, tmp_path / "out2", tmp_path / "cache")
    fresh, _ = convert(grown, tmp_path / "fresh", None)
    assert artifacts(tmp_path / "out2") == artifacts(tmp_path / "fresh") and second.version == fresh.version
    assert second.stats["images_converted"] == 4
    assert second.stats["images_reused"] == fresh.stats["images_converted"] - 4


def test_other_image_settings_never_reuse_an_entry(tmp_path):
    src = dataset(tmp_path / "src")
    convert(src, tmp_path / "a", tmp_path / "cache")
    small, _ = convert(src, tmp_path / "b", tmp_path / "cache", max_side=64)
    fresh, _ = convert(src, tmp_path / "c", None, max_side=64)
    assert small.stats["images_reused"] == 0
    assert artifacts(tmp_path / "b") == artifacts(tmp_path / "c")


def test_a_damaged_cache_is_a_miss_not_a_failure(tmp_path):
    src = dataset(tmp_path / "src")
    plain, _ = convert(src, tmp_path / "plain", None)
    convert(src, tmp_path / "one", tmp_path / "cache")
    packs = sorted((tmp_path / "cache" / "packs").iterdir())
    packs[0].write_bytes(packs[0].read_bytes()[:100])  # truncated: ranges past the end fail
    (tmp_path / "cache" / "index" / "broken.json").write_text("{not json")
    again, _ = convert(src, tmp_path / "two", tmp_path / "cache")
    assert artifacts(tmp_path / "two") == artifacts(tmp_path / "plain")
    assert again.stats["images_converted"] > 0


def test_a_failed_conversion_leaves_no_index(tmp_path):
    src = cases.write(tmp_path / "src", cases.good_set(("only",), per_label=12))
    with pytest.raises(ValueError):
        convert(src, tmp_path / "out", tmp_path / "cache")
    assert not (tmp_path / "cache" / "index").exists() or not list((tmp_path / "cache" / "index").iterdir())
    assert not list((tmp_path / "cache" / "packs").glob("*.pack"))


def test_entries_no_kept_version_uses_are_collected(tmp_path):
    first, _ = convert(dataset(tmp_path / "v1"), tmp_path / "o1", tmp_path / "cache")
    # v2: a disjoint set of images, so v1's pack holds nothing v2 uses
    second, cache = convert(dataset(tmp_path / "v2", start=100), tmp_path / "o2", tmp_path / "cache")
    store = FolderCacheStore(tmp_path / "cache")
    assert len(store.list("packs/")) == 2 and len(store.list("refs/")) == 2

    young = ImageCache(store, ImageSettings(), CONVERTER_FORMAT, grace_seconds=3600).collect({second.version})
    assert young == {"refs_deleted": 0, "packs_deleted": 0, "packs_compacted": 0, "entries_collected": 0}

    kept_both = cache.collect({first.version, second.version})
    assert kept_both["packs_deleted"] == 0 and len(store.list("packs/")) == 2

    stats = cache.collect({second.version})
    assert stats["refs_deleted"] == 1 and stats["packs_deleted"] == 1 and stats["entries_collected"] > 0
    assert [name for name, _ in store.list("refs/")] == [f"refs/{second.version}.json"]
    again, _ = convert(dataset(tmp_path / "v2b", start=100), tmp_path / "o3", tmp_path / "cache")
    assert again.stats["images_converted"] == 0 and again.version == second.version


def test_a_mostly_dead_pack_is_compacted_and_still_serves_its_live_entries(tmp_path):
    first, _ = convert(dataset(tmp_path / "v1", per_label=12), tmp_path / "o1", tmp_path / "cache")
    # v2 keeps 2 of v1's 24 good images: v1's pack is mostly dead
    old = cases.good_set(("cat", "dog"), per_label=12)
    keep = {"cat/kept.jpg": old["cat/000.jpg"], "dog/kept.jpg": old["dog/000.jpg"]}
    files = {**keep, **cases.good_set(("cat", "dog"), per_label=10, start=200)}
    second, cache = convert(cases.write(tmp_path / "v2", files), tmp_path / "o2", tmp_path / "cache")
    assert second.stats["images_reused"] == 2
    stats = cache.collect({second.version})
    assert stats["packs_compacted"] == 1 and stats["entries_collected"] > 0
    index_sizes = [len(json.loads(FolderCacheStore(tmp_path / "cache").read(n))["entries"]) for n, _ in
                   FolderCacheStore(tmp_path / "cache").list("index/")]
    assert sorted(index_sizes) == [2, 20]
    again, _ = convert(cases.write(tmp_path / "v2b", files), tmp_path / "o3", tmp_path / "cache")
    assert again.stats["images_converted"] == 0
    assert artifacts(tmp_path / "o3") == artifacts(tmp_path / "o2")


class EtagSource:
    """An in-memory source whose entries carry ETags (as blobs do); counts reads per path."""

    read_concurrency = 4

    def __init__(self, files: dict[str, bytes]) -> None:
        self.files = dict(files)
        self.etags = {path: f"etag-{i}" for i, path in enumerate(sorted(files))}
        self.reads: list[str] = []

    def entries(self):
        from shared.conversion.sources import SourceEntry

        return [SourceEntry(p, len(b), etag=self.etags[p]) for p, b in self.files.items()]

    def read(self, path: str) -> bytes:
        self.reads.append(path)
        return self.files[path]


def test_unchanged_files_with_etags_are_not_read_again(tmp_path):
    files = cases.good_set(("cat", "dog"), per_label=12)
    source = EtagSource(files)
    options = ConvertOptions(workers=1)
    cache = folder_cache(tmp_path / "cache", image_settings(options), CONVERTER_FORMAT, grace_seconds=0)
    first = convert_dataset(source, FolderSink(tmp_path / "o1"), options, cache=cache)
    assert len(source.reads) == 24

    grown = EtagSource({**files, "cat/new.jpg": cases.photo_jpeg(seed=4321)})
    grown.etags = {**source.etags, "cat/new.jpg": "etag-new"}
    grown.files["dog/001.jpg"] = cases.photo_jpeg(seed=4322)  # rewritten: a new ETag
    grown.etags["dog/001.jpg"] = "etag-rewritten"
    cache = folder_cache(tmp_path / "cache", image_settings(options), CONVERTER_FORMAT, grace_seconds=0)
    second = convert_dataset(grown, FolderSink(tmp_path / "o2"), options, cache=cache)
    assert sorted(grown.reads) == ["cat/new.jpg", "dog/001.jpg"]
    assert second.stats["images_converted"] == 2 and second.stats["images_reused"] == 23
    fresh = convert_dataset(FolderSource(cases.write(tmp_path / "plain", grown.files)), FolderSink(tmp_path / "o3"), options)
    assert second.version == fresh.version != first.version
    assert artifacts(tmp_path / "o2") == artifacts(tmp_path / "o3")


def test_many_small_packs_are_merged_and_still_serve_every_entry(tmp_path, monkeypatch):
    import shared.conversion.cache as cache_module

    monkeypatch.setattr(cache_module, "MAX_PACKS", 4)
    base = cases.good_set(("cat", "dog"), per_label=6)
    files = dict(base)
    for day in range(6):  # six daily drops, each adding two images: one small pack each
        files[f"cat/day{day}.jpg"] = cases.photo_jpeg(seed=5000 + day)
        files[f"dog/day{day}.jpg"] = cases.photo_jpeg(seed=6000 + day)
        result, cache = convert(cases.write(tmp_path / f"d{day}", files), tmp_path / f"o{day}", tmp_path / "cache")
    store = FolderCacheStore(tmp_path / "cache")
    assert len(store.list("packs/")) == 6
    stats = cache.collect({result.version}, now=time.time() + 1)
    assert stats["packs_merged"] >= 2 and len(store.list("packs/")) <= 4
    assert sorted(n for n, _ in store.list("packs/")) == sorted(
        f"packs/{json.loads(store.read(n))['pack']}.pack" for n, _ in store.list("index/")
    )
    again, _ = convert(cases.write(tmp_path / "last", files), tmp_path / "again", tmp_path / "cache")
    assert again.stats["images_converted"] == 0 and again.version == result.version
    assert artifacts(tmp_path / "again") == artifacts(tmp_path / "o5")


def test_load_lists_each_prefix_once_and_remembers_the_versions(tmp_path):
    """``load`` lists the index and refs prefixes once each (at once) and reads every document; the versions
    it found are then known without another listing (the previous version's lines are looked up with them)."""
    first, _ = convert(dataset(tmp_path / "v1"), tmp_path / "o1", tmp_path / "cache")
    second, _ = convert(dataset(tmp_path / "v2", start=100), tmp_path / "o2", tmp_path / "cache")

    class CountingStore(FolderCacheStore):
        def __init__(self, root: Path) -> None:
            super().__init__(root)
            self.listed: list[str] = []
            self.read_names: list[str] = []

        def list(self, prefix: str):
            self.listed.append(prefix)
            return super().list(prefix)

        def read(self, name: str):
            self.read_names.append(name)
            return super().read(name)

    store = CountingStore(tmp_path / "cache")
    cache = ImageCache(store, image_settings(ConvertOptions()), CONVERTER_FORMAT)
    assert cache.loaded_versions() == []
    assert cache.load() > 0
    assert sorted(store.listed) == ["index/", "refs/"]
    assert sorted(n for n in store.read_names if n.startswith("refs/")) == sorted(
        f"refs/{v}.json" for v in (first.version, second.version)
    )
    assert len([n for n in store.read_names if n.startswith("index/")]) == 2
    assert cache.loaded_versions() == cache.referenced_versions()
    assert {v for v, _ in cache.loaded_versions()} == {first.version, second.version}
    assert sorted(store.listed) == ["index/", "refs/", "refs/"]  # referenced_versions() listed; loaded_versions() did not
