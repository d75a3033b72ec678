"""``LocalStack``: Azurite + the Azure OpenAI emulator + the local functions host, as one context manager.

Used by ``visiontune local up`` (foreground), ``make demo`` and end-to-end tests:

    with LocalStack(Path(".local-stack"), app_root=REPO_ROOT, start_host=False) as stack:
        stack.settings["AzureWebJobsStorage"]   # Azurite's connection string
        stack.host.run_until_idle()             # drive the functions in-process

State lives under ``data_dir`` (``azurite/`` and ``emulator/``), so a restart on the same folder keeps
blobs, files, jobs and deployments. Azurite gets new free ports on each start (the settings say which).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

from local.azurite import AzuriteProcess
from local.emulator.server import EmulatorServer, local_settings_values
from local.host.host import LocalFunctionsHost
from shared.layout import ALL_CONTAINERS

log = logging.getLogger("visiontune.local.stack")

# Locally runs should move along quickly: advance every 10 s (Azure's default is every 5 minutes).
LOCAL_ADVANCE_SCHEDULE = "*/10 * * * * *"
LOCAL_EVALUATION_SCHEDULE = "0 0 3 * * *"


class LocalStackError(RuntimeError):
    """A part of the local stack could not start (the message says which and why)."""


def write_local_settings(path: Path, values: dict[str, str], *, host_port: int | None = None) -> dict[str, str]:
    """Write ``values`` into a Core Tools ``local.settings.json`` (``{"IsEncrypted": false, "Values": ...}``).

    Values already in the file that ``values`` does not name (a user's own settings) are kept; the ones
    it names are replaced. ``host_port``: the port the local host serves HTTP on, written as Core Tools'
    ``Host.LocalHttpPort`` so ``visiontune local tick`` finds it. Returns the ``Values`` written.
    """
    document: dict[str, Any] = {}
    if path.exists():
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
        except ValueError:
            log.warning("%s is not valid JSON; writing a fresh one", path)
            document = {}
    if not isinstance(document, dict) or document.get("IsEncrypted"):
        document = {}
    values_found = document.get("Values")
    existing: dict[str, Any] = values_found if isinstance(values_found, dict) else {}
    merged = {**existing, **values}
    document.update({"IsEncrypted": False, "Values": merged})
    if host_port is not None:
        host_found = document.get("Host")
        host: dict[str, Any] = host_found if isinstance(host_found, dict) else {}
        document["Host"] = {**host, "LocalHttpPort": int(host_port)}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    return merged


class LocalStack:
    """Start Azurite, the emulator and the functions host; ``settings`` is what the app reads.

    ``start_host=False`` builds the host (indexed, ready for ``run_once``/``tick``) without starting its
    background watcher, timers and HTTP server. ``local_settings_path`` (optional) receives the settings
    in Core Tools format; the host reads that file only when it is given (tests stay hermetic).
    ``extra_settings`` are added to (and override) the generated settings.
    """

    def __init__(
        self,
        data_dir: Path,
        *,
        app_root: Path,
        emulator_config: Any = None,
        host_poll_interval: float = 1.0,
        start_host: bool = True,
        emulator_port: int = 0,
        host_port: int | None = None,
        host_max_workers: int = 4,
        local_settings_path: Path | None = None,
        extra_settings: dict[str, str] | None = None,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.app_root = Path(app_root)
        self.emulator_config = emulator_config
        self.host_poll_interval = host_poll_interval
        self.start_host = start_host
        self.emulator_port = emulator_port
        self.host_port = host_port
        self.host_max_workers = host_max_workers
        self.local_settings_path = local_settings_path
        self.extra_settings = dict(extra_settings or {})
        self.settings: dict[str, str] = {}
        self.azurite: AzuriteProcess | None = None
        self.emulator: Any = None  # local.emulator.server.EmulatorServer
        self.host: LocalFunctionsHost | None = None

    def start(self) -> LocalStack:
        """Start all three (Azurite, emulator, host); on any failure stop what started and raise."""
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        from azure.core.exceptions import ResourceExistsError
        from azure.storage.blob import BlobServiceClient

        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.azurite = AzuriteProcess(self.data_dir / "azurite").start()
        with BlobServiceClient.from_connection_string(self.azurite.connection_string) as blobs:
            for container in ALL_CONTAINERS:
                try:
                    blobs.create_container(container)
                except ResourceExistsError:
                    pass

        self.emulator = EmulatorServer(
            self.data_dir / "emulator", port=self.emulator_port, config=self.emulator_config
        )
        try:
            self.emulator.start()
        except (OSError, RuntimeError) as error:
            raise LocalStackError(
                f"the Azure OpenAI emulator could not start on port {self.emulator_port}: {error}"
            ) from error

        self.settings = {
            "AzureWebJobsStorage": self.azurite.connection_string,
            "FUNCTIONS_WORKER_RUNTIME": "python",
            **local_settings_values(self.emulator.url),
            "VISIONTUNE_ADVANCE_SCHEDULE": LOCAL_ADVANCE_SCHEDULE,
            "VISIONTUNE_EVALUATION_SCHEDULE": LOCAL_EVALUATION_SCHEDULE,
            **self.extra_settings,
        }
        if self.local_settings_path is not None:
            write_local_settings(self.local_settings_path, self.settings)

        self.host = LocalFunctionsHost(
            self.app_root,
            settings=self.settings,
            poll_interval=self.host_poll_interval,
            max_workers=self.host_max_workers,
            http_port=self.host_port,
            use_local_settings_file=self.local_settings_path is not None,
        )
        if self.start_host:
            try:
                self.host.start()
            except OSError as error:
                raise LocalStackError(
                    f"the functions host could not listen on port {self.host_port}: {error}"
                ) from error
            if self.local_settings_path is not None and self.host.http_url:
                port = urlsplit(self.host.http_url).port
                write_local_settings(self.local_settings_path, self.settings, host_port=port)

    def stop(self) -> None:
        """Stop the host, the emulator and Azurite (in that order); safe to call twice."""
        errors: list[str] = []
        for name in ("host", "emulator", "azurite"):
            part = getattr(self, name)
            if part is None:
                continue
            try:
                part.stop()
            except Exception as error:  # stop the others anyway
                errors.append(f"{name}: {error}")
            setattr(self, name, None)
        if errors:
            log.warning("while stopping the local stack: %s", "; ".join(errors))

    def __enter__(self) -> LocalStack:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def endpoints(self) -> dict[str, str]:
        """What is listening where (for printing)."""
        found: dict[str, str] = {}
        if self.azurite is not None:
            found.update(
                blob=self.azurite.blob_endpoint,
                queue=self.azurite.queue_endpoint,
                table=self.azurite.table_endpoint,
            )
        if self.emulator is not None:
            found["azure_openai"] = self.emulator.url
        if self.host is not None and self.host.http_url:
            found["functions"] = f"{self.host.http_url}/api/"
        return found
