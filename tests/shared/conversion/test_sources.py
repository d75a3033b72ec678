"""Sources: folders, zips, and the junk they may hold."""

from __future__ import annotations

import io
import zipfile

import pytest

from shared.conversion.sources import FolderSource, ZipSource, ignored_reason, open_source


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
