"""Sources (folder, zip) and the layout/split rules."""

from __future__ import annotations

import io
import zipfile

import pytest

from shared.conversion.sources import FolderSource, ZipSource, ignored_reason, open_source
from shared.conversion.splits import (
    LayoutError,
    detect_split_layout,
    hash_split,
    parse_split_ratios,
    place,
)


def make_zip(names: dict[str, bytes]) -> io.BytesIO:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for name, data in names.items():
            zf.writestr(name, data)
        zf.writestr("emptydir/", b"")
    buffer.seek(0)
    return buffer


def test_folder_source_lists_relative_posix_paths_and_sizes(tmp_path):
    (tmp_path / "cat" / "deep").mkdir(parents=True)
    (tmp_path / "cat" / "deep" / "a.jpg").write_bytes(b"12345")
    (tmp_path / "dog.jpg").write_bytes(b"1")
    source = FolderSource(tmp_path)
    assert sorted((e.path, e.size) for e in source.entries()) == [("cat/deep/a.jpg", 5), ("dog.jpg", 1)]
    assert source.read("cat/deep/a.jpg") == b"12345"


def test_zip_single_top_folder_is_unwrapped_but_split_folders_are_not():
    wrapped = ZipSource(make_zip({"ds/cat/1.jpg": b"a", "ds/dog/2.jpg": b"b", "__MACOSX/ds/._x": b""}))
    assert sorted(e.path for e in wrapped.entries()) == ["__MACOSX/ds/._x", "cat/1.jpg", "dog/2.jpg"]
    assert wrapped.read("cat/1.jpg") == b"a"
    splits = ZipSource(make_zip({"train/cat/1.jpg": b"a", "train/dog/2.jpg": b"b"}))
    assert sorted(e.path for e in splits.entries()) == ["train/cat/1.jpg", "train/dog/2.jpg"]
    flat = ZipSource(make_zip({"cat/1.jpg": b"a"}))
    assert [e.path for e in flat.entries()] == ["cat/1.jpg"]


def test_open_source_rejects_what_is_neither_folder_nor_zip(tmp_path):
    (tmp_path / "x.zip").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="neither a folder nor a zip"):
        open_source(tmp_path / "x.zip")
    with pytest.raises(FileNotFoundError):
        open_source(tmp_path / "missing")


@pytest.mark.parametrize(
    ("path", "ignored"),
    [
        ("cat/.DS_Store", True),
        ("Thumbs.db", True),
        ("cat/THUMBS.DB", True),
        ("__MACOSX/cat/._1.jpg", True),
        ("cat/._1.jpg", True),
        (".hidden/cat/1.jpg", True),
        ("cat/1.jpg", False),
        ("cat/desktop.ini", True),
    ],
)
def test_junk_detection(path, ignored):
    assert (ignored_reason(path) is not None) == ignored


def test_layout_placement():
    assert detect_split_layout(["train/cat/1.jpg", "x/y.jpg"])
    assert not detect_split_layout(["cat/1.jpg", "train/1.jpg"])
    assert place("train/cat/1.jpg", True).split == "train"
    assert place("cat/sub/1.jpg", False).label == "cat"
    for bad, given in [("1.jpg", False), ("other/cat/1.jpg", True), ("train/1.jpg", True), ("cat/../x.jpg", False)]:
        with pytest.raises(LayoutError):
            place(bad, given)


def test_split_ratio_parsing():
    assert parse_split_ratios("80/10/10") == (0.8, 0.1, 0.1)
    assert parse_split_ratios("0.7:0.15:0.15") == (0.7, 0.15, 0.15)
    assert parse_split_ratios("1/1/0") == (0.5, 0.5, 0.0)
    for bad in ("80/20", "0/50/50", "a/b/c", "-1/1/1"):
        with pytest.raises(ValueError):
            parse_split_ratios(bad)


def test_hash_split_follows_the_ratios_and_depends_only_on_path_and_seed():
    paths = [f"label/{n}.jpg" for n in range(4000)]
    splits = [hash_split(p, (0.8, 0.1, 0.1), 0) for p in paths]
    share = splits.count("train") / len(paths)
    assert 0.77 < share < 0.83
    assert 0.08 < splits.count("test") / len(paths) < 0.12
    assert splits == [hash_split(p, (0.8, 0.1, 0.1), 0) for p in paths]
    assert splits != [hash_split(p, (0.8, 0.1, 0.1), 1) for p in paths]
