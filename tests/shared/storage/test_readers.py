"""Blob readers on a real Azurite: the ETag-pinned range reader, the buffered reader under zipfile, the
dataset source."""

from __future__ import annotations

import hashlib
import io
import json
import os
import zipfile

import pytest

import shared.storage.readers as readers
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


# --- worker processes' reader: plain GETs with a read-only SAS ------------------------------------------


def test_sas_reader_reads_blobs_from_any_process(container):
    import pickle

    files = {"cat/a b.jpg": b"spaces", "cat/é+%.jpg": b"unicode and escapes", "dog/empty.jpg": b""}
    for name, body in files.items():
        container.upload_blob(f"pets/{name}", body)
    reader = pickle.loads(pickle.dumps(BlobDatasetSource(container, "pets").process_reader()))
    for name, body in files.items():
        assert reader.read(name, None, 1000) == body, name
    etag = container.get_blob_client("pets/cat/a b.jpg").get_blob_properties().etag
    assert reader.read("cat/a b.jpg", etag, 1000) == b"spaces"
    assert "sig=" in reader.sas and "sp=rl&" in reader.sas  # read and list only


def test_listing_with_the_sas_finds_what_the_sdk_lists(container, monkeypatch):
    from concurrent.futures import ThreadPoolExecutor

    names = [f"pets/{'cat' if k % 2 else 'dog'}/{k:03d}.jpg" for k in range(95)]
    names += ["pets/cat/a b&<é>.jpg", "pets/cat/%41.jpg", "pets/_READY", "petshop/cat/9.png"]
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda name: container.upload_blob(name, name.encode() * 3), names))
    source = BlobDatasetSource(container, "pets")
    listed = {(e.path, e.size, e.etag) for e in source.entries()}
    sdk = {(path, size, etag) for path, size, etag in source._sdk_entries() if path != "_READY"}
    assert listed == sdk and len(listed) == 97
    odd = "pets/cat/a b&<é>.jpg"
    etag = container.get_blob_client(odd).get_blob_properties().etag.strip('"')
    assert (odd[len("pets/") :], 3 * len(odd.encode()), etag) in listed
    # a page at a time: 10 blobs per request here
    requests: list[str] = []
    real_get, real_entries = readers.SasBlobReader._get, readers.SasBlobReader.entries
    monkeypatch.setattr(readers.SasBlobReader, "_get", lambda self, url, *a: (requests.append(url), real_get(self, url, *a))[1])
    monkeypatch.setattr(readers.SasBlobReader, "entries", lambda self: real_entries(self, page_size=10))
    assert {(e.path, e.size, e.etag) for e in BlobDatasetSource(container, "pets").entries()} == listed
    assert len(requests) == 10 and all("comp=list" in url and "maxresults=10" in url for url in requests)


def test_without_a_sas_the_sdk_lists(container, monkeypatch, caplog):
    container.upload_blob("pets/cat/1.jpg", b"1")

    def no_sas(_container):
        raise PermissionError("no role to get a user delegation key")

    monkeypatch.setattr(readers, "container_read_sas", no_sas)
    assert [(e.path, e.size) for e in BlobDatasetSource(container, "pets").entries()] == [("cat/1.jpg", 1)]
    assert "with the Storage SDK: the SAS cannot be used (no role to get" in caplog.text


def test_a_sas_the_service_refuses_leaves_listing_and_reading_to_the_sdk(container, monkeypatch, caplog, tmp_path):
    from shared.conversion import ConvertOptions, FolderSink, convert_dataset
    from tests.shared.conversion import image_cases as cases

    for name, body in cases.good_set(("cat", "dog"), per_label=10).items():
        container.upload_blob(f"pets/{name}", body)
    reference = convert_dataset(BlobDatasetSource(container, "pets"), FolderSink(tmp_path / "sas"), ConvertOptions(workers=2))

    def refused(self, url, headers, what):
        raise OSError(f"GET {what} answered HTTP 403 AuthorizationFailure")

    monkeypatch.setattr(readers.SasBlobReader, "_get", refused)
    source = BlobDatasetSource(container, "pets")
    result = convert_dataset(source, FolderSink(tmp_path / "sdk"), ConvertOptions(workers=2))
    assert result.version == reference.version and not result.rejected
    assert "listing and reading pets/ with the Storage SDK: the SAS cannot be used (GET the list of pets/ answered " \
        "HTTP 403 AuthorizationFailure)" in caplog.text
    with pytest.raises(PermissionError, match="cannot be used"):
        source.process_reader()


def test_sas_reader_reads_at_most_one_byte_past_the_limit(container):
    container.upload_blob("pets/big.jpg", os.urandom(5000))
    reader = BlobDatasetSource(container, "pets").process_reader()
    assert len(reader.read("big.jpg", None, 1000)) == 1001  # enough to say "too large", not the whole file


def test_sas_reader_refuses_a_blob_replaced_since_it_was_listed(container):
    container.upload_blob("pets/cat/1.jpg", b"first")
    listed = next(iter(BlobDatasetSource(container, "pets").entries()))
    container.upload_blob("pets/cat/1.jpg", b"second", overwrite=True)
    reader = BlobDatasetSource(container, "pets").process_reader()
    with pytest.raises(BlobChangedError, match="cat/1.jpg changed since the drop was listed"):
        reader.read(listed.path, listed.etag, 1000)


def test_sas_reader_errors_name_the_blob_never_the_signature(container, monkeypatch):
    import shared.storage.readers as readers

    reader = BlobDatasetSource(container, "pets").process_reader()
    with pytest.raises(OSError, match="pets/missing.jpg answered HTTP 404 BlobNotFound") as missing:
        reader.read("missing.jpg", None, 1000)
    monkeypatch.setattr(readers, "_RETRY_DELAYS", (0.0, 0.0))
    closed = socket_port_nobody_listens_on()
    unreachable = readers.SasBlobReader(f"http://127.0.0.1:{closed}/devstoreaccount1/c", "pets/", reader.sas)
    with pytest.raises(OSError, match="GET pets/x.jpg failed") as refused:
        unreachable.read("x.jpg", None, 1000)
    signature = [part for part in reader.sas.split("&") if part.startswith("sig=")][0]
    for error in (missing.value, refused.value):
        assert signature not in str(error) and signature.split("=", 1)[1] not in str(error)


def test_sas_reader_retries_a_busy_server(container, monkeypatch):
    import shared.storage.readers as readers

    container.upload_blob("pets/cat/1.jpg", b"photo")
    reader = BlobDatasetSource(container, "pets").process_reader()
    answers = iter([503, 500])
    real = readers._http()

    class Busy:
        def request(self, method, url, **kwargs):
            status = next(answers, None)
            if status is None:
                return real.request(method, url, **kwargs)
            response = real.request(method, url.replace("cat/1.jpg", "nothing-here"), **kwargs)
            response.status = status
            return response

    monkeypatch.setattr(readers, "_RETRY_DELAYS", (0.0, 0.0, 0.0))
    monkeypatch.setattr(readers, "_http", lambda: Busy())
    assert reader.read("cat/1.jpg", None, 1000) == b"photo"


def test_workers_reading_blobs_convert_what_one_process_converts(container, tmp_path):
    from shared.conversion import ConvertOptions, FolderSink, convert_dataset
    from tests.shared.conversion import image_cases as cases

    files = cases.good_set(("cat", "dog"), per_label=10)
    files["dog/notes.jpg"] = b"not an image"
    for name, body in files.items():
        container.upload_blob(f"pets/{name}", body)
    plain = BlobDatasetSource(container, "pets")
    plain.process_reader = None  # the Storage SDK's download, as without a SAS  # type: ignore[assignment,method-assign]
    sdk = convert_dataset(plain, FolderSink(tmp_path / "sdk"), ConvertOptions(workers=1))
    source = BlobDatasetSource(container, "pets")
    source.read = None  # never the SDK's download: the SAS reader, here and in the workers  # type: ignore[method-assign]
    one = convert_dataset(source, FolderSink(tmp_path / "one"), ConvertOptions(workers=1))
    two = convert_dataset(source, FolderSink(tmp_path / "two"), ConvertOptions(workers=2))
    assert one.version == sdk.version
    assert two.stats["workers"] == 2 and two.version == one.version
    for name in ("train.jsonl", "validation.jsonl", "test.jsonl", "rejected.json", "manifest.json"):
        assert (tmp_path / "two" / name).read_bytes() == (tmp_path / "one" / name).read_bytes(), name
        assert (tmp_path / "sdk" / name).read_bytes() == (tmp_path / "one" / name).read_bytes(), name
    assert [r["path"] for r in two.rejected] == ["dog/notes.jpg"]


def socket_port_nobody_listens_on() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_sas_reader_retries_a_dropped_connection_at_once(container, monkeypatch):
    """A GET whose connection fails without an answer (a pooled connection the server just closed) is sent
    again at once; only answers asking to slow down wait ``_RETRY_DELAYS``."""
    import time

    import urllib3

    import shared.storage.readers as readers

    container.upload_blob("pets/cat/1.jpg", b"photo")
    reader = BlobDatasetSource(container, "pets").process_reader()
    real = readers._http()
    failures = []

    class DroppedOnce:
        def request(self, method, url, **kwargs):
            if not failures:
                failures.append(url)
                raise urllib3.exceptions.ProtocolError("Connection aborted.", ConnectionResetError(104, "reset"))
            return real.request(method, url, **kwargs)

    monkeypatch.setattr(readers, "_http", lambda: DroppedOnce())
    started = time.monotonic()
    assert reader.read("cat/1.jpg", None, 1000) == b"photo"
    assert len(failures) == 1 and time.monotonic() - started < readers._RETRY_DELAYS[0]
