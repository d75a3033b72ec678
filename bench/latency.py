"""A worker process's blob reader that waits a fixed latency before each request (``make bench-intake``).

In a module of its own, light to import: worker processes import it when they unpickle their first task."""

from __future__ import annotations

import time
from typing import Any


class LatentReader:
    """A ``worker_pool.ProcessReader`` (``SasBlobReader``) whose every request waits ``latency_ms`` first, as
    the benchmark's storage clients do."""

    def __init__(self, reader: Any, latency_ms: float) -> None:
        self.reader, self.latency_ms = reader, latency_ms

    def read(self, path: str, etag: str | None, limit: int) -> bytes:
        time.sleep(self.latency_ms / 1000.0)
        return self.reader.read(path, etag, limit)  # type: ignore[no-any-return]
