"""Blob triggers: poll the storage account for new or changed blobs matching each trigger's path and call
the function, at least once, like Event Grid.

- A blob is new for a function until a receipt of its (path, ETag) exists (``local.host.blobs``), so a
  restart does not fire again but an overwritten blob does. Exactly the listed version is read; one that
  changed or vanished meanwhile is ``skipped`` (the next scan fires for the new version).
- The function gets a real ``azure.functions.InputStream``, or, for an SDK-type binding such as
  ``azurefunctions.extensions.bindings.blob.BlobClient``, a real client for the blob built by the binding
  extension (nothing is downloaded).
- Retry and poison: a failing call is retried up to ``max_attempts`` times in total, ``retry_delay``
  seconds apart, then a poison message is written to ``webjobs-blobtrigger-poison``; the receipt is
  written either way, so a poisoned version is not retried forever.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import traceback
import typing
from collections.abc import Callable
from concurrent.futures import Future
from types import SimpleNamespace
from typing import Any

from azure.functions.blob import InputStream

from local.host.blobs import BlobCandidate, ReceiptStore, StorageAccount, quoted_etag
from local.host.connections import DEFAULT_CONNECTION, Connections
from local.host.indexing import BLOB_TRIGGER, FunctionInfo, IndexingError
from local.host.invocations import FAILED, POISONED, SKIPPED, SUCCEEDED, Invocation, InvocationRunner
from shared.layout import match_blob_path

log = logging.getLogger("visiontune.local.host")

class BlobTriggers:
    """The blob-triggered functions of one host: scanning, dispatching onto ``pool``, retries, poison."""

    def __init__(
        self,
        functions: list[FunctionInfo],
        runner: InvocationRunner,
        *,
        host_id: str,
        connections: Connections,
        max_attempts: int,
        retry_delay: float,
    ) -> None:
        self.functions = [f for f in functions if f.trigger_type == BLOB_TRIGGER]
        self._host_id = host_id
        self._connections = connections
        self._runner = runner
        self.max_attempts = max_attempts
        self.retry_delay = retry_delay
        self._lock = threading.Lock()
        self._in_flight: set[tuple[str, str, str]] = set()
        self._receipts: dict[str, ReceiptStore] = {}

    def _account(self, info: FunctionInfo) -> StorageAccount:
        return self._connections.account(info.connection, info.name)

    def _receipt_store(self, info: FunctionInfo) -> ReceiptStore:
        account = self._account(info)
        with self._lock:
            store = self._receipts.get(account.connection_string)
            if store is None:
                store = self._receipts[account.connection_string] = ReceiptStore(account, self._host_id)
        store.load(info.name)
        return store

    def dispatch(self) -> list[Future[Invocation]]:
        """Submit a call for every matching blob version that has no receipt and is not running."""
        futures: list[Future[Invocation]] = []
        for info in self.functions:
            if info.path is None:
                continue
            receipts = self._receipt_store(info)
            for candidate in self._account(info).candidates(info.path):
                key = (info.name, candidate.path, candidate.etag)
                with self._lock:
                    if key in self._in_flight or receipts.has(info.name, candidate.path, candidate.etag):
                        continue
                    self._in_flight.add(key)
                futures.append(self._runner.pool.submit(self.invoke, info, candidate, True))
        return futures

    def watch(self, poll_interval: float) -> None:
        """``dispatch`` every ``poll_interval`` seconds until the stop event is set."""
        failing = False
        while not self._runner.stop.is_set():
            try:
                self.dispatch()
                failing = False
            except Exception as error:  # storage down for a moment: say so once, keep polling
                if not failing:
                    log.warning("blob watcher: scanning storage failed: %s", error)
                failing = True
            self._runner.stop.wait(poll_interval)

    def tick(self, info: FunctionInfo, blob_path: str) -> Invocation:
        """Run ``info`` on ``blob_path`` (``<container>/<blob>``) now, even if that version was already
        processed (as Azure's admin endpoint does); ``ValueError`` if the path does not match."""
        container, _, name = blob_path.partition("/")
        parameters = match_blob_path(info.path or "", blob_path)
        if parameters is None:
            raise ValueError(f"{blob_path!r} does not match {info.name}'s path {info.path!r}")
        properties = self._account(info).blobs.get_blob_client(container, name).get_blob_properties()
        candidate = BlobCandidate(container, name, quoted_etag(properties.etag), parameters)
        return self._runner.pool.submit(self.invoke, info, candidate, False).result()

    def invoke(self, info: FunctionInfo, candidate: BlobCandidate, write_receipt: bool) -> Invocation:
        """Read the listed version of the blob and call ``info`` with it, with retries and poison."""
        from azure.core import MatchConditions
        from azure.core.exceptions import ResourceModifiedError, ResourceNotFoundError

        invocation = Invocation(
            info.name, BLOB_TRIGGER, candidate.path, blob_name=candidate.path, etag=candidate.etag
        )
        start = time.perf_counter()
        key = (info.name, candidate.path, candidate.etag)
        try:
            account = self._account(info)
            blob_client = account.blobs.get_blob_client(candidate.container, candidate.name)
            if info.deferred:
                return self._invoke_sdk_type(info, candidate, blob_client, invocation, write_receipt)
            try:
                # Read exactly the version that was listed; a newer one is its own (later) trigger.
                downloader = blob_client.download_blob(
                    etag=candidate.etag, match_condition=MatchConditions.IfNotModified
                )
                data = downloader.readall()
            except (ResourceModifiedError, ResourceNotFoundError) as gone:
                invocation.outcome = SKIPPED
                invocation.error = f"blob changed or deleted before it was read: {type(gone).__name__}"
                return invocation
            properties = downloader.properties
            blob_properties = {
                "ContentLength": properties.size,
                "Length": properties.size,
                "ContentType": properties.content_settings.content_type,
                "ContentMD5": (properties.content_settings.content_md5 or b"").hex() or None,
                "ETag": properties.etag,
                "LastModified": properties.last_modified.isoformat() if properties.last_modified else None,
                "CreatedOn": properties.creation_time.isoformat() if properties.creation_time else None,
                "BlobType": str(properties.blob_type),
            }

            def stream() -> InputStream:  # a fresh stream for every attempt
                return InputStream(
                    data=data,
                    name=candidate.path,
                    uri=blob_client.url,
                    length=len(data),
                    blob_properties=blob_properties,
                    metadata=dict(properties.metadata or {}),
                )

            return self._attempt(info, candidate, invocation, account, stream, write_receipt)
        except Exception:  # the host's own failure (storage down): report it, the next scan retries
            invocation.outcome = FAILED
            invocation.error = traceback.format_exc(limit=-3)
            return invocation
        finally:
            with self._lock:
                self._in_flight.discard(key)
            self._runner.finish(invocation, start)

    def _invoke_sdk_type(
        self, info: FunctionInfo, candidate: BlobCandidate, blob_client: Any, invocation: Invocation,
        write_receipt: bool,
    ) -> Invocation:  # fmt: skip
        """A deferred (SDK-type) blob trigger: nothing is downloaded; the function gets the client the
        binding extension builds from the same model binding data the Azure host sends (connection name,
        container, blob), with the same at-least-once retries and poison queue."""
        from azure.core import MatchConditions
        from azure.core.exceptions import ResourceModifiedError, ResourceNotFoundError

        try:  # the listed version must still be there; a newer one is its own (later) trigger
            blob_client.get_blob_properties(etag=candidate.etag, match_condition=MatchConditions.IfNotModified)
        except (ResourceModifiedError, ResourceNotFoundError) as gone:
            invocation.outcome = SKIPPED
            invocation.error = f"blob changed or deleted before it was bound: {type(gone).__name__}"
            return invocation
        return self._attempt(
            info, candidate, invocation, self._account(info), lambda: sdk_type_value(info, candidate), write_receipt
        )

    def _attempt(
        self, info: FunctionInfo, candidate: BlobCandidate, invocation: Invocation, account: StorageAccount,
        trigger_value: Callable[[], Any], write_receipt: bool,
    ) -> Invocation:  # fmt: skip
        """Call a blob trigger up to ``max_attempts`` times (``trigger_value`` builds its argument afresh for
        each attempt), then send it to the poison queue, as the Functions host does; record the receipt."""
        while invocation.attempts < self.max_attempts:
            invocation.attempts += 1
            try:
                self._runner.call(info, trigger_value(), dict(candidate.parameters), invocation)
                invocation.outcome = SUCCEEDED
                invocation.error = None
                break
            except Exception:
                invocation.error = traceback.format_exc(limit=-3)
                if invocation.attempts < self.max_attempts:
                    log.warning(
                        "%s failed on attempt %d/%d for %s: %s", info.name, invocation.attempts,
                        self.max_attempts, candidate.path, invocation.error.strip().splitlines()[-1],
                    )  # fmt: skip
                    self._runner.stop.wait(self.retry_delay)
        else:
            account.send_poison(info.name, candidate)
            invocation.outcome = POISONED
        if write_receipt:
            self._receipt_store(info).add(info.name, candidate.path, candidate.etag)
        return invocation


def sdk_type_value(info: FunctionInfo, candidate: BlobCandidate) -> Any:
    """Decode the trigger's SDK type with the registered binding extension
    (``azurefunctions-extensions-bindings-blob``), as the Python worker does for deferred bindings."""
    from azurefunctions.extensions.base import Datum
    from azurefunctions.extensions.base.meta import get_binding_registry

    annotation = typing.get_type_hints(info.handler).get(info.trigger_arg)
    converter = get_binding_registry().get(info.trigger_type)
    if annotation is None or converter is None:
        raise IndexingError(
            f"{info.name}: a deferred blob binding needs an SDK-type annotation and its extension "
            "(azurefunctions-extensions-bindings-blob) installed"
        )
    content = json.dumps({
        "Connection": info.connection or DEFAULT_CONNECTION,
        "ContainerName": candidate.container,
        "BlobName": candidate.name,
    })  # fmt: skip
    binding_data = SimpleNamespace(
        version="1.0", source="AzureStorageBlobs", content_type="application/json", content=content
    )
    return converter.decode(
        Datum(value=binding_data, type="model_binding_data"), trigger_metadata={}, pytype=annotation
    )
