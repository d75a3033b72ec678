"""Reading blobs: a seekable, ETag-pinned range-reading file over one blob, a dataset source over the
blobs under a prefix, and small JSON documents."""

from __future__ import annotations

import io
import json
import logging
import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, unquote
from xml.etree.ElementTree import iterparse

from shared.conversion.sources import SourceEntry
from shared.errors import SourceChangedError
from shared.layout import READY_MARKER
from shared.seekable import SizedRawReader
from shared.storage.clients import container_read_sas

if TYPE_CHECKING:  # pragma: no cover - typing only
    from azure.storage.blob import BlobClient, ContainerClient

log = logging.getLogger(__name__)

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
        self._sas_refused = ""  # why the SAS could not be used, once it could not: the SDK reads instead

    def entries(self) -> Iterator[SourceEntry]:
        """The blobs under the prefix: listed with the SAS reader (its XML parsed as it streams, about 10x less
        CPU than the SDK's models, which matters for drops of tens of thousands of blobs), or by the SDK
        when no SAS can be made or the service refuses the SAS's first request (then the SDK reads too)."""
        listed = 0
        try:
            for entry in self._entries(self.process_reader().entries()):
                listed += 1
                yield entry
            return
        except Exception as exc:  # no role to get a user delegation key, a SAS the account refuses, ...
            if listed:
                raise  # a later page failed: not a question of the SAS
            log.warning("listing and reading %s with the Storage SDK: the SAS cannot be used (%s)", self._prefix, exc)
            self._sas_refused = f"{type(exc).__name__}: {exc}"
        yield from self._entries(self._sdk_entries())

    def _entries(self, listing: Iterator[tuple[str, int, str]]) -> Iterator[SourceEntry]:
        for relative, size, etag in listing:
            if not relative or relative == READY_MARKER:
                continue
            yield SourceEntry(path=relative, size=size, etag=etag)

    def _sdk_entries(self) -> Iterator[tuple[str, int, str]]:
        # Pages of LIST_PAGE_SIZE, not the service's 5,000: the SDK holds a page's parsed XML and its
        # BlobProperties (a few KB each) until the page is consumed (5,000 of them held ~20 MB more).
        for blob in self._container.list_blobs(name_starts_with=self._prefix, results_per_page=LIST_PAGE_SIZE):
            yield blob.name[len(self._prefix) :], int(blob.size), blob.etag

    def read(self, path: str) -> bytes:
        return self._container.get_blob_client(self._prefix + path).download_blob(max_concurrency=1).readall()

    def process_reader(self) -> SasBlobReader:
        """How a worker process reads (and this process lists) these blobs: plain requests with a read and
        list SAS over the container, valid an hour (``container_read_sas``; on Azure it is signed with a
        user delegation key, asked for at most every 10 minutes, so this may raise)."""
        if self._sas_refused:
            raise PermissionError(f"the SAS over {self._prefix} cannot be used: {self._sas_refused}")
        return SasBlobReader(self._container.url, self._prefix, container_read_sas(self._container))


_RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
_RETRY_DELAYS = (0.5, 1.0, 2.0)  # seconds before each retry (the Storage SDK retries 3 times too)
_http_pools: dict[int, Any] = {}  # one urllib3 pool manager per process


def _http() -> Any:
    import urllib3

    pool = _http_pools.get(os.getpid())
    if pool is None:
        pool = _http_pools.setdefault(
            os.getpid(),
            urllib3.PoolManager(
                maxsize=32, retries=False, timeout=urllib3.Timeout(connect=20, read=60), block=False
            ),
        )
    return pool


@dataclass(frozen=True)
class SasBlobReader:
    """Reads the blobs under ``prefix`` of the container at ``container_url`` with plain requests authorised
    by ``sas`` (a read and list SAS query string), from any process: picklable, no SDK client, no credential.
    A ``worker_pool.ProcessReader``.

    Get Blob (Learn, "Get Blob" REST reference): ``Range`` asks for at most ``limit + 1`` bytes (a larger
    file is reported too large without being downloaded whole); ``If-Match`` pins the version listed (a
    replaced blob answers 412: ``BlobChangedError``). List Blobs (Learn, "List Blobs"): the XML is parsed as
    it streams, a page at a time. A SAS request runs at the SAS's ``sv`` version and ignores
    ``x-ms-version`` (Learn, "Previous Azure Storage service versions": requests authorized via shared
    access signature), so none is sent. Connection errors and 408/429/5xx are retried 3 times. No error
    message holds the SAS."""

    container_url: str
    prefix: str
    sas: str

    def read(self, path: str, etag: str | None, limit: int) -> bytes:
        headers = {"Range": f"bytes=0-{limit}"}
        if etag is not None:  # listings give the ETag bare; HTTP's If-Match takes it quoted
            headers["If-Match"] = etag if etag.startswith(('"', "W/")) else f'"{etag}"'
        url = f"{self.container_url}/{quote(self.prefix + path, safe='/~')}?{self.sas}"
        status, body = self._get(url, headers, self.prefix + path)
        if status == 416:  # an empty blob has no byte 0 (the Storage SDK reads it again without a range too)
            del headers["Range"]
            status, body = self._get(url, headers, self.prefix + path)
        if status == 412:
            raise BlobChangedError(f"{self.prefix + path} changed since the drop was listed; drop it again")
        return body

    def entries(self, page_size: int = 5000) -> Iterator[tuple[str, int, str]]:
        """``(name relative to prefix, size, ETag)`` of every blob under ``prefix``, in name order."""
        marker = ""
        while True:
            query = f"restype=container&comp=list&prefix={quote(self.prefix, safe='')}&maxresults={page_size}"
            if marker:
                query += f"&marker={quote(marker, safe='')}"
            _status, body = self._get(f"{self.container_url}?{query}&{self.sas}", {}, f"the list of {self.prefix}")
            marker = ""
            name, size, etag = "", 0, ""
            for _event, element in iterparse(io.BytesIO(body)):
                tag = element.tag
                if tag == "Name":
                    name = element.text or ""
                    if element.get("Encoded") == "true":  # characters XML cannot carry arrive percent-encoded
                        name = unquote(name)
                elif tag == "Content-Length":
                    size = int(element.text or 0)
                elif tag == "Etag":
                    etag = element.text or ""
                elif tag == "Blob":
                    yield name[len(self.prefix) :], size, etag
                    element.clear()
                elif tag == "NextMarker":
                    marker = element.text or ""
            del body
            if not marker:
                return

    def _get(self, url: str, headers: dict[str, str], what: str) -> tuple[int, bytes]:
        """``(status, body)`` of a GET answered 2xx, 412 or 416; raises ``OSError`` naming ``what`` otherwise."""
        for attempt in range(len(_RETRY_DELAYS) + 1):
            delay = _RETRY_DELAYS[min(attempt, len(_RETRY_DELAYS) - 1)]
            try:
                response = _http().request("GET", url, headers=headers, preload_content=False)
                try:
                    status = response.status
                    if 200 <= status < 300:
                        return status, response.read()
                    code = response.headers.get("x-ms-error-code", "")
                    response.drain_conn()
                finally:
                    response.release_conn()
            except Exception as exc:  # urllib3's errors name the URL: never let the SAS out
                if attempt == len(_RETRY_DELAYS):
                    raise OSError(f"GET {what} failed: {self._redact(str(exc))}") from None
                if attempt == 0:  # no answer, most often a pooled connection the server just closed: again at once
                    delay = 0.0
            else:
                if status in (412, 416):
                    return status, b""
                if status not in _RETRY_STATUSES or attempt == len(_RETRY_DELAYS):
                    raise OSError(f"GET {what} answered HTTP {status} {code}".rstrip())
            time.sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover

    @staticmethod
    def _redact(text: str) -> str:
        return re.sub(r"(?i)\bsig=[^&\s'\"]*", "sig=REDACTED", text)


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
