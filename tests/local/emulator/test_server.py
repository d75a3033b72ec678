"""EmulatorServer lifecycle, the foreground entry point, and the settings that point the app at it."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from local.emulator import EmulatorServer, local_settings_values
from local.emulator.constants import API_KEY, BASE_DEPLOYMENT, BATCH_DEPLOYMENT
from shared.settings import Settings

pytestmark = pytest.mark.emulator
REPO = Path(__file__).resolve().parents[3]


def test_local_settings_values_build_the_settings_object(emulator):
    values = local_settings_values(emulator.url)
    settings = Settings(**values)
    assert settings.openai_endpoint == emulator.url == settings.management_endpoint
    assert settings.openai_api_key == API_KEY and settings.uses_api_key
    assert settings.base_deployment == BASE_DEPLOYMENT and settings.batch_deployment == BATCH_DEPLOYMENT
    assert set(values) <= set(Settings.environment_names())
    settings.require("subscription_id", "resource_group", "openai_account")


def test_a_taken_port_fails_with_a_clear_message(emulator, tmp_path):
    with pytest.raises(OSError, match=f"cannot listen on 127.0.0.1:{emulator.port}"):
        EmulatorServer(tmp_path, port=emulator.port).start()


def test_python_m_local_emulator_serves_in_the_foreground(tmp_path):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen(
        [sys.executable, "-m", "local.emulator", "--port", str(port), "--data", str(tmp_path / "data")],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/_emulator/health").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert process.poll() is None and time.monotonic() < deadline, process.stdout.read().decode()
            time.sleep(0.1)
        listed = httpx.get(
            f"http://127.0.0.1:{port}/openai/files", params={"api-version": "2024-10-21"}, headers={"api-key": API_KEY}
        )
        assert listed.json() == {"object": "list", "data": [], "has_more": False}
    finally:
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=20) in (0, 130, -signal.SIGINT)
    assert (tmp_path / "data" / "emulator.sqlite3").exists()
