"""The SAS blob reader with a fixed latency before each request (``make bench-intake``), as the benchmark's
storage clients have. In a module of its own: worker processes import it when they unpickle a task."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from shared.storage.readers import SasBlobReader


@dataclass(frozen=True)
class LatentReader(SasBlobReader):
    """``SasBlobReader`` whose every request (Get Blob, each List Blobs page) waits ``latency_ms`` first."""

    latency_ms: float = 0.0

    @classmethod
    def around(cls, reader: SasBlobReader, latency_ms: float) -> LatentReader:
        return cls(reader.container_url, reader.prefix, reader.sas, latency_ms)

    def _get(self, url: str, headers: dict[str, str], what: str) -> Any:
        time.sleep(self.latency_ms / 1000.0)
        return super()._get(url, headers, what)
