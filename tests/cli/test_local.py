"""``visiontune local up | tick`` for real. Tick finds the port ``visiontune local up`` used (issue 13, item 5):
local up writes Core Tools' ``Host.LocalHttpPort`` into local.settings.json, and tick reads it when no
--host-url is given."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from cli import local as local_cli
from cli.main import main
from local.stack import write_local_settings

REPO_ROOT = Path(__file__).resolve().parents[2]
SAMPLE_APP = REPO_ROOT / "tests" / "local" / "host" / "sample_app"


def run_cli(*argv: str) -> int:
    parser = argparse.ArgumentParser()
    local_cli.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(list(argv))
    return args.handler(args)


def test_tick_posts_to_the_port_local_up_wrote(tmp_path, capsys):
    seen: list[str] = []

    class Host(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's naming
            seen.append(self.path)
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            body = json.dumps({"function": "advance_runs", "outcome": "succeeded"}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Host)  # not 7071: any free port, as `local up --host-port 0`
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        settings = tmp_path / "local.settings.json"
        write_local_settings(settings, {"AzureWebJobsStorage": "x"}, host_port=server.server_address[1])
        assert main(["local", "tick", "advance_runs", "--settings", str(settings)]) == 0
    finally:
        server.shutdown()
        server.server_close()
    assert seen == ["/admin/functions/advance_runs"]
    assert '"outcome": "succeeded"' in capsys.readouterr().out


def test_tick_without_a_running_host_says_what_to_do(capsys):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        free_port = probe.getsockname()[1]
    assert run_cli("local", "tick", "advance_runs", "--host-url", f"http://127.0.0.1:{free_port}") == 2
    assert "start `visiontune local up`" in capsys.readouterr().err


def _read_until(process: subprocess.Popen, lines: list[str], marker: str, *, timeout: float) -> None:
    """Collect ``process``'s output lines into ``lines`` until one contains ``marker``; fail (with what it
    printed) when the process ends or ``timeout`` passes first, instead of blocking on a silent pipe."""
    import queue
    import threading

    received: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        for line in process.stdout:
            received.put(line)
        received.put(None)

    threading.Thread(target=pump, daemon=True).start()
    deadline = time.monotonic() + timeout
    while True:
        try:
            line = received.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            pytest.fail(f"no line with {marker!r} within {timeout} s; output so far:\n{''.join(lines)}")
        if line is None:
            pytest.fail(f"the process ended before printing {marker!r}; output:\n{''.join(lines)}")
        lines.append(line)
        if marker in line:
            return


def test_local_up_runs_in_the_foreground_and_ctrl_c_stops_everything(tmp_path: Path):
    app_root = tmp_path / "app"
    shutil.copytree(SAMPLE_APP, app_root)
    write_local_settings(app_root / "local.settings.json", {
        "SAMPLE_CONTAINER": "datasets", "SAMPLE_CALLS_FILE": str(tmp_path / "calls.jsonl"), "SAMPLE_SCHEDULE": "0 0 3 * * *",
    })  # fmt: skip
    program = (
        "import argparse, sys; from cli import local; p = argparse.ArgumentParser(); "
        "local.register(p.add_subparsers(required=True)); a = p.parse_args(sys.argv[1:]); sys.exit(a.handler(a))"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", program, "local", "up", "--data", str(tmp_path / "state"), "--app-root", str(app_root),
         "--host-port", "0", "--step-seconds", "0.2"],
        cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    lines: list[str] = []
    try:
        _read_until(process, lines, "moves runs now", timeout=90)
        output = "".join(lines)
        assert "local stack is up" in output, output
        tick_hint = next(line for line in lines if "moves runs now" in line)
        assert "--host-url http://127.0.0.1:" in tick_hint and ":0`" not in tick_hint, tick_hint
        host_url = next(line.split()[2] for line in lines if line.strip().startswith("functions host")).removesuffix(
            "/api/"
        )
        assert run_cli("local", "tick", "on_tick", "--host-url", host_url) == 0
        values = json.loads((app_root / "local.settings.json").read_text())["Values"]
        assert values["SAMPLE_CONTAINER"] == "datasets" and values["AzureWebJobsStorage"].startswith(
            "DefaultEndpoints"
        )
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
    blob_port = values["AzureWebJobsStorage"].split("BlobEndpoint=http://127.0.0.1:")[1].split("/")[0]
    with socket.socket() as probe, pytest.raises(ConnectionRefusedError):  # Azurite is gone
        probe.connect(("127.0.0.1", int(blob_port)))
