"""Queue triggers on Azurite queues, as the Functions host's queue listener runs them.

Modelled (Learn: "Azure Queue storage trigger for Azure Functions", functions-bindings-storage-queue-trigger,
sections "Poison messages", "Concurrency", "host.json settings"; functions-bindings-storage-queue, "host.json
settings"):

- ``batchSize`` (default 16, at most 32): messages fetched in one receive and run in parallel;
  a new batch is fetched once the messages in flight fall to ``newBatchThreshold`` (default
  ``batchSize / 2`` on one core; Azure multiplies by the instance's cores).
- A received message stays invisible while it runs (Azure's listener holds it for 10 minutes and renews
  the lease; here it is simply held for ``RUNNING_VISIBILITY_SECONDS``).
- A failed call makes the message visible again after ``visibilityTimeout`` (default ``00:00:00``); its
  ``dequeue_count`` grows with every receive. When the call that fails is the ``maxDequeueCount``-th
  (default 5), the message is moved to ``<queue>-poison``; a message received with a dequeue count
  already above ``maxDequeueCount`` (its runs crashed the host) is moved there without a call.
- ``messageEncoding`` (default ``base64``): bodies are base64 text, decoded before the call; ``none``
  passes them as they are. Output bindings of type ``queue`` send base64 text likewise.
"""

from __future__ import annotations

import base64
import json
import threading
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

RUNNING_VISIBILITY_SECONDS = 600
MAX_BATCH_SIZE = 32  # Learn: "The maximum batchSize is 32"
POISON_SUFFIX = "-poison"


def _timespan_seconds(text: str) -> float:
    """``hh:mm:ss`` (host.json timespan) in seconds."""
    hours, minutes, seconds = text.split(":")
    return timedelta(hours=int(hours), minutes=int(minutes), seconds=float(seconds)).total_seconds()


@dataclass(frozen=True)
class QueueOptions:
    """``extensions.queues`` of host.json, with Azure's defaults."""

    batch_size: int = 16
    new_batch_threshold: int = 8
    max_dequeue_count: int = 5
    visibility_timeout: float = 0.0
    message_encoding: str = "base64"

    @classmethod
    def from_host_json(cls, app_root: Path) -> QueueOptions:
        """Read ``host.json`` under ``app_root``; missing keys take Azure's defaults. ``ValueError`` for a
        value Azure refuses (batchSize above 32, maxDequeueCount below 1)."""
        path = Path(app_root) / "host.json"
        document = json.loads(path.read_text()) if path.is_file() else {}
        queues = (document.get("extensions") or {}).get("queues") or {}
        batch_size = int(queues.get("batchSize", 16))
        if not 1 <= batch_size <= MAX_BATCH_SIZE:
            raise ValueError(f"host.json extensions.queues.batchSize must be 1..{MAX_BATCH_SIZE}, got {batch_size}")
        max_dequeue_count = int(queues.get("maxDequeueCount", 5))
        if max_dequeue_count < 1:
            raise ValueError(f"host.json extensions.queues.maxDequeueCount must be >= 1, got {max_dequeue_count}")
        encoding = str(queues.get("messageEncoding", "base64")).lower()
        if encoding not in ("base64", "none"):
            raise ValueError(f"host.json extensions.queues.messageEncoding must be base64 or none, got {encoding!r}")
        return cls(
            batch_size=batch_size,
            new_batch_threshold=int(queues.get("newBatchThreshold", batch_size // 2)),
            max_dequeue_count=max_dequeue_count,
            visibility_timeout=_timespan_seconds(str(queues.get("visibilityTimeout", "00:00:00"))),
            message_encoding=encoding,
        )

    def encode(self, text: str) -> str:
        return base64.b64encode(text.encode("utf-8")).decode("ascii") if self.message_encoding == "base64" else text

    def decode(self, content: str) -> bytes:
        """The message body as the function sees it; ``ValueError`` for a body that is not base64."""
        if self.message_encoding == "none":
            return content.encode("utf-8")
        try:
            return base64.b64decode(content, validate=True)
        except Exception as error:  # binascii.Error
            raise ValueError(f"the message is not base64 (host.json messageEncoding is base64): {error}") from None


class QueueClients:
    """One ``QueueClient`` per queue name for a connection string, created (and the queue with it) on
    first use."""

    def __init__(self, connection_string: str) -> None:
        self.connection_string = connection_string
        self._clients: dict[str, Any] = {}
        self._lock = threading.Lock()

    def get(self, name: str) -> Any:
        with self._lock:
            client = self._clients.get(name)
            if client is None:
                from azure.core.exceptions import ResourceExistsError
                from azure.storage.queue import QueueClient

                client = QueueClient.from_connection_string(self.connection_string, name)
                try:
                    client.create_queue()
                except ResourceExistsError:
                    pass
                self._clients[name] = client
            return client

    def close(self) -> None:
        with self._lock:
            for client in self._clients.values():
                client.close()
            self._clients.clear()
