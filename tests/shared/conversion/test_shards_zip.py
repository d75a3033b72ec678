"""Shards of a zip drop: each shard reads the archive through ``RangedZipSource`` (its own entries only, one
request each) and the assembled files are the bytes of one ``convert_dataset`` of the same zip."""

from __future__ import annotations

import contextlib
import io
import zipfile
from pathlib import Path

import pytest

from shared.conversion import ConvertOptions, FolderSink, ZipSource, convert_dataset
from shared.conversion.manifest import canonical_json
from shared.conversion.ranged_zip import RangedZipSource
from shared.conversion.records import prepare_records
from shared.conversion.shards import assemble, assign_shards, convert_shard, part_name
from shared.layout import SPLITS
from tests.shared.conversion import image_cases as cases
from tests.shared.conversion.test_ranged_zip import CountingRaw
from tests.shared.conversion.test_shards import ARTIFACTS


def drop_zip() -> bytes:
    files = cases.good_set(("cat", "dog", "fox"), per_label=14)
    files["dog/notes.jpg"] = b"not an image\n"
    files["cat/dup.jpg"] = files["cat/000.jpg"]
    files["dog/same-as-a-cat.jpg"] = files["cat/005.jpg"]
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for k, (name, data) in enumerate(sorted(files.items())):  # one top folder: unwrapped by ZipSource
            zf.writestr(f"pets/{name}", data, compress_type=zipfile.ZIP_DEFLATED if k % 3 else zipfile.ZIP_STORED)
        zf.writestr("__MACOSX/pets/._cat", b"junk")
    return buffer.getvalue()


@pytest.mark.parametrize("shards", [1, 2, 3])
def test_zip_shards_assemble_to_the_bytes_of_one_conversion_reading_only_their_entries(tmp_path: Path, shards: int):
    data = drop_zip()
    options = ConvertOptions(workers=1)
    single = tmp_path / "single"
    convert_dataset(ZipSource(io.BytesIO(data)), FolderSink(single), options)
    expected = {name: (single / name).read_bytes() for name in ARTIFACTS}

    with RangedZipSource(CountingRaw(data), len(data)) as planning:  # the plan reads the directory only
        prepared = prepare_records(planning, options.validated())
        assert len(planning.requests) <= 3
    assignment = assign_shards(prepared, options.validated(), shards)
    parts = tmp_path / "parts"
    parts.mkdir()

    @contextlib.contextmanager
    def open_part(name: str):
        with open(parts / name, "wb") as handle:
            yield handle

    results = []
    for k, indexes in enumerate(assignment):
        with RangedZipSource(CountingRaw(data), len(data)) as source:
            directory = len(source.requests)
            results.append(convert_shard(source, prepared, indexes, options, open_part, shard=k))
            mine = {prepared.records[i].path for i in indexes}
            reads = source.requests[directory:]
            assert len(reads) == len(mine)  # one request per own entry, none for the others
            assert {offset for offset, _ in reads} == {source.entry_span(p)[0] for p in mine}
    assembly = assemble(prepared, options, results)
    got = {
        f"{split}.jsonl": b"".join(
            (parts / part_name(shard, split)).read_bytes()[offset : offset + length]
            for shard, offset, length in assembly.ranges[split]
        )
        for split in SPLITS
    }
    got["rejected.json"] = canonical_json(assembly.rejected)
    got["manifest.json"] = canonical_json(assembly.manifest)
    assert got == expected
    rejected = {r["path"]: r["code"] for r in assembly.rejected}
    assert rejected["cat/dup.jpg"] == "duplicate" and rejected["dog/notes.jpg"] == "not_an_image"
