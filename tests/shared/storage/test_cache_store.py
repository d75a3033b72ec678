"""The converted-image cache store on a real Azurite: whole and ranged reads, streamed packs, deletion."""

from __future__ import annotations

import os

import pytest

from shared.storage.cache_store import BlobCacheStore


def test_cache_store_keeps_its_blobs_under_its_prefix(container):
    store = BlobCacheStore(container, "_cache/pets", block_size=64 * 1024)
    store.write("index/a.json", b"{}")
    pack = os.urandom(200_000)
    with store.create("packs/p1.pack") as stream:
        stream.write(pack)
    container.upload_blob("_cache/petshop/other.json", b"another dataset's cache")
    assert sorted(name for name, _ in store.list("")) == ["index/a.json", "packs/p1.pack"]
    assert [name for name, _ in store.list("packs/")] == ["packs/p1.pack"]
    assert store.read("index/a.json") == b"{}"
    assert store.read("index/missing.json") is None
    assert store.read_range("packs/p1.pack", 1000, 5000) == pack[1000:6000]
    assert len(container.get_blob_client("_cache/pets/packs/p1.pack").get_block_list("committed")[0]) == 4
    store.delete("index/a.json")
    store.delete("index/a.json")  # already gone: no error
    assert store.read("index/a.json") is None


def test_cache_store_refuses_a_short_range(container):
    store = BlobCacheStore(container, "_cache/pets/")
    store.write("packs/p.pack", b"0123456789")
    with pytest.raises(OSError, match="100 bytes expected at 5, got 5"):
        store.read_range("packs/p.pack", 5, 100)
