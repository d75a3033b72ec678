"""Helpers for the tests that drive the sample app (``sample_app/function_app.py``) on a real Azurite."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path

from azure.storage.queue import QueueClient

SAMPLE_APP = Path(__file__).parent / "sample_app"


def read_calls(path: Path, function: str = "on_text") -> list[dict]:
    if not path.exists():
        return []
    return [c for c in map(json.loads, path.read_text().splitlines()) if c["function"] == function]


def upload(blob_service, container: str, name: str, body: bytes, **kwargs) -> str:
    return blob_service.get_blob_client(container, name).upload_blob(body, overwrite=True, **kwargs)["etag"]


def http(
    method: str, url: str, body: bytes | None = None, headers: dict | None = None
) -> tuple[int, dict, bytes]:
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def queue_exists(queue: QueueClient) -> bool:
    from azure.core.exceptions import ResourceNotFoundError

    try:
        queue.get_queue_properties()
    except ResourceNotFoundError:
        return False
    return True
