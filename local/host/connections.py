"""Storage clients per connection app setting, shared by every trigger kind and binding of one host."""

from __future__ import annotations

import threading
from collections.abc import Mapping

from local.host.blobs import StorageAccount
from local.host.indexing import IndexingError
from local.host.queues import QueueClients

# The app setting a binding without ``connection`` uses, as on Azure.
DEFAULT_CONNECTION = "AzureWebJobsStorage"


class Connections:
    """A ``StorageAccount`` per connection setting and ``QueueClients`` per connection string, created on
    first use (thread-safe); ``close()`` closes them all."""

    def __init__(self, settings: Mapping[str, str]) -> None:
        self._settings = settings
        self._lock = threading.Lock()
        self._accounts: dict[str, StorageAccount] = {}
        self._queue_clients: dict[str, QueueClients] = {}

    def account(self, setting: str | None, function_name: str) -> StorageAccount:
        """The account of the connection string in app setting ``setting`` (None: ``AzureWebJobsStorage``);
        ``IndexingError`` naming ``function_name`` when that setting is not set."""
        setting = setting or DEFAULT_CONNECTION
        with self._lock:
            account = self._accounts.get(setting)
            if account is None:
                connection = self._settings.get(setting)
                if not connection:
                    raise IndexingError(
                        f"function {function_name!r}: connection {setting!r} is not set (expected a storage "
                        "connection string, e.g. Azurite's, in that app setting)"
                    )
                account = self._accounts[setting] = StorageAccount(connection)
            return account

    def queues(self, setting: str | None, function_name: str) -> QueueClients:
        """The queue clients of the same account as ``account(setting, function_name)``."""
        account = self.account(setting, function_name)
        with self._lock:
            clients = self._queue_clients.get(account.connection_string)
            if clients is None:
                clients = self._queue_clients[account.connection_string] = QueueClients(account.connection_string)
            return clients

    def close(self) -> None:
        with self._lock:
            for account in self._accounts.values():
                account.close()
            self._accounts.clear()
            for clients in self._queue_clients.values():
                clients.close()
            self._queue_clients.clear()
