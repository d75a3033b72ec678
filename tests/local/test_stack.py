"""LocalStack (Azurite + emulator + functions host) and the local.settings.json it writes, for real."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import openai
import pytest
from azure.storage.blob import BlobServiceClient

from local.emulator.server import EmulatorConfig
from local.stack import LOCAL_ADVANCE_SCHEDULE, LocalStack, LocalStackError, write_local_settings
from shared.layout import ALL_CONTAINERS
from tests.cli.test_local import run_cli

REPO_ROOT = Path(__file__).resolve().parents[2]
SAMPLE_APP = REPO_ROOT / "tests" / "local" / "host" / "sample_app"
FAST = EmulatorConfig(step_seconds=0.2, file_processing_seconds=0.1, deployment_seconds=0.1)


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


def test_emulator_port_taken_stops_azurite_and_names_the_port(tmp_path: Path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        stack = LocalStack(tmp_path, app_root=REPO_ROOT, emulator_port=port, start_host=False)
        with pytest.raises(LocalStackError, match=f"emulator could not start on port {port}"):
            stack.start()
    assert stack.azurite is None  # stopped again


def test_write_local_settings_records_the_host_port_and_keeps_values(tmp_path):
    path = tmp_path / "local.settings.json"
    path.write_text(json.dumps({"IsEncrypted": False, "Values": {"MINE": "1"}, "Host": {"CORS": "*"}}))
    write_local_settings(path, {"AzureWebJobsStorage": "x"}, host_port=51234)
    document = json.loads(path.read_text())
    assert document["Host"] == {"CORS": "*", "LocalHttpPort": 51234}
    assert document["Values"] == {"MINE": "1", "AzureWebJobsStorage": "x"}
