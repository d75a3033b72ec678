"""Start and stop Azurite (the Azure Storage emulator, pinned in ``package.json``) as a child process.

``AzuriteProcess`` is a context manager: it starts Azurite on free loopback ports (port 0: Azurite
binds a free port itself and prints it, so there is no race between picking and binding), keeps its
data in a folder (a temporary one unless given, so a restart with the same folder keeps every blob),
waits until the blob service answers, and stops the whole process group on exit.

Azurite's well-known development account and key are used; they are public and only work locally.
"""

from __future__ import annotations

import collections
import ctypes
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType

REPO_ROOT = Path(__file__).resolve().parent.parent

DEV_ACCOUNT_NAME = "devstoreaccount1"
DEV_ACCOUNT_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
HOST = "127.0.0.1"

_LISTENING_RE = re.compile(
    r"Azurite (Blob|Queue|Table) service is successfully listening at https?://[^:]+:(\d+)"
)


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Linux: have the kernel send SIGTERM to Azurite when the thread that started it ends, so a killed
    test run or CLI does not leave an orphaned Azurite behind (it runs in its own session)."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


class AzuriteError(RuntimeError):
    """Azurite could not be started (missing Node/Azurite, port taken, no answer in time)."""


def find_azurite_executable(repo_root: Path = REPO_ROOT) -> Path:
    """The ``azurite`` launcher installed by ``npm ci`` (``node_modules/.bin/azurite``).

    Raises ``AzuriteError`` saying what to install when Node.js or the package is missing.
    """
    if shutil.which("node") is None:
        raise AzuriteError(
            "Node.js is not installed (no 'node' on PATH): Azurite needs Node.js 18+. "
            "Install Node.js, then run `make setup` (npm ci)."
        )
    executable = repo_root / "node_modules" / ".bin" / "azurite"
    if not executable.exists():
        raise AzuriteError(
            f"Azurite is not installed ({executable} is missing): run `make setup` or `npm ci` in {repo_root}."
        )
    return executable


def port_is_free(port: int, host: str = HOST) -> bool:
    """True when ``host:port`` can be bound right now (always True for port 0)."""
    if port == 0:
        return True
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def connection_string(blob_port: int, queue_port: int, table_port: int, host: str = HOST) -> str:
    """The storage connection string for an Azurite listening on these ports."""
    return (
        f"DefaultEndpointsProtocol=http;AccountName={DEV_ACCOUNT_NAME};AccountKey={DEV_ACCOUNT_KEY};"
        f"BlobEndpoint=http://{host}:{blob_port}/{DEV_ACCOUNT_NAME};"
        f"QueueEndpoint=http://{host}:{queue_port}/{DEV_ACCOUNT_NAME};"
        f"TableEndpoint=http://{host}:{table_port}/{DEV_ACCOUNT_NAME};"
    )


class AzuriteProcess:
    """A running Azurite (blob, queue and table services) on loopback.

    Ports default to 0 (free ports chosen by Azurite). ``location`` keeps the data (a temporary folder,
    deleted on stop, when not given). ``in_memory`` keeps nothing on disk at all.
    """

    def __init__(
        self,
        location: Path | None = None,
        *,
        blob_port: int = 0,
        queue_port: int = 0,
        table_port: int = 0,
        in_memory: bool = False,
        startup_timeout: float = 30.0,
        repo_root: Path = REPO_ROOT,
    ) -> None:
        self._requested_location = Path(location) if location is not None else None
        self._requested_ports = {"Blob": blob_port, "Queue": queue_port, "Table": table_port}
        self._in_memory = in_memory
        self._startup_timeout = startup_timeout
        self._repo_root = repo_root
        self._process: subprocess.Popen[str] | None = None
        self._temporary_location: str | None = None
        self._output: collections.deque[str] = collections.deque(maxlen=200)
        self._ports: dict[str, int] = {}
        self._ports_ready = threading.Event()
        self.location: Path | None = None

    # --- lifecycle ------------------------------------------------------------------------------
    def start(self) -> AzuriteProcess:
        """Start Azurite and wait until its blob service answers. Returns ``self``."""
        if self._process is not None:
            return self
        executable = find_azurite_executable(self._repo_root)
        for service, port in self._requested_ports.items():
            if not port_is_free(port):
                raise AzuriteError(
                    f"cannot start Azurite: {service.lower()} port {port} on {HOST} is already in use "
                    "(another Azurite?). Stop it or choose another port."
                )
        if self._requested_location is None:
            self._temporary_location = tempfile.mkdtemp(prefix="visiontune-azurite-")
            self.location = Path(self._temporary_location)
        else:
            self.location = self._requested_location
            self.location.mkdir(parents=True, exist_ok=True)
        command = [
            str(executable),
            "--silent",
            "--disableTelemetry",
            "--skipApiVersionCheck",  # the pinned SDKs may speak a newer API version than Azurite knows
            "--loose",
            "--blobHost", HOST, "--blobPort", str(self._requested_ports["Blob"]),
            "--queueHost", HOST, "--queuePort", str(self._requested_ports["Queue"]),
            "--tableHost", HOST, "--tablePort", str(self._requested_ports["Table"]),
        ]  # fmt: skip
        # Azurite refuses --location together with --inMemoryPersistence (its start-up error says so).
        command += ["--inMemoryPersistence"] if self._in_memory else ["--location", str(self.location)]
        self._process = subprocess.Popen(
            command,
            cwd=self.location,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            start_new_session=True,  # its own process group, so stop() ends node and its children
            # Only from the main thread: the signal follows the starting *thread*, and a worker thread may end
            # long before the Azurite it started should.
            preexec_fn=_die_with_parent
            if sys.platform == "linux" and threading.current_thread() is threading.main_thread()
            else None,
        )
        threading.Thread(target=self._drain_output, name="azurite-output", daemon=True).start()
        try:
            self._wait_until_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop Azurite (SIGTERM to its process group, SIGKILL after ``timeout``); idempotent."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            try:
                os.killpg(process.pid, signal.SIGTERM)
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=timeout)
            except ProcessLookupError:
                pass
        if self._temporary_location is not None:
            shutil.rmtree(self._temporary_location, ignore_errors=True)
            self._temporary_location = None

    def __enter__(self) -> AzuriteProcess:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        """True while the Azurite process is alive."""
        return self._process is not None and self._process.poll() is None

    def cpu_seconds(self) -> float:
        """CPU time (user + system) the Azurite process has used so far, 0.0 where ``/proc`` is missing
        (benchmarks: it shares the cores with the conversion)."""
        if self._process is None:
            return 0.0
        try:
            stat = Path(f"/proc/{self._process.pid}/stat").read_text()
        except OSError:
            return 0.0
        fields = stat.rsplit(")", 1)[1].split()  # after "pid (comm)": state is field 3, utime 14, stime 15
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    # --- endpoints ------------------------------------------------------------------------------
    def _port(self, service: str) -> int:
        if service not in self._ports:
            raise AzuriteError("Azurite is not running: call start() first")
        return self._ports[service]

    @property
    def blob_port(self) -> int:
        return self._port("Blob")

    @property
    def queue_port(self) -> int:
        return self._port("Queue")

    @property
    def table_port(self) -> int:
        return self._port("Table")

    @property
    def blob_endpoint(self) -> str:
        """``http://127.0.0.1:<port>/devstoreaccount1``."""
        return f"http://{HOST}:{self.blob_port}/{DEV_ACCOUNT_NAME}"

    @property
    def queue_endpoint(self) -> str:
        return f"http://{HOST}:{self.queue_port}/{DEV_ACCOUNT_NAME}"

    @property
    def table_endpoint(self) -> str:
        return f"http://{HOST}:{self.table_port}/{DEV_ACCOUNT_NAME}"

    @property
    def connection_string(self) -> str:
        """The connection string (``AzureWebJobsStorage``) for this Azurite."""
        return connection_string(self.blob_port, self.queue_port, self.table_port)

    def output(self) -> str:
        """The last lines Azurite printed (for error messages)."""
        return "\n".join(self._output)

    # --- internals ------------------------------------------------------------------------------
    def _drain_output(self) -> None:
        process = self._process
        if process is None or process.stdout is None:
            return
        for line in process.stdout:
            line = line.rstrip()
            self._output.append(line)
            found = _LISTENING_RE.search(line)
            if found:
                self._ports[found.group(1)] = int(found.group(2))
                if len(self._ports) == 3:
                    self._ports_ready.set()
        self._ports_ready.set()  # the process ended: wake the waiter so it can report why

    def _wait_until_ready(self) -> None:
        deadline = time.monotonic() + self._startup_timeout
        self._ports_ready.wait(self._startup_timeout)
        if len(self._ports) < 3:
            output = self.output()
            if "EADDRINUSE" in output or "address already in use" in output:
                raise AzuriteError(f"cannot start Azurite: a port is already in use.\n{output}")
            if self._process is not None and self._process.poll() is not None:
                raise AzuriteError(f"Azurite exited with code {self._process.returncode}:\n{output}")
            raise AzuriteError(f"Azurite did not start within {self._startup_timeout:.0f} s:\n{output}")
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(f"{self.blob_endpoint}?comp=list", timeout=2).close()
                return
            except urllib.error.HTTPError:
                return  # any HTTP answer (403 without a signature) means the service is up
            except OSError:
                time.sleep(0.05)
        raise AzuriteError(f"Azurite's blob service at {self.blob_endpoint} did not answer:\n{self.output()}")
