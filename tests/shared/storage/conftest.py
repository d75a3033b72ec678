"""The container every blob-adapter test works in (a fresh one per test, on the session's Azurite)."""

from __future__ import annotations

import pytest


@pytest.fixture
def container(blob_service, fresh_container):
    return blob_service.get_container_client(fresh_container)
