"""Block-blob writers on a real Azurite: the staged-block writer and the artifact sink."""

from __future__ import annotations

import json
import os

import pytest

from shared.storage.writers import STAGING_PREFIX, BlobArtifactSink, BlockBlobWriter


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
