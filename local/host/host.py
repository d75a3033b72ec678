"""``LocalFunctionsHost``: runs a Python v2 function app the way the Azure Functions host does.

It indexes ``function_app.py`` (``local.host.indexing``) and runs each trigger kind on the storage
account of its connection (Azurite locally):

- Blob triggers (``local.host.blob_triggers``): new or changed blobs, at least once, retries, poison.
- Queue triggers (``local.host.queue_triggers``, host.json knobs in ``local.host.queues``).
- Timers (``local.host.timers``): NCRONTAB schedules, singletons, never retried.
- HTTP triggers (``local.host.http_triggers``): served on ``127.0.0.1:<http_port>/api/<route>`` by
  ``local.host.http_server``; ``POST /admin/functions/<name>`` runs any function now (Core Tools' admin
  route; the body's ``input`` is the blob path for blob triggers).
- Handlers are called with their bindings by ``local.host.bindings``; each call is an ``Invocation``
  (``local.host.invocations``) kept in ``history`` with the log records its handler emitted.
- Bounded concurrency: a thread pool for blob, queue and timer triggers, a separate one for HTTP
  requests, so a route answers while long triggers run (as on Azure, where a request never queues
  behind a blob trigger's work), and a log line per invocation.

Settings: ``local.settings.json`` ``Values`` under ``app_root`` fill what the process environment leaves
unset (as Core Tools does), ``settings`` win over both; the result is put into ``os.environ`` before the
app is imported (the app reads its settings from there) and the previous environment is restored by
``stop()``. Caveat: that environment is process-wide, so two hosts in one process share it.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import threading
import time
from collections import deque
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from http.server import ThreadingHTTPServer
from pathlib import Path

from local.host.bindings import HandlerCaller
from local.host.blob_triggers import BlobTriggers
from local.host.connections import Connections
from local.host.http_server import start_http_server
from local.host.http_triggers import HttpTriggers
from local.host.indexing import (
    HTTP_TRIGGER,
    TIMER_TRIGGER,
    FunctionInfo,
    find_function_app,
    index_functions,
    load_app_module,
)
from local.host.invocations import Invocation, InvocationLogs, InvocationRunner, finish
from local.host.queue_triggers import QueueTriggers
from local.host.queues import QueueOptions
from local.host.timers import TimerTriggers
from shared.settings import read_local_settings

log = logging.getLogger("visiontune.local.host")


def _default_host_id(app_root: Path, module_name: str) -> str:
    digest = hashlib.sha1(f"{app_root}:{module_name}".encode()).hexdigest()[:8]
    stem = re.sub(r"[^a-z0-9-]", "-", app_root.name.lower()).strip("-")[:23] or "app"
    return f"{stem}-{digest}"


class LocalFunctionsHost:
    """Runs the function app under ``app_root`` locally; see the module docstring for the behaviour.

    ``max_attempts``/``retry_delay``: blob trigger retries; ``max_workers``: the trigger pool;
    ``max_http_workers``: the HTTP pool; ``http_port`` None: no HTTP server, 0: a free port.
    """

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
        self._logs = InvocationLogs()
        self._logs.install()
        try:
            self.app = find_function_app(load_app_module(self.app_root, module_name))
            self._functions = index_functions(self.app, self.settings)
            self.queue_options = QueueOptions.from_host_json(self.app_root)
        except BaseException:
            self._restore_environment()
            self._logs.remove()
            raise
        self._by_name = {f.name: f for f in self._functions}

        self._pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="functions-host")
        self._http_pool = ThreadPoolExecutor(max_workers=max_http_workers, thread_name_prefix="functions-host-http")
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._http_server: ThreadingHTTPServer | None = None
        self._closed = False
        self._connections = Connections(self.settings)
        call = HandlerCaller(
            self.app_root, self.settings, self._connections, self.queue_options, self._logs
        ).call
        runner = InvocationRunner(call=call, pool=self._pool, finish=self._finish, stop=self._stop)
        self._blobs = BlobTriggers(
            self._functions, runner, host_id=self.host_id, connections=self._connections,
            max_attempts=max_attempts, retry_delay=retry_delay,
        )  # fmt: skip
        self._queues = QueueTriggers(
            self._functions, runner, options=self.queue_options, connections=self._connections
        )
        self._timers = TimerTriggers(self._functions, runner)
        # HTTP requests run on their own pool: a route answers while long triggers occupy the trigger pool.
        self._http = HttpTriggers(self._functions, replace(runner, pool=self._http_pool))

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
        """Start the blob and queue watchers, the timers and (if ``http_port`` is set) the HTTP server."""
        if self._closed:
            raise RuntimeError("this host was stopped; create a new LocalFunctionsHost to start again")
        if self._threads:
            return
        if self.http_port is not None:
            self._http_server = start_http_server(self, self.http_port)
        if self._blobs.functions:
            self._threads.append(
                threading.Thread(
                    target=self._blobs.watch, args=(self.poll_interval,), name="host-blob-watcher", daemon=True
                )
            )
        if self._queues.functions:
            self._threads.append(
                threading.Thread(
                    target=self._queues.watch, args=(self.poll_interval,), name="host-queue-watcher", daemon=True
                )
            )
        if self._timers.schedules:
            self._threads.append(threading.Thread(target=self._timers.run, name="host-timers", daemon=True))
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
        self._connections.close()
        self._restore_environment()
        self._logs.remove()
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
        futures = self._blobs.dispatch() + self._queues.dispatch()
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
            return self._timers.tick(info)
        if info.trigger_type == HTTP_TRIGGER:
            return self._http.tick(info)
        if not blob_path:
            raise ValueError(
                f"{function_name} is a blob trigger: give the blob path (<container>/<blob>) to run"
            )
        return self._blobs.tick(info, blob_path)

    def handle_http(self, method: str, path: str, *, url: str, headers: Mapping[str, str],
                    params: Mapping[str, str], body: bytes) -> Invocation | None:  # fmt: skip
        """Route one request (``path`` below the route prefix) to its function; None when no route matches."""
        return self._http.handle(method, path, url=url, headers=headers, params=params, body=body)

    def allowed_methods(self, path: str) -> set[str]:
        """The methods the functions whose route matches ``path`` accept (for a 405 answer)."""
        return self._http.allowed_methods(path)

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

    def _restore_environment(self) -> None:
        for key, previous in self._saved_environment.items():
            if previous is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = previous
        self._saved_environment = {}

    def _finish(self, invocation: Invocation, start: float) -> None:
        finish(self.history, invocation, start)
