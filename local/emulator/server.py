"""Run the emulator: ``EmulatorServer`` (uvicorn in a background thread, or in the foreground).

    server = EmulatorServer(Path("/tmp/emu"), config=EmulatorConfig(step_seconds=0.2)).start()
    client = openai_client(server.url)      # local.emulator.clients
    ...
    server.stop()

``server.url`` is both the Azure OpenAI endpoint and the ARM endpoint. ``local_settings_values(url)``
gives the app settings that point visiontune at it.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

from local.emulator.config import EmulatorConfig
from local.emulator.constants import (
    ACCOUNT,
    API_KEY,
    BASE_DEPLOYMENT,
    BASE_MODEL,
    BATCH_DEPLOYMENT,
    DATA_PLANE_API_VERSION,
    RESOURCE_GROUP,
    SUBSCRIPTION_ID,
)
from local.emulator.service import Emulator

if TYPE_CHECKING:
    import uvicorn

__all__ = ["EmulatorConfig", "EmulatorServer", "local_settings_values"]

log = logging.getLogger("visiontune.emulator")


def local_settings_values(url: str) -> dict[str, str]:
    """The app settings (environment names) that point visiontune at an emulator serving at ``url``."""
    return {
        "AZURE_OPENAI_ENDPOINT": url,
        "AZURE_OPENAI_API_KEY": API_KEY,
        "OPENAI_API_VERSION": DATA_PLANE_API_VERSION,
        "AZURE_OPENAI_BASE_DEPLOYMENT": BASE_DEPLOYMENT,
        "AZURE_OPENAI_BATCH_DEPLOYMENT": BATCH_DEPLOYMENT,
        "VISIONTUNE_BASE_MODEL": BASE_MODEL,
        "AZURE_MANAGEMENT_ENDPOINT": url,
        "AZURE_SUBSCRIPTION_ID": SUBSCRIPTION_ID,
        "AZURE_RESOURCE_GROUP": RESOURCE_GROUP,
        "AZURE_OPENAI_ACCOUNT": ACCOUNT,
    }


class EmulatorServer:
    """An emulated Azure OpenAI resource with its state in ``data_dir``, served over HTTP on loopback."""

    def __init__(
        self,
        data_dir: Path,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        config: EmulatorConfig | None = None,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.host = host
        self.requested_port = port
        self.config = config or EmulatorConfig()
        self.emulator: Emulator | None = None
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._ticker: threading.Thread | None = None
        self._stopping = threading.Event()
        self._socket: socket.socket | None = None
        self._port: int | None = None

    def _build(self) -> tuple[uvicorn.Server, socket.socket]:
        """The server for the app and the socket it is to listen on (bound here: the port is known now)."""
        import uvicorn

        from local.emulator.app import create_app

        try:
            self._socket = listening = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            listening.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            # Accepted connections inherit this; without it Nagle + delayed ACK add ~40 ms per request.
            listening.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            listening.bind((self.host, self.requested_port))
            self._port = listening.getsockname()[1]
        except OSError as exc:
            raise OSError(f"the emulator cannot listen on {self.host}:{self.requested_port}: {exc.strerror}") from exc
        self.emulator = emulator = Emulator(self.data_dir, self.config)
        app = create_app(emulator)
        config = uvicorn.Config(app, log_level=self.config.log_level, access_log=False, lifespan="off")
        self._server = server = uvicorn.Server(config)
        self._ticker = threading.Thread(target=self._tick_forever, name="emulator-ticker", daemon=True)
        self._ticker.start()
        return server, listening

    def _tick_forever(self) -> None:
        interval = max(0.05, min(1.0, self.config.step_seconds / 4))
        while not self._stopping.wait(interval):
            emulator = self.emulator
            if emulator is None:  # shut down while this tick waited
                return
            try:
                emulator.tick()
            except Exception:  # noqa: BLE001 - keep ticking; the next tick retries
                log.exception("emulator tick failed")

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("the emulator has not been started")
        return self._port

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``: the Azure OpenAI endpoint and the ARM endpoint."""
        return f"http://{self.host}:{self.port}"

    def start(self, timeout: float = 30.0) -> EmulatorServer:
        """Serve in a background thread; returns once the server answers."""
        server, listening = self._build()
        self._thread = threading.Thread(
            target=server.run, kwargs={"sockets": [listening]}, name="emulator-http", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the emulator did not start on {self.host}:{self.requested_port}")
            time.sleep(0.02)
        return self

    def serve_forever(self) -> None:
        """Serve in the foreground until interrupted (Ctrl-C / SIGTERM)."""
        server, listening = self._build()
        log.warning("Azure OpenAI emulator on %s (data in %s)", self.url, self.data_dir)
        try:
            server.run(sockets=[listening])
        finally:
            self._shutdown()

    def stop(self) -> None:
        """Stop serving and release the data directory (state stays on disk)."""
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        self._shutdown()

    def _shutdown(self) -> None:
        self._stopping.set()
        if self._ticker is not None:
            self._ticker.join(timeout=5)
            self._ticker = None
        if self.emulator is not None:
            self.emulator.close()
            self.emulator = None
        if self._socket is not None:
            try:
                self._socket.close()
            except OSError:
                pass

    def __enter__(self) -> EmulatorServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
