"""Blob-trigger plumbing against a storage account (Azurite locally): listing candidates, durable
"already processed" receipts, and poison messages, in the shapes the Azure Functions host uses.

- Receipts: a blob per processed (function, blob, ETag) in the ``azure-webjobs-hosts`` container,
  ``blobreceipts/<host id>/Host.Functions.<function>/<etag>/<container>/<blob>`` (Azure's layout), so a
  restarted host does not fire again for blobs it already handled, while a changed blob (new ETag) fires.
- Poison: after the last failed attempt a message goes to the ``webjobs-blobtrigger-poison`` queue,
  base64-encoded JSON ``{"Type": "BlobTrigger", "FunctionId", "BlobType", "ContainerName", "BlobName",
  "ETag"}``, as the Functions host writes it.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from shared.layout import match_blob_path

HOSTS_CONTAINER = "azure-webjobs-hosts"
RECEIPTS_PREFIX = "blobreceipts"
POISON_QUEUE = "webjobs-blobtrigger-poison"


def function_id(function_name: str) -> str:
    """The id the Functions host gives a function (``Host.Functions.<name>``)."""
    return f"Host.Functions.{function_name}"


def quoted_etag(etag: str) -> str:
    """An ETag in its HTTP header form (``"0x8D..."``): blob listings give it bare, downloads quoted."""
    return etag if etag.startswith(('"', 'W/"')) else f'"{etag}"'


def literal_prefix(pattern_in_container: str) -> str:
    """The fixed start of a blob pattern (before the first ``{``), used to narrow listings."""
    return pattern_in_container.split("{", 1)[0]


@dataclass(frozen=True)
class BlobCandidate:
    """A blob that matches a trigger's path: ``path`` is ``<container>/<blob name>``."""

    container: str
    name: str
    etag: str
    parameters: dict[str, str]

    @property
    def path(self) -> str:
        return f"{self.container}/{self.name}"


class StorageAccount:
    """Blob and queue clients for one connection string, created on first use (thread-safe SDK clients)."""

    def __init__(self, connection_string: str) -> None:
        from azure.storage.blob import BlobServiceClient

        self.connection_string = connection_string
        self.blobs = BlobServiceClient.from_connection_string(connection_string)
        self._poison_queue: Any = None
        self._lock = threading.Lock()

    def candidates(self, trigger_path: str) -> Iterator[BlobCandidate]:
        """Every blob whose ``<container>/<name>`` matches ``trigger_path``; nothing if the container is absent.

        Walks the folder hierarchy one pattern segment at a time (listing with the ``/`` delimiter), so
        ``datasets/{dataset}/_READY`` costs one listing per dataset folder, not one entry per image.
        """
        from azure.core.exceptions import ResourceNotFoundError
        from azure.storage.blob import BlobPrefix

        container, pattern = trigger_path.split("/", 1)
        segments = pattern.split("/")
        client = self.blobs.get_container_client(container)

        def walk(prefix: str, depth: int) -> Iterator[BlobCandidate]:
            segment, last = segments[depth], depth == len(segments) - 1
            if not last and "{" not in segment:  # a literal folder: nothing to list at this level
                yield from walk(f"{prefix}{segment}/", depth + 1)
                return
            for item in client.walk_blobs(name_starts_with=prefix + literal_prefix(segment) or None, delimiter="/"):
                if isinstance(item, BlobPrefix):
                    if not last and match_blob_path(segment, item.name[len(prefix) : -1]) is not None:
                        yield from walk(item.name, depth + 1)
                elif last:
                    parameters = match_blob_path(trigger_path, f"{container}/{item.name}")
                    if parameters is not None:
                        yield BlobCandidate(container, item.name, quoted_etag(item.etag), parameters)

        try:
            yield from walk("", 0)
        except ResourceNotFoundError:
            return

    def send_poison(self, function_name: str, candidate: BlobCandidate) -> dict[str, str]:
        """Write the poison message for ``candidate``; returns the message body."""
        message = {
            "Type": "BlobTrigger",
            "FunctionId": function_id(function_name),
            "BlobType": "BlockBlob",
            "ContainerName": candidate.container,
            "BlobName": candidate.name,
            "ETag": candidate.etag,
        }
        with self._lock:
            if self._poison_queue is None:
                from azure.core.exceptions import ResourceExistsError
                from azure.storage.queue import QueueClient, TextBase64EncodePolicy

                queue = QueueClient.from_connection_string(
                    self.connection_string, POISON_QUEUE, message_encode_policy=TextBase64EncodePolicy()
                )
                try:
                    queue.create_queue()
                except ResourceExistsError:
                    pass
                self._poison_queue = queue
        self._poison_queue.send_message(json.dumps(message))
        return message

    def close(self) -> None:
        self.blobs.close()
        if self._poison_queue is not None:
            self._poison_queue.close()


class ReceiptStore:
    """Durable receipts of processed (function, blob path, ETag) triples, cached in memory.

    ``load`` reads a function's receipts once; ``has``/``add`` then work from memory and ``add`` also
    writes the receipt blob, so a new host on the same storage skips what this one completed.
    """

    def __init__(self, account: StorageAccount, host_id: str) -> None:
        self._account = account
        self._host_id = host_id
        self._known: set[tuple[str, str, str]] = set()
        self._loaded: set[str] = set()
        self._lock = threading.Lock()
        self._container_ready = False

    @staticmethod
    def _etag_segment(etag: str) -> str:
        return etag.strip('"')

    def _prefix(self, function_name: str) -> str:
        return f"{RECEIPTS_PREFIX}/{self._host_id}/{function_id(function_name)}/"

    def load(self, function_name: str) -> None:
        """Read every stored receipt of ``function_name`` (once per store)."""
        from azure.core.exceptions import ResourceNotFoundError

        if function_name in self._loaded:
            return
        prefix = self._prefix(function_name)
        client = self._account.blobs.get_container_client(HOSTS_CONTAINER)
        found: set[tuple[str, str, str]] = set()
        try:
            for blob in client.list_blobs(name_starts_with=prefix):
                etag, _, path = blob.name[len(prefix) :].partition("/")
                if path:
                    found.add((function_name, path, etag))
        except ResourceNotFoundError:
            pass
        with self._lock:
            self._known |= found
            self._loaded.add(function_name)

    def has(self, function_name: str, path: str, etag: str) -> bool:
        with self._lock:
            return (function_name, path, self._etag_segment(etag)) in self._known

    def add(self, function_name: str, path: str, etag: str) -> None:
        """Record that ``path`` at ``etag`` was handled by ``function_name`` (memory and storage)."""
        from azure.core.exceptions import ResourceExistsError

        segment = self._etag_segment(etag)
        client = self._account.blobs.get_container_client(HOSTS_CONTAINER)
        if not self._container_ready:
            try:
                client.create_container()
            except ResourceExistsError:
                pass
            self._container_ready = True
        client.upload_blob(f"{self._prefix(function_name)}{segment}/{path}", b"", overwrite=True)
        with self._lock:
            self._known.add((function_name, path, segment))
