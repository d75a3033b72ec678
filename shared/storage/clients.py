"""Clients of the blob service: the pooled, cached service client built from the settings, container
clients, the containers of ``shared.layout``, and read SASs (for Put Block From URL and worker processes).

Every client made from the settings goes through ``_service_client`` (benchmarks and tests patch it there).
"""

from __future__ import annotations

import functools
import threading
import time
import weakref
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from shared.layout import ALL_CONTAINERS
from shared.settings import Settings

if TYPE_CHECKING:  # pragma: no cover - typing only
    from azure.core.pipeline.transport import RequestsTransport
    from azure.storage.blob import BlobServiceClient, ContainerClient

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
    connection and never answers holds a call for the SDK's 10 retries of a 60 s read, with backoff.
    Retries follow ``shared.storage.retry`` (a quick one after a dropped connection)."""
    from azure.storage.blob import BlobServiceClient

    from shared.storage.retry import storage_retry_policy

    connect, read, retries = timeouts
    transport = pooled_transport(connection_timeout=connect, read_timeout=read)
    policy = storage_retry_policy(retries)
    if connection_string:
        return BlobServiceClient.from_connection_string(connection_string, transport=transport, retry_policy=policy)
    if not blob_service_uri:
        raise ValueError("a storage connection string or blob service URI is needed")
    from azure.identity import DefaultAzureCredential

    credential = DefaultAzureCredential(managed_identity_client_id=client_id)
    return BlobServiceClient(
        account_url=blob_service_uri, credential=credential, transport=transport, retry_policy=policy
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


SOURCE_SAS_SECONDS = 3600
DELEGATION_KEY_REUSE_SECONDS = 600  # a SAS signed with a reused key still has at least 50 minutes left

# User delegation keys by credential, then blob service URL: (key, start, expiry, monotonic time fetched).
_delegation_keys: weakref.WeakKeyDictionary[Any, dict[str, tuple[Any, datetime, datetime, float]]] = (
    weakref.WeakKeyDictionary()
)
_delegation_lock = threading.Lock()


def _validity() -> tuple[datetime, datetime]:
    """(start, expiry) of a SAS or delegation key made now: 5 minutes back for clock skew, ``SOURCE_SAS_SECONDS``
    ahead."""
    now = datetime.now(UTC)
    return now - timedelta(minutes=5), now + timedelta(seconds=SOURCE_SAS_SECONDS)


def _sas_signer(container: ContainerClient) -> tuple[str, dict[str, Any], datetime, datetime]:
    """(account name, the signing keyword of ``generate_*_sas``, start, expiry) for a read SAS over
    ``container``'s blobs, valid ``SOURCE_SAS_SECONDS``.

    On Azure (shared keys disabled, managed identity) a user delegation SAS, signed with a key the identity
    gets from ``Get User Delegation Key`` (Learn: "Create a user delegation SAS for a container or blob with
    Python"; needs a role with ``generateUserDelegationKey``, e.g. Storage Blob Data Owner/Contributor). One
    key serves every SAS of the credential and account for ``DELEGATION_KEY_REUSE_SECONDS`` (an assembly
    signs one URL per source blob: one key request each would be a round trip per part). Locally (Azurite,
    an account-key connection string) a service SAS signed with that key."""
    from azure.storage.blob import BlobServiceClient

    account = container.account_name
    if account is None:
        raise ValueError(f"no storage account name in {container.url}")
    account_key = getattr(container.credential, "account_key", None)
    if account_key:
        return account, {"account_key": account_key}, *_validity()
    service_url = container.url.rsplit("/", 1)[0]
    with _delegation_lock:  # concurrent assemblies wait for one key rather than each asking for its own
        try:
            known = _delegation_keys.setdefault(container.credential, {})
        except TypeError:  # a credential that cannot be weakly referenced or hashed: a key per call
            known = {}
        entry = known.get(service_url)
        if entry is None or time.monotonic() - entry[3] > DELEGATION_KEY_REUSE_SECONDS:
            start, expiry = _validity()
            service = BlobServiceClient(service_url, credential=container.credential)
            entry = (service.get_user_delegation_key(start, expiry), start, expiry, time.monotonic())
            known[service_url] = entry
    key, start, expiry, _fetched = entry
    return account, {"user_delegation_key": key}, start, expiry


def readable_url(container: ContainerClient, blob: str) -> str:
    """A URL of ``blob`` that Put Block From URL may read: with a read SAS the storage service checks
    (``_sas_signer``)."""
    from azure.storage.blob import BlobSasPermissions, generate_blob_sas

    account, key, start, expiry = _sas_signer(container)
    sas = generate_blob_sas(
        account, container.container_name, blob, permission=BlobSasPermissions(read=True), start=start, expiry=expiry, **key
    )  # fmt: skip
    return f"{container.get_blob_client(blob).url}?{sas}"


def container_read_sas(container: ContainerClient) -> str:
    """A read and list SAS query string (no ``?``) over every blob of ``container`` (``_sas_signer``), with
    which a drop's blobs are listed and worker processes read them without a client of their own (Learn:
    "Create a user delegation SAS for a container with Python")."""
    from azure.storage.blob import ContainerSasPermissions, generate_container_sas

    account, key, start, expiry = _sas_signer(container)
    permission = ContainerSasPermissions(read=True, list=True)
    return generate_container_sas(
        account, container.container_name, permission=permission, start=start, expiry=expiry, **key
    )  # fmt: skip
