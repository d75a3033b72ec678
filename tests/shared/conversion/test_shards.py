"""Shards: converting a drop in 1, 2 or 3 shards and assembling the parts gives the bytes and version of
one ``convert_dataset`` (duplicates across shards, rejected files, the cache)."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest

from shared.conversion import ConvertOptions, FolderSink, FolderSource, convert_dataset
from shared.conversion.cache import folder_cache
from shared.conversion.manifest import canonical_json
from shared.conversion.options import CONVERTER_FORMAT, DatasetError, image_settings
from shared.conversion.records import prepare_records
from shared.conversion.shards import ShardFileError, assemble, assign_shards, convert_shard, part_name
from shared.layout import SPLITS
from tests.shared.conversion import image_cases as cases

ARTIFACTS = ("train.jsonl", "validation.jsonl", "test.jsonl", "rejected.json", "manifest.json")


def dataset(root: Path) -> Path:
    files = cases.good_set(("cat", "dog", "fox"), per_label=14)
    files["dog/notes.jpg"] = b"not an image\n"
    files["cat/dup.jpg"] = files["cat/000.jpg"]  # a duplicate, most likely in another shard
    files["dog/same-as-a-cat.jpg"] = files["cat/005.jpg"]  # the same bytes under two labels
    return cases.write(root, files)


def single(src: Path, out: Path, options: ConvertOptions) -> dict[str, bytes]:
    convert_dataset(FolderSource(src), FolderSink(out), options)
    return {name: (out / name).read_bytes() for name in ARTIFACTS}


def sharded(src: Path, parts: Path, options: ConvertOptions, shards: int, cache=None) -> tuple[dict[str, bytes], object]:
    parts.mkdir(parents=True, exist_ok=True)
    prepared = prepare_records(FolderSource(src), options.validated())
    assignment = assign_shards(prepared, options.validated(), shards)
    assert sorted(i for a in assignment for i in a) == [r.index for r in prepared.records if r.code is None]

    @contextlib.contextmanager
    def open_part(name: str):
        with open(parts / name, "wb") as handle:
            yield handle

    results = [
        convert_shard(FolderSource(src), prepare_records(FolderSource(src), options.validated()), indexes, options,
                      open_part, shard=k, cache=cache)
        for k, indexes in enumerate(assignment)
    ]  # fmt: skip
    assembly = assemble(prepared, options, results, cache)
    out = {}
    for split in SPLITS:
        out[f"{split}.jsonl"] = b"".join(
            (parts / part_name(shard, split)).read_bytes()[offset : offset + length]
            for shard, offset, length in assembly.ranges[split]
        )
    out["rejected.json"] = canonical_json(assembly.rejected)
    out["manifest.json"] = canonical_json(assembly.manifest)
    return out, assembly


@pytest.mark.parametrize("shards", [1, 2, 3])
def test_shards_assemble_to_the_bytes_of_one_conversion(tmp_path, shards):
    src = dataset(tmp_path / "src")
    options = ConvertOptions(workers=1)
    expected = single(src, tmp_path / "single", options)
    got, assembly = sharded(src, tmp_path / "parts", options, shards)
    assert got == expected
    rejected = {r["path"]: r["code"] for r in assembly.rejected}
    assert rejected["cat/dup.jpg"] == "duplicate" and rejected["dog/notes.jpg"] == "not_an_image"
    assert rejected["dog/same-as-a-cat.jpg"] == "ambiguous_label"
    # the duplicate and ambiguous copies leave holes in the parts: more ranges than shards
    assert sum(len(r) for r in assembly.ranges.values()) >= shards


def test_shards_share_the_cache_and_a_warm_cache_converts_nothing(tmp_path):
    src = dataset(tmp_path / "src")
    options = ConvertOptions(workers=1)
    expected = single(src, tmp_path / "single", options)
    cold_cache = folder_cache(tmp_path / "cache", image_settings(options.validated()), CONVERTER_FORMAT, grace_seconds=0)
    cold_cache.load()
    got, assembly = sharded(src, tmp_path / "cold", options, 2, cache=cold_cache)
    cold_cache.finish(assembly.version, assembly.cache_keys, assembly.sources)
    assert got == expected and assembly.images_converted > 0 and assembly.images_reused == 0
    warm_cache = folder_cache(tmp_path / "cache", image_settings(options.validated()), CONVERTER_FORMAT, grace_seconds=0)
    warm_cache.load()
    got, assembly = sharded(src, tmp_path / "warm", options, 3, cache=warm_cache)
    assert got == expected and assembly.images_converted == 0 and assembly.images_reused > 0


def test_a_dataset_that_cannot_train_fails_at_assembly_as_in_one_process(tmp_path):
    files = cases.good_set(("cat", "dog"), per_label=12)
    for name in [n for n in files if n.startswith("dog/")]:
        files[name] = b"broken"
    src = cases.write(tmp_path / "src", files)
    options = ConvertOptions(workers=1)
    with pytest.raises(DatasetError) as single_error:
        single(src, tmp_path / "single", options)
    with pytest.raises(DatasetError) as sharded_error:
        sharded(src, tmp_path / "parts", options, 2)
    assert str(sharded_error.value) == str(single_error.value)


def test_a_failure_while_writing_names_the_file(tmp_path):
    src = dataset(tmp_path / "src")
    options = ConvertOptions(workers=1)
    prepared = prepare_records(FolderSource(src), options.validated())
    (indexes,) = assign_shards(prepared, options.validated(), 1)

    def failing_line(prompt, record, jpeg):
        if record.path == "fox/003.jpg":
            raise OSError("disk full")
        return b"x\n"

    @contextlib.contextmanager
    def open_part(name):
        with open(tmp_path / name, "wb") as handle:
            yield handle

    with pytest.raises(ShardFileError, match=r"fox/003\.jpg: OSError: disk full") as error:
        convert_shard(FolderSource(src), prepared, indexes, options, open_part, shard=0, line=failing_line)
    assert error.value.path == "fox/003.jpg"
