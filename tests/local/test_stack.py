"""LocalStack (Azurite + emulator + functions host) and the `visiontune local` commands, for real."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import openai
import pytest
from azure.storage.blob import BlobServiceClient

from cli import local as local_cli
from local.emulator.server import EmulatorConfig
from local.stack import LOCAL_ADVANCE_SCHEDULE, LocalStack, LocalStackError, write_local_settings
from shared.layout import ALL_CONTAINERS

REPO_ROOT = Path(__file__).resolve().parents[2]
SAMPLE_APP = REPO_ROOT / "tests" / "local" / "host" / "sample_app"
FAST = EmulatorConfig(step_seconds=0.2, file_processing_seconds=0.1, deployment_seconds=0.1)


def run_cli(*argv: str) -> int:
    parser = argparse.ArgumentParser()
    local_cli.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(list(argv))
    return args.handler(args)


def test_stack_with_the_real_app_writes_settings_and_serves_storage_and_openai(tmp_path: Path):
    settings_file = tmp_path / "app" / "local.settings.json"
    write_local_settings(settings_file, {"MY_OWN_SETTING": "kept", "AzureWebJobsStorage": "stale"})
    with LocalStack(tmp_path / "state", app_root=REPO_ROOT, emulator_config=FAST, start_host=False,
                    local_settings_path=settings_file) as stack:  # fmt: skip
        settings = stack.settings
        for name in ("AzureWebJobsStorage", "AZURE_OPENAI_ENDPOINT", "AZURE_OPENAI_API_KEY", "OPENAI_API_VERSION",
                     "AZURE_OPENAI_BASE_DEPLOYMENT", "AZURE_OPENAI_BATCH_DEPLOYMENT", "AZURE_MANAGEMENT_ENDPOINT",
                     "AZURE_SUBSCRIPTION_ID", "AZURE_RESOURCE_GROUP", "AZURE_OPENAI_ACCOUNT"):  # fmt: skip
            assert settings[name], name
        assert settings["FUNCTIONS_WORKER_RUNTIME"] == "python"
        assert settings["VISIONTUNE_ADVANCE_SCHEDULE"] == LOCAL_ADVANCE_SCHEDULE

        written = json.loads(settings_file.read_text())
        assert written["IsEncrypted"] is False
        assert written["Values"]["AzureWebJobsStorage"] == stack.azurite.connection_string
        assert written["Values"]["MY_OWN_SETTING"] == "kept"

        blobs = BlobServiceClient.from_connection_string(settings["AzureWebJobsStorage"])
        assert set(ALL_CONTAINERS) <= {c.name for c in blobs.list_containers()}
        client = openai.AzureOpenAI(azure_endpoint=settings["AZURE_OPENAI_ENDPOINT"],
                                    api_key=settings["AZURE_OPENAI_API_KEY"],
                                    api_version=settings["OPENAI_API_VERSION"])  # fmt: skip
        assert list(client.files.list()) == []
        assert {f.name for f in stack.host.functions()} >= {"dataset_ready", "advance_runs", "status"}
        azurite_process = stack.azurite._process  # noqa: SLF001 - checking that stop() ends it
    assert azurite_process.poll() is not None
    assert stack.host is None and stack.emulator is None


def test_stack_runs_an_app_in_the_background_and_tick_reaches_it_over_http(tmp_path: Path):
    extra = {"SAMPLE_CONTAINER": "datasets", "SAMPLE_CALLS_FILE": str(tmp_path / "calls.jsonl"),
             "SAMPLE_SCHEDULE": "0 0 3 * * *"}  # fmt: skip
    with LocalStack(tmp_path / "state", app_root=SAMPLE_APP, emulator_config=FAST, host_poll_interval=0.2,
                    host_port=0, extra_settings=extra) as stack:  # fmt: skip
        blobs = BlobServiceClient.from_connection_string(stack.settings["AzureWebJobsStorage"])
        blobs.get_blob_client("datasets", "in/hello.txt").upload_blob(b"hi")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not (tmp_path / "calls.jsonl").exists():
            time.sleep(0.1)
        assert json.loads((tmp_path / "calls.jsonl").read_text().splitlines()[0])["body"] == "hi"
        assert stack.endpoints()["functions"] == f"{stack.host.http_url}/api/"
        assert run_cli("local", "tick", "on_tick", "--host-url", stack.host.http_url) == 0
        assert run_cli("local", "tick", "nope", "--host-url", stack.host.http_url) == 2
    calls = [json.loads(line)["function"] for line in (tmp_path / "calls.jsonl").read_text().splitlines()]
    assert calls == ["on_text", "on_tick"]


def test_tick_without_a_running_host_says_what_to_do(capsys):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        free_port = probe.getsockname()[1]
    assert run_cli("local", "tick", "advance_runs", "--host-url", f"http://127.0.0.1:{free_port}") == 2
    assert "start `visiontune local up`" in capsys.readouterr().err


def test_emulator_port_taken_stops_azurite_and_names_the_port(tmp_path: Path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        stack = LocalStack(tmp_path, app_root=REPO_ROOT, emulator_port=port, start_host=False)
        with pytest.raises(LocalStackError, match=f"emulator could not start on port {port}"):
            stack.start()
    assert stack.azurite is None  # stopped again


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
