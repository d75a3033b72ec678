"""Hostile archives and folders (issue 13, item 3): unsafe zip names, repeated names, special files,
ambiguous layouts, damaged pixels and extreme shapes are all reported, never silently lost or waited on.
Every hostile file is made here, for real."""

from __future__ import annotations

import json
import os
import stat
import threading
import zipfile
from pathlib import Path

import pytest

from shared.conversion import (
    DatasetError,
    FolderSource,
    ZipSource,
)
from shared.conversion.images import ImageSettings, normalise_image
from shared.conversion.sources import normalise_entry_name, read_regular_file
from tests.fixtures.conversion import convert_to_folder
from tests.shared.conversion import image_cases as cases


def by_path(result) -> dict[str, list[dict]]:
    found: dict[str, list[dict]] = {}
    for item in result.rejected:
        found.setdefault(item["path"], []).append(item)
    return found


def zip_with(path: Path, entries: list[tuple[str | zipfile.ZipInfo, bytes]]) -> Path:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns about duplicate names: that is the point
        with zipfile.ZipFile(path, "w") as archive:
            for name, data in entries:
                archive.writestr(name, data)
    return path


@pytest.mark.parametrize(
    ("name", "unsafe"),
    [
        ("cat/1.jpg", None),
        ("cat\\1.jpg", None),
        ("./cat/1.jpg", None),
        ("C:\\Windows\\evil.jpg", "drive letter"),
        ("c:evil.jpg", "drive letter"),
        ("/etc/evil.jpg", "absolute path"),
        ("\\\\server\\share\\evil.jpg", "absolute path"),
        ("cat/../../evil.jpg", "'..'"),
        ("..\\evil.jpg", "'..'"),
        ("cat//evil.jpg", "empty"),
        ("cat/\x00evil.jpg", "NUL"),
    ],
)
def test_zip_entry_names_are_normalised_and_checked(name, unsafe):
    cleaned, problem = normalise_entry_name(name)
    assert "\\" not in cleaned
    if unsafe is None:
        assert problem is None and cleaned == "cat/1.jpg"
    else:
        assert problem is not None and unsafe in problem


def test_unsafe_and_repeated_zip_entries_are_reported_by_name(tmp_path):
    good = sorted(cases.good_set(("cat", "dog"), per_label=12).items())
    link = zipfile.ZipInfo("cat/link.jpg")
    link.create_system = 3
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    archive = zip_with(
        tmp_path / "hostile.zip",
        [(name, data) for name, data in good]
        + [
            ("C:\\Windows\\evil.jpg", cases.photo_jpeg(seed=901)),
            ("..\\..\\evil.jpg", cases.photo_jpeg(seed=902)),
            ("/etc/evil.jpg", cases.photo_jpeg(seed=903)),
            ("cat/../../evil.jpg", cases.photo_jpeg(seed=904)),
            (good[0][0], cases.photo_jpeg(seed=905)),  # same name, different bytes
            (good[0][0], cases.photo_jpeg(seed=906)),
            (link, b"/etc/passwd"),
        ],
    )
    with ZipSource(archive) as source:
        result = convert_to_folder(source, tmp_path / "out")
    rejected = by_path(result)
    assert sorted(result.manifest["labels"]) == ["cat", "dog"]  # no label "C:" or ".."
    for name in ("C:/Windows/evil.jpg", "../../evil.jpg", "/etc/evil.jpg", "cat/../../evil.jpg"):
        (item,) = rejected[name]
        assert item["code"] == "outside_layout"
    assert "drive letter" in rejected["C:/Windows/evil.jpg"][0]["reason"]
    assert [i["code"] for i in rejected[good[0][0]]] == ["duplicate_name", "duplicate_name"]
    assert rejected["cat/link.jpg"][0]["code"] == "not_a_file"
    # Every entry of the archive is used, rejected or ignored: nothing vanishes.
    with zipfile.ZipFile(archive) as handle:
        total = len([i for i in handle.infolist() if not i.is_dir()])
    assert result.manifest["examples"] + len(result.rejected) + len(result.manifest["ignored"]) == total
    assert result.manifest["source"]["files"] == total
    on_disk = json.loads((tmp_path / "out" / "rejected.json").read_text())
    assert on_disk == result.rejected


@pytest.mark.parametrize("workers", [1, 2])
def test_a_fifo_in_the_dataset_is_reported_and_never_opened(tmp_path, workers):
    root = cases.write(tmp_path / "data", cases.good_set(("cat", "dog"), per_label=12))
    os.mkfifo(root / "cat" / "pipe.jpg")
    outcome: dict = {}

    def convert() -> None:
        try:
            outcome["result"] = convert_to_folder(FolderSource(root), tmp_path / "out", workers=workers)
        except BaseException as exc:  # noqa: BLE001 - reported to the test thread
            outcome["error"] = exc

    thread = threading.Thread(target=convert, daemon=True)
    thread.start()
    thread.join(60)
    if thread.is_alive():  # unblock the reader so the test process can end, then fail
        with open(root / "cat" / "pipe.jpg", "wb"):
            pass
        pytest.fail("the conversion blocked on a FIFO")
    assert "error" not in outcome, outcome.get("error")
    (item,) = by_path(outcome["result"])["cat/pipe.jpg"]
    assert item["code"] == "not_a_file" and "FIFO" in item["reason"]


def test_a_fifo_swapped_in_after_listing_is_not_waited_on(tmp_path):
    os.mkfifo(tmp_path / "pipe")
    with pytest.raises(OSError, match="FIFO"):
        read_regular_file(str(tmp_path / "pipe"))
    (tmp_path / "file").write_bytes(b"12345")
    assert read_regular_file(str(tmp_path / "file"), 2) == b"123"


def test_a_socket_in_the_dataset_is_reported(tmp_path):
    import socket

    root = cases.write(tmp_path / "data", cases.good_set(("cat", "dog"), per_label=12))
    server = socket.socket(socket.AF_UNIX)
    try:
        server.bind(str(root / "dog" / "sock.png"))
        result = convert_to_folder(FolderSource(root), tmp_path / "out")
    finally:
        server.close()
    (item,) = by_path(result)["dog/sock.png"]
    assert item["code"] == "not_a_file" and "socket" in item["reason"]


def test_label_folders_next_to_split_folders_stop_with_an_explanation(tmp_path):
    files = cases.good_set(("cat", "dog"), per_label=12)
    files["train/sub/odd.jpg"] = cases.photo_jpeg(seed=950)  # a label called "train" with a sub-folder
    root = cases.write(tmp_path / "data", files)
    with pytest.raises(DatasetError) as caught:
        convert_to_folder(FolderSource(root), tmp_path / "out")
    message = str(caught.value)
    assert "ambiguous layout" in message and "train/" in message and "cat/" in message and "dog/" in message
    assert not (tmp_path / "out").exists()


def test_a_clean_split_layout_is_not_ambiguous(tmp_path):
    files = {f"train/{k}": v for k, v in cases.good_set(("cat", "dog"), per_label=12).items()}
    files.update({f"test/{k}": v for k, v in cases.good_set(("cat", "dog"), per_label=2, start=100).items()})
    result = convert_to_folder(FolderSource(cases.write(tmp_path / "data", files)), tmp_path / "out")
    assert result.manifest["split"]["given"] is True


def _damaged(data: bytes, at: float) -> bytes:
    damaged = bytearray(data)
    start = int(len(data) * at)
    for index in range(start, start + 64):
        damaged[index] ^= 0x5A
    return bytes(damaged)


@pytest.mark.parametrize(
    ("make", "code"),
    [
        (lambda png, jpeg: _damaged(png, 0.5), "corrupt"),  # header and metadata fine, IDAT damaged
        (lambda png, jpeg: png[: len(png) // 2], "truncated"),
        (lambda png, jpeg: png[: len(png) // 2] + png[-12:], "truncated"),  # cut, IEND put back
        (lambda png, jpeg: jpeg[: len(jpeg) // 2], "truncated"),
    ],
)
def test_damaged_pixel_data_is_rejected_even_when_the_header_reads(make, code):
    picture = cases.pattern(300, 200, seed=3)
    data = make(cases.encode(picture, "PNG"), cases.encode(picture, "JPEG", quality=90))
    result = normalise_image(data, ImageSettings())
    assert not result.ok and result.code == code, result


def test_damaged_png_is_in_rejected_json(tmp_path):
    files = cases.good_set(("cat", "dog"), per_label=12)
    files["cat/damaged.png"] = _damaged(cases.encode(cases.pattern(300, 200, seed=4), "PNG"), 0.5)
    result = convert_to_folder(FolderSource(cases.write(tmp_path / "data", files)), tmp_path / "out", workers=2)
    (item,) = by_path(result)["cat/damaged.png"]
    assert item["code"] == "corrupt" and "pixel data" in item["reason"]


def test_extreme_shapes_are_reported_with_configurable_limits(tmp_path):
    files = cases.good_set(("cat", "dog"), per_label=12)
    files["cat/sliver.png"] = cases.encode(cases.pattern(2000, 40, seed=7), "PNG")  # 50:1
    files["dog/tiny.png"] = cases.encode(cases.pattern(5, 40, seed=8), "PNG")
    root = cases.write(tmp_path / "data", files)
    rejected = by_path(convert_to_folder(FolderSource(root), tmp_path / "out"))
    assert rejected["cat/sliver.png"][0]["code"] == "extreme_aspect_ratio"
    assert "50.0:1" in rejected["cat/sliver.png"][0]["reason"]
    assert rejected["dog/tiny.png"][0]["code"] == "too_small"
    relaxed = by_path(convert_to_folder(FolderSource(root), tmp_path / "out2", min_side=4, max_aspect_ratio=60))
    assert "cat/sliver.png" not in relaxed and "dog/tiny.png" not in relaxed
    with pytest.raises(ValueError, match="max_aspect_ratio"):
        convert_to_folder(FolderSource(root), tmp_path / "out3", max_aspect_ratio=0.5)


SECRET = b"-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n"


@pytest.mark.parametrize(
    ("content", "kind"),
    [
        (SECRET, "a text file"),
        (b"%PDF-1.7 secret contract", "a PDF document"),
        (b"\x7fELF\x02\x01\x01secret", "a Linux program"),
        (b"\x00\x00\x00\x18ftypheic\x00\x00", "a HEIC photo"),
        (b"<!DOCTYPE html><title>secret</title>", "an HTML page"),
        (bytes(range(200, 256)) * 3, "binary data of an unknown type"),
    ],
)
def test_a_rejection_names_a_detected_type_never_the_bytes(content, kind):
    result = normalise_image(content, ImageSettings())
    assert result.code == "not_an_image" and kind in result.reason
    for leak in (b"BEGIN", b"secret", b"b3Bl", content[:8]):
        assert leak.decode("latin-1") not in result.reason and leak.hex(" ") not in result.reason


def test_a_link_to_a_secret_file_does_not_leak_into_rejected_json(tmp_path):
    root = cases.write(tmp_path / "data", cases.good_set(("cat", "dog"), per_label=12))
    (tmp_path / "id_ed25519").write_bytes(SECRET)
    os.symlink(tmp_path / "id_ed25519", root / "cat" / "key.jpg")
    convert_to_folder(FolderSource(root), tmp_path / "out")
    written = (tmp_path / "out" / "rejected.json").read_text() + (tmp_path / "out" / "manifest.json").read_text()
    assert "key.jpg" in written and "a text file" in written
    assert "BEGIN" not in written and "OPENSSH" not in written and "b3Bl" not in written
