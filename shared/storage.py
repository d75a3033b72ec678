"""Blob storage adapters: the service client, a dataset source over blobs, a seekable range-reading
file over one blob, and a streaming artifact sink that publishes a converted version atomically.

Nothing here holds a whole dataset in memory: sources read one blob at a time, the range reader keeps
one buffer, and the sink stages blocks of a few MB as it is written.
"""

from __future__ import annotations

import base64
import functools
import io
import json
import logging
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, BinaryIO

from shared.errors import VisiontuneError
from shared.layout import ALL_CONTAINERS, MANIFEST_NAME, READY_MARKER
from shared.settings import Settings

if TYPE_CHECKING:  # pragma: no cover - typing only
    from azure.core.pipeline.transport import RequestsTransport
    from azure.storage.blob import BlobClient, BlobServiceClient, ContainerClient

    from shared.conversion.sources import SourceEntry

log = logging.getLogger(__name__)

DEFAULT_BLOCK_SIZE = 4 * 1024 * 1024
DEFAULT_READ_BUFFER = 4 * 1024 * 1024
STAGING_PREFIX = "_staging/"
# Staged artifacts carry this suffix so that no trigger pattern or Event Grid suffix filter
# (``.../manifest.json``) ever matches a half-published version.
STAGING_SUFFIX = ".part"


class BlobChangedError(VisiontuneError, IOError):
    """The blob changed while it was being read (its ETag moved): the reader stops rather than mix versions."""


CONNECTION_POOL_SIZE = 64  # >= the converter's concurrent blob reads, so no connection is thrown away


def pooled_transport(pool_size: int = CONNECTION_POOL_SIZE, **kwargs: Any) -> RequestsTransport:
    """An azure-core ``RequestsTransport`` whose HTTP connection pool holds ``pool_size`` connections
    (requests keeps 10 by default; more concurrent requests than that open and drop a connection each)."""
    import requests
    from azure.core.pipeline.transport import RequestsTransport

    session = requests.Session()
    adapter = requests.adapters.HTTPAdapter(pool_connections=pool_size, pool_maxsize=pool_size)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    # the storage SDK's own defaults, which it applies only to the transport it builds itself
    kwargs.setdefault("connection_timeout", 20)
    kwargs.setdefault("read_timeout", 60)
    kwargs.setdefault("connection_data_block_size", 256 * 1024)
    return RequestsTransport(session=session, session_owner=True, **kwargs)


@functools.lru_cache(maxsize=8)
def _service_client(
    connection_string: str | None,
    blob_service_uri: str | None,
    client_id: str | None,
    timeouts: tuple[float, float, int] = (20.0, 60.0, 3),
) -> BlobServiceClient:
    """``timeouts``: (connect seconds, read seconds, retries). Without them a server that accepts the
    connection and never answers holds a call for the SDK's 10 retries of a 60 s read, with backoff."""
    from azure.storage.blob import BlobServiceClient

    connect, read, retries = timeouts
    transport = pooled_transport(connection_timeout=connect, read_timeout=read)
    if connection_string:
        return BlobServiceClient.from_connection_string(connection_string, transport=transport, retry_total=retries)
    if not blob_service_uri:
        raise ValueError("a storage connection string or blob service URI is needed")
    from azure.identity import DefaultAzureCredential

    credential = DefaultAzureCredential(managed_identity_client_id=client_id)
    return BlobServiceClient(
        account_url=blob_service_uri, credential=credential, transport=transport, retry_total=retries
    )


def blob_service_client(settings: Settings) -> BlobServiceClient:
    """The blob service of ``settings``: the connection string locally (Azurite), else the identity-based
    form (``AzureWebJobsStorage__blobServiceUri`` + ``DefaultAzureCredential`` with ``AZURE_CLIENT_ID``).
    Cached per connection, so warm function instances reuse one client (and its connection pool)."""
    settings.require_storage()
    return _service_client(
        settings.storage_connection_string,
        None if settings.storage_connection_string else settings.storage_blob_service_uri,
        settings.azure_client_id,
        (
            settings.storage_connect_timeout_seconds,
            settings.storage_read_timeout_seconds,
            settings.storage_retry_total,
        ),
    )


def container_client(settings: Settings, container: str) -> ContainerClient:
    """A client for one of the containers in ``shared.layout``."""
    return blob_service_client(settings).get_container_client(container)


def ensure_containers(service: BlobServiceClient, names: Iterable[str] = ALL_CONTAINERS) -> None:
    """Create the containers that are missing (existing ones are left alone)."""
    from azure.core.exceptions import ResourceExistsError

    for name in names:
        try:
            service.create_container(name)
        except ResourceExistsError:
            pass


# --------------------------------------------------------------------------------------------------
# reading
# --------------------------------------------------------------------------------------------------
class BlobRangeReader(io.RawIOBase):
    """A read-only, seekable raw file over one blob: every read is a ranged download.

    Pinned to the blob's ETag at open time: if the blob is replaced while being read, reads raise
    ``BlobChangedError`` instead of silently mixing two versions. Wrap it in ``io.BufferedReader`` (see
    ``open_blob_reader``) so small reads (zip headers) do not each become a request.
    """

    def __init__(self, blob: BlobClient) -> None:
        super().__init__()
        properties = blob.get_blob_properties()
        self._blob = blob
        self._size = int(properties.size)
        self._etag = properties.etag
        self._position = 0
        self.name = blob.blob_name

    @property
    def size(self) -> int:
        return self._size

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if whence == io.SEEK_SET:
            position = offset
        elif whence == io.SEEK_CUR:
            position = self._position + offset
        elif whence == io.SEEK_END:
            position = self._size + offset
        else:
            raise ValueError(f"invalid whence {whence}")
        if position < 0:
            raise ValueError(f"negative seek position {position}")
        self._position = position
        return position

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


def open_blob_reader(blob: BlobClient, buffer_size: int = DEFAULT_READ_BUFFER) -> io.BufferedReader:
    """A buffered, seekable binary file over ``blob`` (ranged downloads of ``buffer_size``)."""
    return io.BufferedReader(BlobRangeReader(blob), buffer_size=buffer_size)


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
        from shared.conversion.sources import SourceEntry

        for blob in self._container.list_blobs(name_starts_with=self._prefix):
            relative = blob.name[len(self._prefix) :]
            if not relative or relative == READY_MARKER:
                continue
            yield SourceEntry(path=relative, size=int(blob.size), etag=blob.etag)

    def read(self, path: str) -> bytes:
        return self._container.get_blob_client(self._prefix + path).download_blob(max_concurrency=1).readall()


# --------------------------------------------------------------------------------------------------
# writing
# --------------------------------------------------------------------------------------------------
class BlockBlobWriter(io.RawIOBase):
    """A write-only stream to a block blob: buffers up to ``block_size`` bytes, stages each full block,
    and commits the block list on ``close()``. Memory use is one block, whatever the blob's size."""

    def __init__(self, blob: BlobClient, block_size: int = DEFAULT_BLOCK_SIZE) -> None:
        super().__init__()
        self._blob = blob
        self._block_size = block_size
        self._buffer = bytearray()
        self._block_ids: list[str] = []
        self._prefix = uuid.uuid4().hex[:16]
        self.bytes_written = 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        if self.closed:
            raise ValueError("write to a closed blob writer")
        chunk = memoryview(data).cast("B")
        self._buffer += chunk
        self.bytes_written += len(chunk)
        while len(self._buffer) >= self._block_size:
            self._stage(bytes(self._buffer[: self._block_size]))
            del self._buffer[: self._block_size]
        return len(chunk)

    def _stage(self, block: bytes) -> None:
        # Block ids must all have the same length within a blob; base64 of a fixed-width string.
        block_id = base64.b64encode(f"{self._prefix}-{len(self._block_ids):08d}".encode()).decode()
        self._blob.stage_block(block_id=block_id, data=block, length=len(block))
        self._block_ids.append(block_id)

    def close(self) -> None:
        if self.closed:
            return
        from azure.storage.blob import BlobBlock

        try:
            if self._buffer or not self._block_ids:
                self._stage(bytes(self._buffer))
                self._buffer.clear()
            self._blob.commit_block_list([BlobBlock(block_id=b) for b in self._block_ids])
        finally:
            super().close()

    def abort(self) -> None:
        """Drop what was buffered without committing (the staged blocks expire on their own)."""
        self._buffer.clear()
        super().close()


# Put Block From URL (Learn, "Put Block From URL", REST reference; "Scalability and performance targets
# for Blob storage"): blocks are kept at 100 MiB, the block limit of service versions before 2019-12-12
# (4000 MiB since), so every version accepts them and a failed block costs little to redo.
MAX_BLOCK_FROM_URL = 100 * 1024 * 1024
# Learn, "Scalability and performance targets for Blob storage": at most 50,000 blocks per block blob.
MAX_BLOCKS_PER_BLOB = 50_000
SOURCE_SAS_SECONDS = 3600


def readable_url(container: ContainerClient, blob: str) -> str:
    """A URL of ``blob`` that Put Block From URL may read: with a SAS the storage service checks.

    On Azure (shared keys disabled, managed identity) it is a user delegation SAS, signed with a key the
    identity gets from ``Get User Delegation Key`` (Learn: "Create a user delegation SAS for a blob with
    Python"; needs a role with ``generateUserDelegationKey``, e.g. Storage Blob Data Owner/Contributor).
    Locally (Azurite, an account-key connection string) it is a service SAS signed with that key."""
    from datetime import UTC, datetime, timedelta

    from azure.storage.blob import BlobSasPermissions, BlobServiceClient, generate_blob_sas

    client = container.get_blob_client(blob)
    account = client.account_name
    if account is None:
        raise ValueError(f"no storage account name in {client.url}")
    start = datetime.now(UTC) - timedelta(minutes=5)  # clock skew
    expiry = datetime.now(UTC) + timedelta(seconds=SOURCE_SAS_SECONDS)
    account_key = getattr(container.credential, "account_key", None)
    if account_key:
        sas = generate_blob_sas(
            account, container.container_name, blob, account_key=account_key,
            permission=BlobSasPermissions(read=True), start=start, expiry=expiry,
        )  # fmt: skip
    else:
        service = BlobServiceClient(container.url.rsplit("/", 1)[0], credential=container.credential)
        key = service.get_user_delegation_key(start, expiry)
        sas = generate_blob_sas(
            account, container.container_name, blob, user_delegation_key=key,
            permission=BlobSasPermissions(read=True), start=start, expiry=expiry,
        )  # fmt: skip
    return f"{client.url}?{sas}"


class BlobArtifactSink:
    """An ``ArtifactSink`` that streams each artifact to ``_staging/<dataset>/<token>/<name>.part`` in the
    training container and, on ``commit(version)``, copies them to ``<dataset>/<version>/`` with
    ``manifest.json`` last, so the ``training_ready`` trigger fires only once everything is in place.

    ``before_publish(version)`` runs after staging and before anything is published (the pipeline creates
    the run there, so the trigger always finds it). If ``<dataset>/<version>/manifest.json`` already
    exists, the version is already published: nothing is copied (same data dropped twice starts nothing).
    ``published`` says afterwards whether this sink published the version.
    """

    def __init__(
        self,
        container: ContainerClient,
        dataset: str,
        *,
        block_size: int = DEFAULT_BLOCK_SIZE,
        before_publish: Callable[[str], None] | None = None,
        copy_timeout: float = 600.0,
    ) -> None:
        self._container = container
        self._dataset = dataset
        self._block_size = block_size
        self._before_publish = before_publish
        self._copy_timeout = copy_timeout
        self._staging = f"{STAGING_PREFIX}{dataset}/{uuid.uuid4().hex}/"
        self._names: list[str] = []
        self.version: str | None = None
        self.published = False

    def _staged_name(self, name: str) -> str:
        return f"{self._staging}{name}{STAGING_SUFFIX}"

    @contextmanager
    def open(self, name: str) -> Iterator[BinaryIO]:
        if "/" in name or not name:
            raise ValueError(f"artifact names are plain file names, got {name!r}")
        writer = BlockBlobWriter(self._container.get_blob_client(self._staged_name(name)), self._block_size)
        try:
            yield writer  # type: ignore[misc]
        except BaseException:
            writer.abort()
            raise
        writer.close()
        if name not in self._names:
            self._names.append(name)

    def assemble(self, name: str, ranges: Iterable[tuple[str, int, int]]) -> int:
        """Stage artifact ``name`` from ``(blob, offset, length)`` ranges of other blobs of this container,
        server-side (Put Block From URL, then Put Block List: no byte passes through this process).
        Returns its size. Ranges longer than ``MAX_BLOCK_FROM_URL`` are cut into several blocks."""
        from azure.storage.blob import BlobBlock

        if "/" in name or not name:
            raise ValueError(f"artifact names are plain file names, got {name!r}")
        target = self._container.get_blob_client(self._staged_name(name))
        prefix = uuid.uuid4().hex[:16]
        block_ids: list[str] = []
        size = 0
        sources: dict[str, str] = {}
        for blob, offset, length in ranges:
            if blob not in sources:
                sources[blob] = readable_url(self._container, blob)
            done = 0
            while done < length:
                step = min(MAX_BLOCK_FROM_URL, length - done)
                block_id = base64.b64encode(f"{prefix}-{len(block_ids):08d}".encode()).decode()
                target.stage_block_from_url(block_id, sources[blob], source_offset=offset + done, source_length=step)
                block_ids.append(block_id)
                done += step
            size += length
        if len(block_ids) > MAX_BLOCKS_PER_BLOB:
            raise ValueError(f"{name}: {len(block_ids)} blocks, above the {MAX_BLOCKS_PER_BLOB} Azure allows per blob")
        target.commit_block_list([BlobBlock(block_id=b) for b in block_ids])
        if name not in self._names:
            self._names.append(name)
        return size

    def read_staged(self, name: str) -> bytes:
        """The bytes of an artifact staged by this sink (small ones: the manifest)."""
        return self._container.get_blob_client(self._staged_name(name)).download_blob().readall()

    def commit(self, version: str) -> None:
        if MANIFEST_NAME not in self._names:
            raise ValueError(f"commit({version!r}) before {MANIFEST_NAME} was written")
        self.version = version
        final_prefix = f"{self._dataset}/{version}/"
        try:
            if self._container.get_blob_client(final_prefix + MANIFEST_NAME).exists():
                log.info("%s%s already published; nothing to copy", final_prefix, MANIFEST_NAME)
            else:
                if self._before_publish is not None:
                    self._before_publish(version)
                ordered = [n for n in self._names if n != MANIFEST_NAME] + [MANIFEST_NAME]
                for name in ordered:
                    self._copy(self._staged_name(name), final_prefix + name)
                self.published = True
        finally:
            self.discard()

    def _copy(self, source: str, target: str) -> None:
        """Server-side copy within the account (authorised by this request, also with Entra ID)."""
        source_client = self._container.get_blob_client(source)
        target_client = self._container.get_blob_client(target)
        result = target_client.start_copy_from_url(source_client.url)
        status = result.get("copy_status")
        deadline = time.monotonic() + self._copy_timeout
        while status == "pending":
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"copying {source} to {target} did not finish in {self._copy_timeout:.0f} s"
                )
            time.sleep(0.2)
            status = target_client.get_blob_properties().copy.status
        if status not in (None, "success"):
            raise OSError(f"copying {source} to {target} ended with status {status}")

    def discard(self) -> None:
        """Delete the staged blobs (best effort: leftovers are only wasted space under ``_staging/``)."""
        for blob in self._container.list_blobs(name_starts_with=self._staging):
            try:
                self._container.delete_blob(blob.name)
            except Exception as error:  # noqa: BLE001 - cleanup must not hide the real outcome
                log.warning("could not delete staged %s: %s", blob.name, error)

    abort = discard  # the converter calls ``abort()`` when a conversion fails


# --------------------------------------------------------------------------------------------------
# the converted-image cache (shared.conversion.cache) in a container
# --------------------------------------------------------------------------------------------------
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


# --------------------------------------------------------------------------------------------------
# small JSON helpers
# --------------------------------------------------------------------------------------------------
def read_json(container: ContainerClient, name: str) -> Any | None:
    """The JSON document in blob ``name``, or None when the blob does not exist."""
    from azure.core.exceptions import ResourceNotFoundError

    try:
        return json.loads(container.get_blob_client(name).download_blob().readall())
    except ResourceNotFoundError:
        return None
