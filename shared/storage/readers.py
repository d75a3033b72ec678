"""Reading blobs: a seekable, ETag-pinned range-reading file over one blob, a dataset source over the
blobs under a prefix, and small JSON documents."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from shared.conversion.sources import SourceEntry
from shared.errors import SourceChangedError
from shared.layout import READY_MARKER
from shared.seekable import SizedRawReader

if TYPE_CHECKING:  # pragma: no cover - typing only
    from azure.storage.blob import BlobClient, ContainerClient

DEFAULT_READ_BUFFER = 4 * 1024 * 1024
LIST_PAGE_SIZE = 2500


class BlobChangedError(SourceChangedError):
    """The blob changed while it was being read (its ETag moved): the reader stops rather than mix versions."""



class BlobRangeReader(SizedRawReader):
    """A read-only, seekable raw file over one blob: every read is a ranged download.

    Pinned to the blob's ETag at open time: if the blob is replaced while being read, reads raise
    ``BlobChangedError`` instead of silently mixing two versions. Wrap it in ``io.BufferedReader`` (see
    ``open_blob_reader``) so small reads (zip headers) do not each become a request.
    """

    def __init__(self, blob: BlobClient, etag: str | None = None) -> None:
        """``etag``: pin the reader to this version (one seen earlier, e.g. by a fan-out's plan):
        ``BlobChangedError`` at once if the blob is no longer it. Get Blob Properties and Get Blob take
        If-Match (Learn: "Specifying conditional headers for Blob service operations"); a replaced blob
        answers 412, which the SDK raises as ``ResourceModifiedError``."""
        from azure.core import MatchConditions
        from azure.core.exceptions import ResourceModifiedError

        self.name = blob.blob_name
        try:
            properties = (
                blob.get_blob_properties()
                if etag is None
                else blob.get_blob_properties(etag=etag, match_condition=MatchConditions.IfNotModified)
            )
        except ResourceModifiedError as error:
            raise BlobChangedError(f"{self.name} is no longer the version {etag}: it was replaced") from error
        super().__init__(int(properties.size))
        self._blob = blob
        self._etag = properties.etag

    @property
    def size(self) -> int:
        return self._size

    @property
    def etag(self) -> str:
        """The version every read is pinned to."""
        return str(self._etag)

    def readinto(self, buffer: Any) -> int:
        from azure.core import MatchConditions
        from azure.core.exceptions import ResourceModifiedError

        view = memoryview(buffer).cast("B")
        length = min(len(view), self._size - self._position)
        if length <= 0:
            return 0
        try:
            data = self._blob.download_blob(
                offset=self._position,
                length=length,
                etag=self._etag,
                match_condition=MatchConditions.IfNotModified,
                max_concurrency=1,
            ).readall()
        except ResourceModifiedError as error:
            raise BlobChangedError(f"{self.name} changed while it was being read; read it again") from error
        view[: len(data)] = data
        self._position += len(data)
        return len(data)


def open_blob_reader(
    blob: BlobClient, buffer_size: int = DEFAULT_READ_BUFFER, *, etag: str | None = None
) -> io.BufferedReader:
    """A buffered, seekable binary file over ``blob`` (ranged downloads of ``buffer_size``), pinned to
    ``etag`` when given (see ``BlobRangeReader``)."""
    return io.BufferedReader(BlobRangeReader(blob, etag), buffer_size=buffer_size)


class BlobDatasetSource:
    """A ``DatasetSource`` over the blobs under ``prefix`` (e.g. ``"<dataset>/"`` in ``datasets``).

    Entry paths are relative to ``prefix``. The ``_READY`` marker at the top of the prefix is skipped;
    everything else is reported to the converter, which decides what to use and what to reject.
    """

    def __init__(self, container: ContainerClient, prefix: str, *, read_concurrency: int = 16) -> None:
        self._container = container
        self._prefix = prefix if prefix.endswith("/") else prefix + "/"
        # Reads wait on per-request latency, not bandwidth: the converter keeps this many in flight.
        self.read_concurrency = read_concurrency

    def entries(self) -> Iterator[SourceEntry]:
        # Pages of LIST_PAGE_SIZE, not the service's 5,000: the SDK holds a page's parsed XML and its
        # BlobProperties (a few KB each) until the page is consumed (5,000 of them held ~20 MB more); fewer
        # than a few thousand per page would cost a request per page on every drop.
        for blob in self._container.list_blobs(name_starts_with=self._prefix, results_per_page=LIST_PAGE_SIZE):
            relative = blob.name[len(self._prefix) :]
            if not relative or relative == READY_MARKER:
                continue
            yield SourceEntry(path=relative, size=int(blob.size), etag=blob.etag)

    def read(self, path: str) -> bytes:
        return self._container.get_blob_client(self._prefix + path).download_blob(max_concurrency=1).readall()


def read_json(container: ContainerClient, name: str) -> Any | None:
    """The JSON document in blob ``name``, or None when the blob does not exist."""
    from azure.core.exceptions import ResourceNotFoundError

    try:
        return json.loads(container.get_blob_client(name).download_blob().readall())
    except ResourceNotFoundError:
        return None


def read_bytes(container: ContainerClient, name: str) -> bytes | None:
    """The bytes of blob ``name``, or None when the blob does not exist."""
    from azure.core.exceptions import ResourceNotFoundError

    try:
        return container.get_blob_client(name).download_blob().readall()
    except ResourceNotFoundError:
        return None
