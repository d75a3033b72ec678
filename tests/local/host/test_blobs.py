"""The host's hierarchical blob listing agrees with shared.layout.match_blob_path on the real trigger paths."""

from __future__ import annotations

import pytest

from local.host.blobs import StorageAccount, quoted_etag
from shared.layout import DATASET_ARCHIVE_PATH, DATASET_READY_PATH, TRAINING_MANIFEST_PATH, match_blob_path

BLOB_NAMES = [
    "digits/_READY", "digits/0/a.png", "digits/1/b.png", "digits/train/0/c.png", "digits/sub/_READY",
    "cats/_READY", "cats/_READY.bak", "digits.zip", "nested/x.zip", "x.zip.part",
    "digits/v1/manifest.json", "digits/v1/train.jsonl", "digits/v1/deeper/manifest.json", "manifest.json",
]  # fmt: skip


@pytest.mark.parametrize("layout_path", [DATASET_READY_PATH, DATASET_ARCHIVE_PATH, TRAINING_MANIFEST_PATH])
def test_candidates_match_exactly_what_match_blob_path_accepts(azurite, blob_service, fresh_container, layout_path):
    for name in BLOB_NAMES:
        blob_service.get_blob_client(fresh_container, name).upload_blob(b"x")
    pattern = fresh_container + "/" + layout_path.split("/", 1)[1]
    account = StorageAccount(azurite.connection_string)
    found = {c.path: c.parameters for c in account.candidates(pattern)}
    expected = {
        f"{fresh_container}/{n}": match_blob_path(pattern, f"{fresh_container}/{n}")
        for n in BLOB_NAMES
        if match_blob_path(pattern, f"{fresh_container}/{n}") is not None
    }
    assert found == expected and found  # each real pattern matches something here
    assert all(c.etag.startswith('"') for c in account.candidates(pattern))
    account.close()


def test_missing_container_has_no_candidates(azurite, unique_name):
    assert list(StorageAccount(azurite.connection_string).candidates(unique_name("absent") + "/{x}")) == []


def test_quoted_etag():
    assert quoted_etag("0x1") == '"0x1"' and quoted_etag('"0x1"') == '"0x1"'
