"""The converted-image cache (``shared.conversion.cache``) in a container."""

from __future__ import annotations

from typing import TYPE_CHECKING

from shared.storage.writers import DEFAULT_BLOCK_SIZE, BlockBlobWriter

if TYPE_CHECKING:  # pragma: no cover - typing only
    from azure.storage.blob import ContainerClient


class BlobCacheStore:
    """A ``CacheStore`` under ``prefix`` in a container (``_cache/<dataset>/`` in the training container).
    Packs are block blobs streamed a block at a time; entries are read back with ranged downloads."""

    def __init__(self, container: ContainerClient, prefix: str, *, block_size: int = DEFAULT_BLOCK_SIZE) -> None:
        self._container = container
        self._prefix = prefix if prefix.endswith("/") else prefix + "/"
        self._block_size = block_size

    def list(self, prefix: str) -> list[tuple[str, float]]:
        start = len(self._prefix)
        return [
            (blob.name[start:], blob.last_modified.timestamp())
            for blob in self._container.list_blobs(name_starts_with=self._prefix + prefix)
        ]

    def read(self, name: str) -> bytes | None:
        from azure.core.exceptions import ResourceNotFoundError

        try:
            return self._container.get_blob_client(self._prefix + name).download_blob(max_concurrency=1).readall()
        except ResourceNotFoundError:
            return None

    def read_range(self, name: str, offset: int, length: int) -> bytes:
        blob = self._container.get_blob_client(self._prefix + name)
        data = blob.download_blob(offset=offset, length=length, max_concurrency=1).readall()
        if len(data) != length:
            raise OSError(f"{name}: {length} bytes expected at {offset}, got {len(data)}")
        return data

    def write(self, name: str, data: bytes) -> None:
        self._container.upload_blob(self._prefix + name, data, overwrite=True)

    def create(self, name: str) -> BlockBlobWriter:
        return BlockBlobWriter(self._container.get_blob_client(self._prefix + name), self._block_size)

    def delete(self, name: str) -> None:
        from azure.core.exceptions import ResourceNotFoundError

        try:
            self._container.delete_blob(self._prefix + name)
        except ResourceNotFoundError:
            pass

