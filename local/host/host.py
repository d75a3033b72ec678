"""``LocalFunctionsHost``: runs a Python v2 function app the way the Azure Functions host does.

- Blob triggers: polls the storage account (Azurite) for new or changed blobs matching each trigger's
  path (by ETag) and calls the function with a real ``azure.functions.InputStream`` (or, for an SDK-type
  binding such as ``azurefunctions.extensions.bindings.blob.BlobClient``, a real client for the blob,
  built by the binding extension; nothing is downloaded); at least once, like
  Event Grid. A failing call is retried up to ``max_attempts`` times in total, then a poison message is
  written to ``webjobs-blobtrigger-poison``. Processed ETags are kept as blob receipts in
  ``azure-webjobs-hosts``, so a restart does not fire again, but an overwritten blob does.
- Queue triggers (``local.host.queues``): messages of the trigger's queue on the same storage account,
  ``batchSize`` / ``newBatchThreshold`` / ``visibilityTimeout`` / ``maxDequeueCount`` /
  ``messageEncoding`` from host.json, the dequeue count on the ``QueueMessage``, ``<queue>-poison`` after
  ``maxDequeueCount`` failed calls. Queue output bindings send their value(s) after a successful call.
- Timers: six-field NCRONTAB schedules (``%SETTING%`` resolved); a timer is a singleton (a tick that
  comes while the previous one still runs is skipped) and is never retried, as on Azure.
- HTTP triggers: served on ``127.0.0.1:<http_port>/api/<route>``; ``POST /admin/functions/<name>``
  runs any function now (Core Tools' admin route; the body's ``input`` is the blob path for blob
  triggers).
- Bounded concurrency (a thread pool for blob triggers and timers, a separate one for HTTP requests, so a
  route answers while long triggers run, as on Azure where a request never queues behind a blob
  trigger's work) and a log line per invocation.
- Logs as the Functions Python worker forwards them: a handler on the root logger (set to INFO while
  the host lives) takes every record at INFO and above that a handler emits on its own thread, and
  keeps it on the ``Invocation`` (``log_count``, the first ``MAX_KEPT_LOGS`` in ``logs``, each with the
  custom dimensions the Azure Monitor OpenTelemetry handler would send: the record's non-standard
  attributes). Records from threads the handler starts are not attributed (the worker sends them
  without an invocation id).

Settings: ``local.settings.json`` ``Values`` under ``app_root`` fill what the process environment leaves
unset (as Core Tools does), ``settings`` win over both; the result is put into ``os.environ`` before the
app is imported (the app reads its settings from there) and the previous environment is restored by
``stop()``. Caveat: that environment is process-wide, so two hosts in one process share it.
"""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import json
import logging
import os
import re
import threading
import time
import traceback
import uuid
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from azure.functions.blob import InputStream

from local.host.blobs import BlobCandidate, ReceiptStore, StorageAccount, quoted_etag
from local.host.indexing import (
    BLOB_TRIGGER,
    HTTP_TRIGGER,
    QUEUE_TRIGGER,
    TIMER_TRIGGER,
    FunctionInfo,
    IndexingError,
    find_function_app,
    index_functions,
    load_app_module,
)
from local.host.ncrontab import Schedule, parse_schedule
from local.host.queues import POISON_SUFFIX, RUNNING_VISIBILITY_SECONDS, QueueClients, QueueOptions
from shared.settings import read_local_settings

log = logging.getLogger("visiontune.local.host")

DEFAULT_CONNECTION = "AzureWebJobsStorage"
# A timer that fires this much later than scheduled is reported as past due.
PAST_DUE_TOLERANCE = timedelta(seconds=5)

# Records kept per invocation (all are counted).
MAX_KEPT_LOGS = 200
# The standard LogRecord attributes; every other attribute is a custom dimension (as the OpenTelemetry
# logging handler turns them into log attributes).
_STANDARD_RECORD_ATTRIBUTES = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime"}

SUCCEEDED = "succeeded"
FAILED = "failed"
POISONED = "poisoned"
SKIPPED = "skipped"


@dataclass
class Invocation:
    """One call of a function (with its retries): what fired it, how it ended, how long it took.

    ``outcome`` is ``succeeded``, ``failed`` (timer/http error), ``poisoned`` (blob trigger failed on
    every attempt; a poison message was written) or ``skipped`` (the blob changed or vanished between
    listing and reading; the next scan fires for the new version). ``error`` is the last error's text.
    """

    function_name: str
    trigger_type: str
    trigger_detail: str
    blob_name: str | None = None  # "<container>/<blob>"
    etag: str | None = None
    schedule: str | None = None
    attempts: int = 0
    outcome: str = "pending"
    error: str | None = None
    duration: float = 0.0  # seconds, all attempts
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    response: Any = field(default=None, repr=False)  # http: the azure.functions.HttpResponse
    log_count: int = 0  # records at INFO and above the handler emitted (see the module docstring)
    logs: list[dict[str, Any]] = field(default_factory=list, repr=False)  # the first MAX_KEPT_LOGS

    def add_log(self, record: logging.LogRecord) -> None:
        """Count ``record``; keep its level, logger, message and custom dimensions (values as text)."""
        self.log_count += 1
        if len(self.logs) < MAX_KEPT_LOGS:
            self.logs.append(
                {
                    "level": record.levelname,
                    "logger": record.name,
                    "message": record.getMessage(),
                    "dimensions": {
                        k: str(v) for k, v in vars(record).items() if k not in _STANDARD_RECORD_ATTRIBUTES
                    },
                }
            )

    @property
    def succeeded(self) -> bool:
        return self.outcome == SUCCEEDED

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (no response object, no kept log records: ``log_count`` says how many)."""
        data = asdict(self)
        data.pop("response")
        data.pop("logs")
        data["started_at"] = self.started_at.isoformat()
        return data

    def log_line(self) -> str:
        etag = f" etag={self.etag}" if self.etag else ""
        error = f" error={self.error.splitlines()[-1]!r}" if self.error and self.outcome != SUCCEEDED else ""
        return (
            f"{self.function_name} [{self.trigger_type} {self.trigger_detail}]{etag} "
            f"attempts={self.attempts} outcome={self.outcome} duration={self.duration * 1000:.0f}ms{error}"
        )


class _InvocationLogs(logging.Handler):
    """The worker's root handler: records at INFO and above, attributed to the invocation whose handler
    runs on the emitting thread (the worker keeps the invocation id in a thread-local the same way)."""

    def __init__(self) -> None:
        super().__init__(level=logging.INFO)
        self._current = threading.local()

    def emit(self, record: logging.LogRecord) -> None:
        invocation: Invocation | None = getattr(self._current, "invocation", None)
        if invocation is not None:
            invocation.add_log(record)

    @contextmanager
    def attributed_to(self, invocation: Invocation | None) -> Iterator[None]:
        previous = getattr(self._current, "invocation", None)
        self._current.invocation = invocation
        try:
            yield
        finally:
            self._current.invocation = previous


class _Out:
    """A concrete ``azure.functions.Out`` for output bindings."""

    def __init__(self) -> None:
        self._value: Any = None

    def set(self, value: Any) -> None:
        self._value = value

    def get(self) -> Any:
        return self._value


@dataclass
class _Context:
    """The subset of ``azure.functions.Context`` a handler may read."""

    invocation_id: str
    function_name: str
    function_directory: str


def _default_host_id(app_root: Path, module_name: str) -> str:
    digest = hashlib.sha1(f"{app_root}:{module_name}".encode()).hexdigest()[:8]
    stem = re.sub(r"[^a-z0-9-]", "-", app_root.name.lower()).strip("-")[:23] or "app"
    return f"{stem}-{digest}"


class LocalFunctionsHost:
    """Runs the function app under ``app_root`` locally; see the module docstring for the behaviour."""

    def __init__(
        self,
        app_root: Path,
        *,
        settings: dict[str, str] | None = None,
        poll_interval: float = 1.0,
        max_workers: int = 4,
        max_http_workers: int = 4,
        max_attempts: int = 5,
        module_name: str = "function_app",
        http_port: int | None = None,
        retry_delay: float = 0.1,
        host_id: str | None = None,
        history_size: int = 1000,
        use_local_settings_file: bool = True,
    ) -> None:
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        self.app_root = Path(app_root).resolve()
        self.poll_interval = poll_interval
        self.max_workers = max_workers
        self.max_attempts = max_attempts
        self.retry_delay = retry_delay
        self.http_port = http_port  # None: no HTTP server; 0: a free port (see .http_url after start)
        self.host_id = host_id or _default_host_id(self.app_root, module_name)
        self.history: deque[Invocation] = deque(maxlen=history_size)

        self._saved_environment: dict[str, str | None] = {}
        self.settings = self._apply_settings(settings or {}, use_local_settings_file)
        self._logs = _InvocationLogs()
        root = logging.getLogger()
        self._saved_root_level = root.level
        root.setLevel(min(root.getEffectiveLevel(), logging.INFO))
        root.addHandler(self._logs)
        try:
            self.app = find_function_app(load_app_module(self.app_root, module_name))
            self._functions = index_functions(self.app, self.settings)
        except BaseException:
            self._restore_environment()
            self._remove_log_handler()
            raise
        self._by_name = {f.name: f for f in self._functions}
        self._schedules: dict[str, Schedule] = {
            f.name: parse_schedule(f.schedule) for f in self._functions if f.schedule is not None
        }

        self._pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="functions-host")
        self._http_pool = ThreadPoolExecutor(max_workers=max_http_workers, thread_name_prefix="functions-host-http")
        self._lock = threading.Lock()
        self._in_flight: set[tuple[str, str, str]] = set()
        self._timers_running: set[str] = set()
        self._accounts: dict[str, StorageAccount] = {}
        self._receipts: dict[str, ReceiptStore] = {}
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._http_server: Any = None
        self._closed = False
        self.queue_options = QueueOptions.from_host_json(self.app_root)
        self._queue_clients: dict[str, QueueClients] = {}
        self._queue_in_flight: dict[str, int] = {}

    # --- public API ----------------------------------------------------------------------------
    def functions(self) -> list[FunctionInfo]:
        """Every indexed function (name, trigger type, path/schedule/route, connection, outputs)."""
        return list(self._functions)

    def function(self, name: str) -> FunctionInfo:
        """The indexed function called ``name``; ``KeyError`` listing the known names otherwise."""
        try:
            return self._by_name[name]
        except KeyError:
            raise KeyError(f"no function {name!r}; the app has: {', '.join(self._by_name)}") from None

    def start(self) -> None:
        """Start the blob watcher, the timers and (if ``http_port`` is set) the HTTP server."""
        if self._closed:
            raise RuntimeError("this host was stopped; create a new LocalFunctionsHost to start again")
        if self._threads:
            return
        if self.http_port is not None:
            from local.host.http_server import start_http_server

            self._http_server = start_http_server(self, self.http_port)
        blob_functions = [f for f in self._functions if f.trigger_type == BLOB_TRIGGER]
        if blob_functions:
            self._threads.append(
                threading.Thread(target=self._watch_blobs, name="host-blob-watcher", daemon=True)
            )
        if any(f.trigger_type == QUEUE_TRIGGER for f in self._functions):
            self._threads.append(threading.Thread(target=self._watch_queues, name="host-queue-watcher", daemon=True))
        if self._schedules:
            self._threads.append(threading.Thread(target=self._run_timers, name="host-timers", daemon=True))
        for thread in self._threads:
            thread.start()
        log.info(
            "functions host started (%s): %s", self.host_id, "; ".join(f.describe() for f in self._functions)
        )

    def stop(self) -> None:
        """Stop watching and serving, wait for running invocations, restore the process environment.

        Idempotent. A stopped host cannot be started again (its thread pool is gone)."""
        if self._closed:
            return
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=max(5.0, self.poll_interval * 2))
        self._threads = []
        if self._http_server is not None:
            self._http_server.shutdown()
            self._http_server.server_close()
            self._http_server = None
        self._pool.shutdown(wait=True)
        self._http_pool.shutdown(wait=True)
        for account in self._accounts.values():
            account.close()
        self._accounts.clear()
        for clients in self._queue_clients.values():
            clients.close()
        self._queue_clients.clear()
        self._restore_environment()
        self._remove_log_handler()
        self._closed = True

    def __enter__(self) -> LocalFunctionsHost:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def http_url(self) -> str | None:
        """``http://127.0.0.1:<port>`` of the running HTTP server, else None."""
        if self._http_server is None:
            return None
        return f"http://127.0.0.1:{self._http_server.server_address[1]}"

    def run_once(self) -> list[Invocation]:
        """One synchronous scan: dispatch every new or changed matching blob and one batch of visible
        messages per queue trigger, and wait for them all."""
        futures = self._dispatch_new_blobs() + self._dispatch_queue_messages()
        return [future.result() for future in futures]

    def run_until_idle(self, timeout: float = 60) -> list[Invocation]:
        """Repeat ``run_once`` until a scan fires nothing; ``TimeoutError`` if still busy after ``timeout`` s."""
        deadline = time.monotonic() + timeout
        invocations: list[Invocation] = []
        while True:
            fired = self.run_once()
            invocations.extend(fired)
            if not fired:
                return invocations
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"the app was still firing after {timeout:.0f} s ({len(invocations)} invocations): "
                    "does a function keep writing blobs its own trigger matches?"
                )

    def tick(self, function_name: str, blob_path: str | None = None) -> Invocation:
        """Run ``function_name`` now, synchronously. Timers get ``past_due=False``; an HTTP function a
        GET with no parameters; a blob trigger needs ``blob_path`` (``<container>/<blob>``) and runs even
        if that blob was already processed (as Azure's admin endpoint does)."""
        info = self.function(function_name)
        if info.trigger_type == TIMER_TRIGGER:
            return self._pool.submit(self._invoke_timer, info, None).result()
        if info.trigger_type == HTTP_TRIGGER:
            import azure.functions as func

            request = func.HttpRequest(
                "GET", f"http://127.0.0.1/admin/functions/{info.name}", body=b"", route_params={}
            )
            return self._http_pool.submit(self._invoke_http, info, request).result()
        if not blob_path:
            raise ValueError(
                f"{function_name} is a blob trigger: give the blob path (<container>/<blob>) to run"
            )
        container, _, name = blob_path.partition("/")
        from shared.layout import match_blob_path

        parameters = match_blob_path(info.path or "", blob_path)
        if parameters is None:
            raise ValueError(f"{blob_path!r} does not match {function_name}'s path {info.path!r}")
        properties = self._account(info).blobs.get_blob_client(container, name).get_blob_properties()
        candidate = BlobCandidate(container, name, quoted_etag(properties.etag), parameters)
        return self._pool.submit(self._invoke_blob, info, candidate, False).result()

    # --- settings ------------------------------------------------------------------------------
    def _apply_settings(self, explicit: Mapping[str, str], use_local_settings_file: bool) -> dict[str, str]:
        from_file = (
            read_local_settings(self.app_root / "local.settings.json") if use_local_settings_file else {}
        )
        values = {k: v for k, v in from_file.items() if k not in os.environ}
        values.update({str(k): str(v) for k, v in explicit.items()})
        for key, value in values.items():
            if key not in self._saved_environment:
                self._saved_environment[key] = os.environ.get(key)
            os.environ[key] = value
        return dict(os.environ)

    def _remove_log_handler(self) -> None:
        root = logging.getLogger()
        root.removeHandler(self._logs)
        root.setLevel(self._saved_root_level)

    def _restore_environment(self) -> None:
        for key, previous in self._saved_environment.items():
            if previous is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = previous
        self._saved_environment = {}

    def _account(self, info: FunctionInfo) -> StorageAccount:
        return self._account_named(info.connection or DEFAULT_CONNECTION, info.name)

    def _account_for(self, binding: dict[str, Any], info: FunctionInfo) -> StorageAccount:
        return self._account_named(binding.get("connection") or DEFAULT_CONNECTION, info.name)

    def _account_named(self, setting: str, function_name: str) -> StorageAccount:
        with self._lock:
            account = self._accounts.get(setting)
            if account is None:
                connection = self.settings.get(setting)
                if not connection:
                    raise IndexingError(
                        f"function {function_name!r}: connection {setting!r} is not set (expected a storage "
                        "connection string, e.g. Azurite's, in that app setting)"
                    )
                account = self._accounts[setting] = StorageAccount(connection)
            return account

    def _receipt_store(self, info: FunctionInfo) -> ReceiptStore:
        account = self._account(info)
        with self._lock:
            store = self._receipts.get(account.connection_string)
            if store is None:
                store = self._receipts[account.connection_string] = ReceiptStore(account, self.host_id)
        store.load(info.name)
        return store

    # --- blob triggers -------------------------------------------------------------------------
    def _dispatch_new_blobs(self) -> list[Future[Invocation]]:
        futures: list[Future[Invocation]] = []
        for info in self._functions:
            if info.trigger_type != BLOB_TRIGGER or info.path is None:
                continue
            receipts = self._receipt_store(info)
            for candidate in self._account(info).candidates(info.path):
                key = (info.name, candidate.path, candidate.etag)
                with self._lock:
                    if key in self._in_flight or receipts.has(info.name, candidate.path, candidate.etag):
                        continue
                    self._in_flight.add(key)
                futures.append(self._pool.submit(self._invoke_blob, info, candidate, True))
        return futures

    def _watch_blobs(self) -> None:
        failing = False
        while not self._stop.is_set():
            try:
                self._dispatch_new_blobs()
                failing = False
            except Exception as error:  # storage down for a moment: say so once, keep polling
                if not failing:
                    log.warning("blob watcher: scanning storage failed: %s", error)
                failing = True
            self._stop.wait(self.poll_interval)

    def _invoke_blob(self, info: FunctionInfo, candidate: BlobCandidate, write_receipt: bool) -> Invocation:
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
                return self._invoke_blob_sdk_type(info, candidate, blob_client, invocation, write_receipt)
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

            return self._attempt_blob(info, candidate, invocation, account, stream, write_receipt)
        except Exception:  # the host's own failure (storage down): report it, the next scan retries
            invocation.outcome = FAILED
            invocation.error = traceback.format_exc(limit=-3)
            return invocation
        finally:
            with self._lock:
                self._in_flight.discard(key)
            self._finish(invocation, start)

    def _invoke_blob_sdk_type(
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
        return self._attempt_blob(
            info, candidate, invocation, self._account(info), lambda: self._sdk_type_value(info, candidate), write_receipt
        )

    def _attempt_blob(
        self, info: FunctionInfo, candidate: BlobCandidate, invocation: Invocation, account: Any,
        trigger_value: Callable[[], Any], write_receipt: bool,
    ) -> Invocation:  # fmt: skip
        """Call a blob trigger up to ``max_attempts`` times (``trigger_value`` builds its argument afresh for
        each attempt), then send it to the poison queue, as the Functions host does; record the receipt."""
        while invocation.attempts < self.max_attempts:
            invocation.attempts += 1
            try:
                self._call(info, trigger_value(), dict(candidate.parameters), invocation)
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
                    self._stop.wait(self.retry_delay)
        else:
            account.send_poison(info.name, candidate)
            invocation.outcome = POISONED
        if write_receipt:
            self._receipt_store(info).add(info.name, candidate.path, candidate.etag)
        return invocation

    def _sdk_type_value(self, info: FunctionInfo, candidate: BlobCandidate) -> Any:
        """Decode the trigger's SDK type with the registered binding extension
        (``azurefunctions-extensions-bindings-blob``), as the Python worker does for deferred bindings."""
        import json
        import typing
        from types import SimpleNamespace

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

    # --- timers --------------------------------------------------------------------------------
    def _run_timers(self) -> None:
        now = datetime.now(UTC)
        due = {name: schedule.next_after(now) for name, schedule in self._schedules.items()}
        for name in self._schedules:
            if self._by_name[name].run_on_startup:
                self._fire_timer(name, None)
        while not self._stop.is_set():
            name, when = min(due.items(), key=lambda item: item[1])
            wait = (when - datetime.now(UTC)).total_seconds()
            if wait > 0:
                self._stop.wait(min(wait, 1.0))
                continue
            self._fire_timer(name, when)
            due[name] = self._schedules[name].next_after(max(when, datetime.now(UTC) - PAST_DUE_TOLERANCE))

    def _fire_timer(self, name: str, scheduled_for: datetime | None) -> None:
        with self._lock:
            if name in self._timers_running:
                log.info(
                    "%s: previous run still in progress; skipping this tick (timers are singletons)", name
                )
                return
            self._timers_running.add(name)
        self._pool.submit(self._invoke_timer, self._by_name[name], scheduled_for)

    def _invoke_timer(self, info: FunctionInfo, scheduled_for: datetime | None) -> Invocation:
        from azure.functions.timer import TimerRequest

        invocation = Invocation(info.name, TIMER_TRIGGER, info.schedule or "", schedule=info.schedule)
        start = time.perf_counter()
        invocation.attempts = 1  # timers are never retried
        try:
            now = datetime.now(UTC)
            past_due = scheduled_for is not None and now - scheduled_for > PAST_DUE_TOLERANCE
            request = TimerRequest(
                past_due=past_due,
                schedule_status={
                    "Last": (scheduled_for or now).isoformat(),
                    "Next": self._schedules[info.name].next_after(now).isoformat(),
                    "LastUpdated": now.isoformat(),
                },
                schedule={"AdjustForDST": True},
            )
            self._call(info, request, {}, invocation)
            invocation.outcome = SUCCEEDED
        except Exception:
            invocation.outcome = FAILED
            invocation.error = traceback.format_exc(limit=-3)
        finally:
            with self._lock:
                self._timers_running.discard(info.name)
            self._finish(invocation, start)
        return invocation

    # --- queue triggers --------------------------------------------------------------------------
    def _queues(self, setting: str, function_name: str) -> QueueClients:
        account = self._account_named(setting, function_name)
        with self._lock:
            clients = self._queue_clients.get(account.connection_string)
            if clients is None:
                clients = self._queue_clients[account.connection_string] = QueueClients(account.connection_string)
            return clients

    def _dispatch_queue_messages(self) -> list[Future[Invocation]]:
        """Receive one batch per queue trigger whose in-flight count is at or below ``newBatchThreshold``."""
        options = self.queue_options
        futures: list[Future[Invocation]] = []
        for info in self._functions:
            if info.trigger_type != QUEUE_TRIGGER or not info.queue_name:
                continue
            with self._lock:
                in_flight = self._queue_in_flight.get(info.name, 0)
            if in_flight > options.new_batch_threshold:
                continue
            queue = self._queues(info.connection or DEFAULT_CONNECTION, info.name).get(info.queue_name)
            messages = list(
                queue.receive_messages(
                    messages_per_page=options.batch_size,
                    max_messages=options.batch_size,
                    visibility_timeout=RUNNING_VISIBILITY_SECONDS,
                )
            )
            for message in messages:
                with self._lock:
                    self._queue_in_flight[info.name] = self._queue_in_flight.get(info.name, 0) + 1
                futures.append(self._pool.submit(self._invoke_queue, info, queue, message))
        return futures

    def _watch_queues(self) -> None:
        failing = False
        while not self._stop.is_set():
            try:
                fired = self._dispatch_queue_messages()
                failing = False
            except Exception as error:  # storage down for a moment: say so once, keep polling
                if not failing:
                    log.warning("queue watcher: receiving messages failed: %s", error)
                failing = True
                fired = []
            if not fired:
                self._stop.wait(self.poll_interval)

    def _invoke_queue(self, info: FunctionInfo, queue: Any, message: Any) -> Invocation:
        from azure.functions.queue import QueueMessage  # the worker's type, with the dequeue count

        options = self.queue_options
        invocation = Invocation(info.name, QUEUE_TRIGGER, f"{info.queue_name} {message.id}")
        invocation.attempts = message.dequeue_count or 1
        start = time.perf_counter()
        poison = self._queues(info.connection or DEFAULT_CONNECTION, info.name)
        try:
            if (message.dequeue_count or 0) > options.max_dequeue_count:
                # Its earlier runs never finished (the host died): straight to the poison queue, no call.
                poison.get(f"{info.queue_name}{POISON_SUFFIX}").send_message(message.content)
                queue.delete_message(message)
                invocation.outcome = POISONED
                invocation.error = f"dequeue count {message.dequeue_count} above maxDequeueCount"
                return invocation
            try:
                body = options.decode(message.content)
                trigger = QueueMessage(
                    id=message.id,
                    body=body,
                    dequeue_count=message.dequeue_count,
                    expiration_time=message.expires_on,
                    insertion_time=message.inserted_on,
                    time_next_visible=message.next_visible_on,
                    pop_receipt=message.pop_receipt,
                )
                self._call(info, trigger, {"QueueTrigger": body.decode("utf-8", "replace")}, invocation)
            except Exception:
                invocation.error = traceback.format_exc(limit=-3)
                if (message.dequeue_count or 1) >= options.max_dequeue_count:
                    poison.get(f"{info.queue_name}{POISON_SUFFIX}").send_message(message.content)
                    queue.delete_message(message)
                    invocation.outcome = POISONED
                else:
                    # visible again after visibilityTimeout; the next receive counts one more dequeue
                    queue.update_message(message, visibility_timeout=int(options.visibility_timeout))
                    invocation.outcome = FAILED
                return invocation
            queue.delete_message(message)
            invocation.outcome = SUCCEEDED
            return invocation
        finally:
            with self._lock:
                self._queue_in_flight[info.name] = self._queue_in_flight.get(info.name, 1) - 1
            self._finish(invocation, start)

    # --- http ----------------------------------------------------------------------------------
    def _invoke_http(self, info: FunctionInfo, request: Any) -> Invocation:
        import azure.functions as func

        invocation = Invocation(info.name, HTTP_TRIGGER, f"{request.method} {request.url}")
        start = time.perf_counter()
        invocation.attempts = 1
        try:
            parameters = {**dict(request.params), **dict(request.route_params)}
            result = self._call(info, request, parameters, invocation)
            if isinstance(result, func.HttpResponse):
                invocation.response = result
            elif result is None:
                invocation.response = func.HttpResponse(status_code=204)
            else:
                invocation.response = func.HttpResponse(
                    result if isinstance(result, (str, bytes)) else str(result)
                )
            invocation.outcome = SUCCEEDED
        except Exception:
            invocation.outcome = FAILED
            invocation.error = traceback.format_exc(limit=-3)
            invocation.response = func.HttpResponse("Internal Server Error", status_code=500)
        finally:
            self._finish(invocation, start)
        return invocation

    def handle_http(self, method: str, path: str, *, url: str, headers: Mapping[str, str],
                    params: Mapping[str, str], body: bytes) -> Invocation | None:  # fmt: skip
        """Route one request (``path`` below the route prefix) to its function; None when no route matches."""
        import azure.functions as func

        for info, route_params in self._match_route(path):
            if info.methods and method.upper() not in info.methods:
                continue
            request = func.HttpRequest(
                method.upper(), url, headers=dict(headers), params=dict(params),
                route_params=route_params, body=body,
            )  # fmt: skip
            return self._http_pool.submit(self._invoke_http, info, request).result()
        return None

    def allowed_methods(self, path: str) -> set[str]:
        """The methods the functions whose route matches ``path`` accept (for a 405 answer)."""
        return {m for info, _ in self._match_route(path) for m in (info.methods or ("GET", "POST"))}

    def _match_route(self, path: str) -> list[tuple[FunctionInfo, dict[str, str]]]:
        from local.host.routes import compile_route

        matches = []
        for info in self._functions:
            if info.trigger_type != HTTP_TRIGGER or info.route is None:
                continue
            route_params = compile_route(info.route).match(path)
            if route_params is not None:
                matches.append((info.route.count("{"), info, route_params))
        matches.sort(key=lambda item: item[0])  # the most literal route first
        return [(info, params) for _, info, params in matches]

    # --- calling a handler ---------------------------------------------------------------------
    def _call(
        self,
        info: FunctionInfo,
        trigger_value: Any,
        binding_data: dict[str, str],
        invocation: Invocation | None = None,
    ) -> Any:
        """Call the handler with the trigger, input bindings, output bindings and ``context``; records it
        logs on this thread are kept on ``invocation``."""
        handler = info.handler
        parameters = inspect.signature(handler).parameters
        arguments: dict[str, Any] = {info.trigger_arg: trigger_value}
        binding_data = {
            **binding_data,
            "rand-guid": str(uuid.uuid4()),
            "DateTime": datetime.now(UTC).isoformat(),
        }
        for binding in info.inputs:
            if binding["type"] == "blob":
                arguments[binding["name"]] = self._read_input_blob(info, binding, binding_data)
        outputs: dict[str, _Out] = {}
        for binding in info.outputs:
            if binding["name"] != "$return":
                outputs[binding["name"]] = arguments[binding["name"]] = _Out()
        if "context" in parameters and "context" not in arguments:
            arguments["context"] = _Context(str(uuid.uuid4()), info.name, str(self.app_root))
        unknown = [name for name in arguments if name not in parameters]
        if unknown:
            raise IndexingError(
                f"{info.name}: the handler has no parameter(s) {unknown} its bindings declare"
            )
        with self._logs.attributed_to(invocation):
            result = handler(**arguments)
            if inspect.isawaitable(result):
                result = asyncio.run(_await(result))
        for binding in info.outputs:
            if binding["type"] == "blob" and binding["name"] in outputs:
                value = outputs[binding["name"]].get()
                if value is not None:
                    self._write_output_blob(info, binding, binding_data, value)
            elif binding["type"] == "queue" and binding["name"] in outputs:
                value = outputs[binding["name"]].get()
                if value is not None:
                    self._send_output_messages(info, binding, value)
        return result

    def _binding_path(
        self, info: FunctionInfo, binding: dict[str, Any], binding_data: dict[str, str]
    ) -> tuple[str, str]:
        from local.host.indexing import resolve_setting_references

        path = resolve_setting_references(
            binding["path"], self.settings, what=f"{info.name} ({binding['name']})"
        )

        def substitute(found: re.Match[str]) -> str:
            name = found.group(1)
            if name not in binding_data:
                raise IndexingError(
                    f"{info.name}: binding path {binding['path']!r} uses {{{name}}}, which the trigger does not supply"
                )
            return binding_data[name]

        container, _, name = re.sub(r"\{([^}]+)\}", substitute, path).partition("/")
        return container, name

    def _read_input_blob(
        self, info: FunctionInfo, binding: dict[str, Any], binding_data: dict[str, str]
    ) -> Any:
        from azure.core.exceptions import ResourceNotFoundError

        container, name = self._binding_path(info, binding, binding_data)
        client = self._account_for(binding, info).blobs.get_blob_client(container, name)
        try:
            data = client.download_blob().readall()
        except ResourceNotFoundError:
            return None
        return InputStream(data=data, name=f"{container}/{name}", uri=client.url, length=len(data))

    def _write_output_blob(
        self, info: FunctionInfo, binding: dict[str, Any], binding_data: dict[str, str], value: Any
    ) -> None:
        container, name = self._binding_path(info, binding, binding_data)
        if hasattr(value, "read"):
            value = value.read()
        if isinstance(value, str):
            value = value.encode("utf-8")
        from azure.core.exceptions import ResourceExistsError

        container_client = self._account_for(binding, info).blobs.get_container_client(container)
        try:
            container_client.create_container()
        except ResourceExistsError:
            pass
        container_client.upload_blob(name, value, overwrite=True)

    def _send_output_messages(self, info: FunctionInfo, binding: dict[str, Any], value: Any) -> None:
        """A queue output binding: one message per item when the function set a list, else one."""
        from local.host.indexing import resolve_setting_references

        name = resolve_setting_references(binding["queueName"], self.settings, what=f"{info.name} ({binding['name']})")
        queue = self._queues(binding.get("connection") or DEFAULT_CONNECTION, info.name).get(name)
        for item in value if isinstance(value, list) else [value]:
            text = item.decode("utf-8") if isinstance(item, bytes) else item if isinstance(item, str) else json.dumps(item)
            queue.send_message(self.queue_options.encode(text))

    def _finish(self, invocation: Invocation, start: float) -> None:
        invocation.duration = time.perf_counter() - start
        self.history.append(invocation)
        level = logging.INFO if invocation.outcome in (SUCCEEDED, SKIPPED) else logging.WARNING
        log.log(level, "%s", invocation.log_line())


async def _await(awaitable: Any) -> Any:
    return await awaitable
