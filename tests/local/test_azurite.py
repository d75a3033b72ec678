"""The Azurite launcher: real Azurite processes on loopback."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from azure.storage.blob import BlobServiceClient
from azure.storage.queue import QueueClient

from local.azurite import AzuriteError, AzuriteProcess, find_azurite_executable

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_session_fixture_serves_blobs_and_queues(azurite, fresh_container, blob_service):
    blob_service.get_blob_client(fresh_container, "a/b.txt").upload_blob(b"hello")
    assert blob_service.get_blob_client(fresh_container, "a/b.txt").download_blob().readall() == b"hello"
    assert azurite.blob_endpoint.startswith("http://127.0.0.1:")
    assert f":{azurite.blob_port}/" in azurite.connection_string
    queue = QueueClient.from_connection_string(azurite.connection_string, f"q{fresh_container}")
    queue.create_queue()
    queue.send_message("ping")
    assert [m.content for m in queue.receive_messages()] == ["ping"]
    queue.delete_queue()


def test_fresh_container_is_unique_and_empty(fresh_container, blob_service):
    assert list(blob_service.get_container_client(fresh_container).list_blobs()) == []


def test_restart_on_same_folder_keeps_blobs_and_stop_ends_the_process(tmp_path: Path):
    with AzuriteProcess(tmp_path / "data") as first:
        client = BlobServiceClient.from_connection_string(first.connection_string)
        client.create_container("keep").upload_blob("x.bin", b"\x00\x01")
        pid = first._process.pid  # noqa: SLF001 - checking that stop() really ends the process
    assert not first.running
    with pytest.raises(ProcessLookupError):
        os.killpg(pid, 0)
    with AzuriteProcess(tmp_path / "data") as second:
        client = BlobServiceClient.from_connection_string(second.connection_string)
        assert client.get_blob_client("keep", "x.bin").download_blob().readall() == b"\x00\x01"


def test_in_memory_azurite_serves_blobs_and_writes_no_files():
    """``in_memory`` (``make bench-intake``'s Azurite): Azurite refuses ``--location`` with
    ``--inMemoryPersistence``, so none is passed; nothing lands in the working folder."""
    with AzuriteProcess(in_memory=True) as process:
        client = BlobServiceClient.from_connection_string(process.connection_string)
        client.create_container("memory").upload_blob("x.bin", b"\x00\x01")
        assert client.get_blob_client("memory", "x.bin").download_blob().readall() == b"\x00\x01"
        assert process.location is not None and list(process.location.iterdir()) == []


def test_temporary_folder_is_removed_on_stop():
    process = AzuriteProcess().start()
    location = process.location
    assert location is not None and location.is_dir()
    process.stop()
    assert not location.exists()


def test_port_taken_gives_a_clear_message():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(AzuriteError, match=f"blob port {port} .* already in use"):
            AzuriteProcess(blob_port=port).start()


def test_missing_azurite_package_names_the_fix(tmp_path: Path):
    with pytest.raises(AzuriteError, match="npm ci"):
        find_azurite_executable(tmp_path)


def test_endpoints_before_start_raise():
    with pytest.raises(AzuriteError, match="not running"):
        _ = AzuriteProcess().connection_string


def test_missing_node_names_the_fix(monkeypatch, tmp_path: Path):
    monkeypatch.setenv("PATH", str(tmp_path))  # no `node` anywhere
    with pytest.raises(AzuriteError, match="Node.js is not installed"):
        AzuriteProcess().start()


@pytest.mark.skipif(sys.platform != "linux", reason="parent-death signal is Linux-only")
def test_azurite_does_not_outlive_a_killed_parent():
    script = (
        "import os; from local.azurite import AzuriteProcess; "
        "print(AzuriteProcess().start()._process.pid, flush=True); os._exit(0)"
    )
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    pid = int(result.stdout.strip())
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and _alive(pid):
        time.sleep(0.1)
    assert not _alive(pid)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_cpu_seconds_counts_the_work_azurite_does(azurite):
    container = BlobServiceClient.from_connection_string(azurite.connection_string).get_container_client("cpu-seconds")
    container.create_container()
    before = azurite.cpu_seconds()
    for n in range(100):
        container.upload_blob(f"b{n}", b"x" * 100_000)
    assert azurite.cpu_seconds() > before > 0
    assert AzuriteProcess().cpu_seconds() == 0.0  # not started
