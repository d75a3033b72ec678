"""Blob readers on a real Azurite: the ETag-pinned range reader, the buffered reader under zipfile, the
dataset source."""

from __future__ import annotations

import hashlib
import io
import json
import os
import zipfile

import pytest

from shared.storage.readers import (
    BlobChangedError,
    BlobDatasetSource,
    BlobRangeReader,
    open_blob_reader,
    read_bytes,
    read_json,
)


class CountingBlob:
    """Wraps a real BlobClient and counts the ranged downloads (the reader must not fetch whole blobs)."""

    def __init__(self, blob):
        self._blob = blob
        self.ranges: list[tuple[int, int]] = []

    def __getattr__(self, name):
        return getattr(self._blob, name)

    def download_blob(self, offset=None, length=None, **kwargs):
        self.ranges.append((offset, length))
        return self._blob.download_blob(offset=offset, length=length, **kwargs)


def test_range_reader_seeks_and_reads_like_a_file(container):
    data = os.urandom(300_000)
    container.upload_blob("big.bin", data)
    blob = CountingBlob(container.get_blob_client("big.bin"))
    raw = BlobRangeReader(blob)
    assert raw.size == len(data)
    raw.seek(1000)
    assert raw.read(10) == data[1000:1010]
    raw.seek(-5, io.SEEK_END)
    assert raw.read() == data[-5:]
    assert raw.read(10) == b""
    raw.seek(0)
    assert raw.read(len(data) + 100) == data
    # every download was a bounded range, never the whole blob without a length
    assert all(length is not None for _, length in blob.ranges)


def test_range_reader_refuses_a_blob_replaced_mid_read(container):
    container.upload_blob("x.bin", b"a" * 1000)
    raw = BlobRangeReader(container.get_blob_client("x.bin"))
    assert raw.read(10) == b"a" * 10
    container.upload_blob("x.bin", b"b" * 1000, overwrite=True)
    with pytest.raises(BlobChangedError, match="changed while it was being read"):
        raw.read(10)


def test_range_reader_pinned_to_an_etag_refuses_a_blob_replaced_since(container):
    """A fan-out's shard opens the archive pinned to the ETag its plan saw: the version it planned or nothing."""
    container.upload_blob("x.bin", b"a" * 1000)
    planned = BlobRangeReader(container.get_blob_client("x.bin"))
    pinned = BlobRangeReader(container.get_blob_client("x.bin"), planned.etag)
    assert pinned.etag == planned.etag and pinned.read(3) == b"aaa"
    container.upload_blob("x.bin", b"b" * 1000, overwrite=True)
    with pytest.raises(BlobChangedError, match="no longer the version"):
        BlobRangeReader(container.get_blob_client("x.bin"), planned.etag)
    with pytest.raises(BlobChangedError, match="changed while it was being read"):
        pinned.read(3)
    replaced = BlobRangeReader(container.get_blob_client("x.bin")).etag
    with open_blob_reader(container.get_blob_client("x.bin"), etag=replaced) as current:
        assert current.read(3) == b"bbb"


def test_zipfile_reads_through_the_buffered_reader_with_few_requests(container):
    buffer = io.BytesIO()
    members = {f"cat/{i}.bin": os.urandom(20_000) for i in range(20)}
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as archive:
        for name, payload in members.items():
            archive.writestr(name, payload)
    container.upload_blob("set.zip", buffer.getvalue())
    blob = CountingBlob(container.get_blob_client("set.zip"))
    with open_blob_reader(blob, buffer_size=64 * 1024) as reader, zipfile.ZipFile(reader) as archive:
        assert sorted(archive.namelist()) == sorted(members)
        for name, payload in members.items():
            assert archive.read(name) == payload
    assert len(blob.ranges) < 40  # 400 KB read with a 64 KB buffer, not one request per small read


def test_dataset_source_lists_relative_paths_without_the_marker(container):
    pytest.importorskip("shared.conversion.sources")
    files = {"cat/1.png": b"1", "dog/2.png": b"22", "train/cat/3.png": b"333"}
    for name, body in files.items():
        container.upload_blob(f"pets/{name}", body)
    container.upload_blob("pets/_READY", b"")
    container.upload_blob("petshop/cat/9.png", b"other dataset with a shared prefix")
    source = BlobDatasetSource(container, "pets")
    entries = sorted(source.entries(), key=lambda e: e.path)
    assert [(e.path, e.size) for e in entries] == [(n, len(b)) for n, b in sorted(files.items())]
    assert source.read("dog/2.png") == b"22"
    assert hashlib.sha256(source.read("train/cat/3.png")).digest() == hashlib.sha256(b"333").digest()


def test_dataset_source_lists_a_drop_larger_than_one_page(container, monkeypatch):
    from concurrent.futures import ThreadPoolExecutor

    import shared.storage.readers as readers

    monkeypatch.setattr(readers, "LIST_PAGE_SIZE", 40)
    names = [f"pets/{'cat' if k % 2 else 'dog'}/{k:04d}.jpg" for k in range(130)]
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda name: container.upload_blob(name, name.encode()), names))
    entries = list(BlobDatasetSource(container, "pets/").entries())
    assert sorted(e.path for e in entries) == sorted(name[len("pets/") :] for name in names)


def test_read_json_reads_a_document_or_says_none(container):
    container.upload_blob("doc.json", json.dumps({"a": [1, 2]}).encode())
    assert read_json(container, "doc.json") == {"a": [1, 2]}
    assert read_json(container, "missing.json") is None


def test_read_bytes_reads_a_blob_or_says_none(container):
    container.upload_blob("doc.bin", b"\x00\xffmanifest")
    assert read_bytes(container, "doc.bin") == b"\x00\xffmanifest"
    assert read_bytes(container, "missing.bin") is None
