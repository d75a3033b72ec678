"""Blob adapters on a real Azurite: range reader, staged-block writer, artifact sink, dataset source."""

from __future__ import annotations

import hashlib
import io
import json
import os
import zipfile

import pytest

from shared.storage import (
    STAGING_PREFIX,
    BlobArtifactSink,
    BlobChangedError,
    BlobDatasetSource,
    BlobRangeReader,
    BlockBlobWriter,
    open_blob_reader,
)


@pytest.fixture
def container(blob_service, fresh_container):
    return blob_service.get_container_client(fresh_container)


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


def test_block_writer_stages_blocks_and_commits_on_close(container):
    blob = container.get_blob_client("out.jsonl")
    payload = os.urandom(2_500_000)
    writer = BlockBlobWriter(blob, block_size=1_000_000)
    for start in range(0, len(payload), 70_000):
        writer.write(payload[start : start + 70_000])
    assert not blob.exists()  # nothing visible until commit
    writer.close()
    assert blob.download_blob().readall() == payload
    assert len(blob.get_block_list("committed")[0]) == 3


def test_block_writer_writes_an_empty_blob(container):
    writer = BlockBlobWriter(container.get_blob_client("empty.jsonl"))
    writer.close()
    assert container.get_blob_client("empty.jsonl").download_blob().readall() == b""


class RecordingContainer:
    """A real ContainerClient whose blob clients record the targets of server-side copies, in order."""

    def __init__(self, container, copied):
        self._container, self._copied = container, copied

    def __getattr__(self, name):
        return getattr(self._container, name)

    def get_blob_client(self, name):
        blob, copied = self._container.get_blob_client(name), self._copied

        class Recording:
            def __getattr__(self, attr):
                return getattr(blob, attr)

            def start_copy_from_url(self, url, **kwargs):
                copied.append(name)
                return blob.start_copy_from_url(url, **kwargs)

        return Recording()


def write_artifacts(sink, names_and_bodies):
    for name, body in names_and_bodies:
        with sink.open(name) as stream:
            stream.write(body)


def test_sink_publishes_manifest_last_and_cleans_staging(container):
    published_before = []

    def before_publish(version):
        # called before anything is published: the final prefix is still empty
        published_before.append([b.name for b in container.list_blobs(name_starts_with="digits/")])

    copied = []
    sink = BlobArtifactSink(
        RecordingContainer(container, copied), "digits", block_size=64 * 1024, before_publish=before_publish
    )
    bodies = [
        ("train.jsonl", os.urandom(200_000)),
        ("validation.jsonl", b""),
        ("test.jsonl", b"{}\n"),
        ("rejected.json", b"[]"),
        ("manifest.json", json.dumps({"version": "abc"}).encode()),
    ]
    write_artifacts(sink, bodies)
    # staged under _staging/ with a suffix no trigger matches
    staged = [b.name for b in container.list_blobs(name_starts_with=STAGING_PREFIX)]
    assert len(staged) == 5 and all(n.endswith(".part") for n in staged)
    assert json.loads(sink.read_staged("manifest.json")) == {"version": "abc"}
    sink.commit("abc")
    assert published_before == [[]]
    assert sink.published
    blobs = {b.name: b for b in container.list_blobs(name_starts_with="digits/abc/")}
    assert sorted(blobs) == sorted(f"digits/abc/{n}" for n, _ in bodies)
    for name, body in bodies:
        assert container.get_blob_client(f"digits/abc/{name}").download_blob().readall() == body
    assert copied == [f"digits/abc/{n}" for n, _ in bodies]  # in order, manifest.json last
    assert list(container.list_blobs(name_starts_with=STAGING_PREFIX)) == []


def test_sink_does_not_republish_an_existing_version(container):
    container.upload_blob("digits/v1/manifest.json", b'{"version":"v1"}')
    etag = container.get_blob_client("digits/v1/manifest.json").get_blob_properties().etag
    called = []
    sink = BlobArtifactSink(container, "digits", before_publish=called.append)
    write_artifacts(sink, [("train.jsonl", b"x"), ("manifest.json", b'{"version":"v1"}')])
    sink.commit("v1")
    assert not sink.published and called == []
    assert container.get_blob_client("digits/v1/manifest.json").get_blob_properties().etag == etag
    assert not container.get_blob_client("digits/v1/train.jsonl").exists()
    assert list(container.list_blobs(name_starts_with=STAGING_PREFIX)) == []


def test_sink_refuses_commit_without_manifest(container):
    sink = BlobArtifactSink(container, "digits")
    write_artifacts(sink, [("train.jsonl", b"x")])
    with pytest.raises(ValueError, match="manifest.json"):
        sink.commit("v1")


def test_sink_drops_an_artifact_whose_writer_failed(container):
    sink = BlobArtifactSink(container, "digits")
    with pytest.raises(RuntimeError):
        with sink.open("train.jsonl") as stream:
            stream.write(b"partial")
            raise RuntimeError("converter crashed")
    assert not any(b.name.endswith("train.jsonl.part") for b in container.list_blobs())


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
