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
    # the data files (copied at once, in any order), then manifest.json, last
    assert sorted(copied[:-1]) == sorted(f"digits/abc/{n}" for n, _ in bodies[:-1])
    assert copied[-1] == "digits/abc/manifest.json"
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


# ------------------------------------------------------------------------------------------------------
# blocks of whole lines, and assembling from a base whose committed blocks are reused


def test_block_writer_with_whole_writes_ends_blocks_where_writes_end(container):
    blob = container.get_blob_client("lines.jsonl")
    lines = [bytes([97 + k % 26]) * (30_000 + 1_000 * k) + b"\n" for k in range(20)]
    writer = BlockBlobWriter(blob, block_size=100_000, whole_writes=True)
    for line in lines:
        writer.write(line)
    writer.close()
    assert blob.download_blob().readall() == b"".join(lines)
    ends, total = set(), 0
    for line in lines:
        total += len(line)
        ends.add(total)
    sizes = [block.size for block in blob.get_block_list("committed")[0]]
    assert len(sizes) > 1 and all(size >= 100_000 for size in sizes[:-1])
    position = 0
    for size in sizes:
        position += size
        assert position in ends  # every block ends at the end of a line


def test_sink_stages_jsonl_in_blocks_of_whole_lines(container):
    sink = BlobArtifactSink(container, "pets", line_block_size=50_000)
    lines = [os.urandom(20_000).hex().encode()[: 20_000 + k] + b"\n" for k in range(12)]
    with sink.open("train.jsonl") as stream:
        for line in lines:
            stream.write(line)
    staged = container.get_blob_client(f"{sink._staging}train.jsonl.part")
    sizes = [block.size for block in staged.get_block_list("committed")[0]]
    assert sum(sizes) == sum(map(len, lines)) and len(sizes) == 4  # 3 lines (> 50,000 bytes) per block


def _base(container, name, blocks):
    """A blob committed from ``blocks`` the way the sink stages them (IDs of ours)."""
    writer = BlockBlobWriter(container.get_blob_client(name), block_size=1, whole_writes=True)
    for block in blocks:
        writer.write(block)
    writer.close()
    return b"".join(blocks)


def test_assemble_from_a_base_commits_its_whole_blocks_again_and_rewrites_only_the_cut_ones(container):
    blocks = [bytes([65 + k]) * (10_000 + 100 * k) for k in range(10)]
    base = _base(container, "pets/v1/train.jsonl", blocks)
    starts = [sum(len(b) for b in blocks[:k]) for k in range(11)]
    segments = [
        ("pets/v1/train.jsonl", starts[2], starts[6] - starts[2]),  # blocks 2-5, whole
        b"new line\n",
        ("pets/v1/train.jsonl", starts[6], starts[7] - starts[6] - 50),  # block 6 but its last 50 bytes
        ("pets/v1/train.jsonl", starts[0] + 10, starts[2] - 10),  # the end of block 0, block 1 whole
        ("pets/v1/train.jsonl", starts[9], starts[10] - starts[9]),  # block 9, whole
    ]
    expected = base[starts[2] : starts[6]] + b"new line\n" + base[starts[6] : starts[7] - 50]
    expected += base[10 : starts[2]] + base[starts[9] :]
    sink = BlobArtifactSink(container, "pets")
    assert sink.assemble("train.jsonl", segments, base="pets/v1/train.jsonl") == len(expected)
    staged = container.get_blob_client(f"{sink._staging}train.jsonl.part")
    assert staged.download_blob().readall() == expected
    stats = sink.assemblies["train.jsonl"]
    assert stats.base_blocks_usable and stats.blocks_committed_again == 6  # 2, 3, 4, 5, 1, 9
    assert stats.bytes_read_back == (starts[7] - starts[6] - 50) + (starts[1] - 10)  # the cut blocks only
    assert stats.bytes_uploaded == len(b"new line\n") and stats.bytes_copied == 0
    # the new line, the cut block 6 and the end of block 0 that follow it went up as one block
    assert len(staged.get_block_list("committed")[0]) == 6 + 1


def test_assemble_copies_ranges_when_the_copy_of_the_base_lost_its_block_list(container, monkeypatch):
    """Learn does not say that Copy Blob keeps the block list: if a copy comes back as one block (or as
    blocks that are not ours), every range is copied with Put Block From URL and the bytes are the same."""
    from azure.storage.blob import BlobBlock, BlobClient

    blocks = [bytes([97 + k]) * 5_000 for k in range(6)]
    base = _base(container, "pets/v1/train.jsonl", blocks)

    def one_block(self, block_list_type="committed", **kwargs):
        merged = BlobBlock(block_id="c29tZWJvZHkgZWxzZQ==")
        merged.size = len(base)
        return [merged], []

    monkeypatch.setattr(BlobClient, "get_block_list", one_block)
    sink = BlobArtifactSink(container, "pets")
    segments = [("pets/v1/train.jsonl", 0, 15_000), b"x\n", ("pets/v1/train.jsonl", 15_000, 15_000)]
    sink.assemble("train.jsonl", segments, base="pets/v1/train.jsonl")
    staged = container.get_blob_client(f"{sink._staging}train.jsonl.part")
    assert staged.download_blob().readall() == base[:15_000] + b"x\n" + base[15_000:]
    stats = sink.assemblies["train.jsonl"]
    assert not stats.base_blocks_usable and stats.bytes_copied == len(base)


def test_committed_blocks_cover_a_range_with_whole_blocks_and_partial_ends():
    from shared.storage.writers import CommittedBlocks

    blocks = CommittedBlocks(["a", "b", "c"], [10, 20, 30])
    assert blocks.cover(0, 60) == ["a", "b", "c"]
    assert blocks.cover(5, 50) == [(5, 10), "b", (30, 55)]
    assert blocks.cover(12, 5) == [(12, 17)]  # inside one block: a partial piece only
    assert blocks.cover(10, 20) == ["b"]
    assert blocks.cover(30, 0) == []
    with pytest.raises(ValueError):
        blocks.cover(50, 20)


def test_block_writer_staging_blocks_concurrently_keeps_their_order(container):
    blob = container.get_blob_client("many.jsonl")
    lines = [f"{k:05d}".encode() * (1_000 + k) + b"\n" for k in range(60)]
    writer = BlockBlobWriter(blob, block_size=10_000, whole_writes=True, concurrency=8)
    for line in lines:
        writer.write(line)
    writer.close()
    assert blob.download_blob().readall() == b"".join(lines)


def test_block_writer_fails_when_a_block_could_not_be_staged(container, monkeypatch):
    from azure.storage.blob import BlobClient

    calls = []

    def failing(self, block_id, data, length=None, **kwargs):
        calls.append(block_id)
        raise OSError("injected: the storage account is unreachable")

    monkeypatch.setattr(BlobClient, "stage_block", failing)
    blob = container.get_blob_client("failed.jsonl")
    writer = BlockBlobWriter(blob, block_size=10, whole_writes=True, concurrency=4)
    with pytest.raises(OSError, match="injected"):
        for _k in range(50):
            writer.write(b"0123456789\n")
        writer.close()
    writer.abort()
    assert calls and not blob.exists()
