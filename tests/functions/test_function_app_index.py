"""Index ``function_app.py`` the way the Azure Functions Python worker does at host start.

``azure_functions_runtime.loader`` is the worker's own indexing code (installed by ``make setup``). Its
``index_function_app`` imports the app and collects the functions; ``process_indexed_function`` validates
every function against its bindings (the step that fails a deployment when a parameter and a binding
disagree) and builds the metadata the host receives. The host reads ``raw_bindings``: that is what these
tests assert, so the triggers are checked as Azure sees them.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.fixtures.function_app import APP_FUNCTION_NAMES

REPO = Path(__file__).resolve().parents[2]

loader = pytest.importorskip("azure_functions_runtime.loader", reason="make setup installs azure-functions-runtime")


# Runs in a fresh interpreter, as at host start: the worker imports the app once per process (and
# azure-functions refuses a second ``get_functions()`` on the same app object).
_INDEX_SCRIPT = r"""
import json, sys
from types import SimpleNamespace
from azure_functions_runtime import loader
from azure_functions_runtime.bindings.meta import load_binding_registry
from azure_functions_runtime.functions import Registry

class BindingInfo:
    # The protobuf enums' values (Direction in/out/inout; DataType undefined/string/binary/stream).
    locals()["in"] = 0
    out, inout = 1, 2
    undefined, string, binary, stream = 0, 1, 2, 3
    def __init__(self, type, data_type, direction):
        self.type, self.data_type, self.direction = type, data_type, direction

protos = SimpleNamespace(
    BindingInfo=BindingInfo,
    RpcFunctionMetadata=lambda **fields: SimpleNamespace(**fields),
    RpcRetryOptions=lambda **fields: SimpleNamespace(**fields),
)
app_dir = sys.argv[1]
sys.path.insert(0, app_dir)
load_binding_registry()  # the worker does this on init, before indexing
functions = loader.index_function_app(app_dir + "/function_app.py")
metadata, _logs = loader.process_indexed_function(protos, Registry(), functions, app_dir)
print(json.dumps([
    {"name": m.name, "script_file": m.script_file, "language": m.language,
     "raw_bindings": [json.loads(b) for b in m.raw_bindings]}
    for m in metadata
]))
"""


@pytest.fixture(scope="module")
def indexed() -> dict[str, SimpleNamespace]:
    import subprocess

    done = subprocess.run(
        [sys.executable, "-c", _INDEX_SCRIPT, str(REPO)], cwd=REPO, capture_output=True, text=True
    )
    assert done.returncode == 0, f"indexing failed as it would at host start:\n{done.stderr}"
    return {m["name"]: SimpleNamespace(**m) for m in json.loads(done.stdout.strip().splitlines()[-1])}


def _raw(meta: SimpleNamespace) -> list[dict]:
    return meta.raw_bindings


def _trigger(meta: SimpleNamespace) -> dict:
    triggers = [b for b in _raw(meta) if b["type"].endswith("Trigger")]
    assert len(triggers) == 1, f"{meta.name}: expected one trigger, got {triggers}"
    return triggers[0]


def test_every_function_is_indexed(indexed: dict[str, SimpleNamespace]) -> None:
    assert set(indexed) == APP_FUNCTION_NAMES
    for meta in indexed.values():
        assert meta.script_file.endswith("function_app.py") or meta.script_file.endswith(".py"), meta.name
        assert meta.language == "python"


@pytest.mark.parametrize(
    ("name", "path"),
    [
        ("dataset_ready", "datasets/{dataset}/_READY"),
        ("dataset_archive_ready", "datasets/{dataset}.zip"),
        ("training_ready", "training/{dataset}/{version}/manifest.json"),
    ],
)
def test_blob_triggers_use_event_grid_and_identity_connection(
    indexed: dict[str, SimpleNamespace], name: str, path: str
) -> None:
    trigger = _trigger(indexed[name])
    assert trigger["type"] == "blobTrigger"
    assert trigger["path"] == path
    # Flex Consumption supports only the Event Grid source for blob triggers.
    assert trigger["source"] == "EventGrid"
    # The identity-based connection: AzureWebJobsStorage__blobServiceUri/__queueServiceUri on Azure.
    assert trigger["connection"] == "AzureWebJobsStorage"


def test_the_archive_trigger_binds_a_blob_client_not_the_blob(indexed: dict[str, SimpleNamespace]) -> None:
    """The host hands the .zip trigger a BlobClient (deferred binding) instead of reading the archive into
    the worker; the small marker and manifest triggers keep the plain stream."""
    assert _trigger(indexed["dataset_archive_ready"]).get("properties") == {"SupportsDeferredBinding": True}
    for name in ("dataset_ready", "training_ready"):
        assert not _trigger(indexed[name]).get("properties", {}).get("SupportsDeferredBinding"), name


def test_blob_trigger_paths_come_from_the_shared_layout(indexed: dict[str, SimpleNamespace]) -> None:
    from shared import layout

    paths = {_trigger(indexed[n])["path"] for n in ("dataset_ready", "dataset_archive_ready", "training_ready")}
    assert paths == {layout.DATASET_READY_PATH, layout.DATASET_ARCHIVE_PATH, layout.TRAINING_MANIFEST_PATH}


@pytest.mark.parametrize(
    ("name", "setting"),
    [("advance_runs", "VISIONTUNE_ADVANCE_SCHEDULE"), ("scheduled_evaluation", "VISIONTUNE_EVALUATION_SCHEDULE")],
)
def test_timer_schedules_are_app_settings_the_settings_object_knows(
    indexed: dict[str, SimpleNamespace], name: str, setting: str
) -> None:
    from shared.settings import Settings

    trigger = _trigger(indexed[name])
    assert trigger["type"] == "timerTrigger"
    assert trigger["schedule"] == f"%{setting}%"
    assert trigger.get("runOnStartup") is False  # a restart must not fire a paid step
    assert setting in Settings.environment_names()


def test_the_shard_queue_trigger_and_the_drop_triggers_outputs_use_one_queue_and_the_identity_connection(
    indexed: dict[str, SimpleNamespace],
) -> None:
    from shared.layout import SHARD_QUEUE

    trigger = _trigger(indexed["convert_shard"])
    assert trigger["type"] == "queueTrigger"
    assert trigger["queueName"] == SHARD_QUEUE
    assert trigger["connection"] == "AzureWebJobsStorage"  # __queueServiceUri + managed identity on Azure
    for name in ("dataset_ready", "dataset_archive_ready"):  # folder and zip drops both fan out
        queue_bindings = [b for b in _raw(indexed[name]) if b["type"] == "queue"]
        # the worker marks every binding of a function with an SDK-type binding; the queue output is not one
        for binding in queue_bindings:
            assert binding.get("properties", {"SupportsDeferredBinding": False}) == {"SupportsDeferredBinding": False}
        outputs = [{k: v for k, v in b.items() if k != "properties"} for b in queue_bindings]
        assert outputs == [
            {"type": "queue", "direction": "OUT", "name": "shards", "queueName": SHARD_QUEUE,
             "connection": "AzureWebJobsStorage"}
        ], (name, outputs)  # fmt: skip


def test_status_is_a_keyed_get_endpoint(indexed: dict[str, SimpleNamespace]) -> None:
    bindings = _raw(indexed["status"])
    trigger = _trigger(indexed["status"])
    assert trigger["type"] == "httpTrigger"
    assert trigger["methods"] == ["GET"]
    assert trigger["authLevel"] == "FUNCTION"
    assert trigger["route"] == "status/{dataset?}"
    assert {"type": "http", "direction": "OUT", "name": "$return"} in bindings


def test_classify_is_a_keyed_post_endpoint(indexed: dict[str, SimpleNamespace]) -> None:
    trigger = _trigger(indexed["classify"])
    assert trigger["type"] == "httpTrigger"
    assert trigger["methods"] == ["POST"]
    assert trigger["authLevel"] == "FUNCTION"
    assert trigger["route"] == "classify/{dataset}"


@pytest.mark.parametrize("name", ["approve", "reject"])
def test_approval_routes_are_keyed_post_endpoints(indexed: dict[str, SimpleNamespace], name: str) -> None:
    trigger = _trigger(indexed[name])
    assert trigger["type"] == "httpTrigger" and trigger["methods"] == ["POST"]
    assert trigger["authLevel"] == "FUNCTION" and trigger["route"] == f"{name}/{{dataset}}/{{version}}"


def test_indexing_imports_no_heavy_library(tmp_path: Path) -> None:
    """Cold start: importing the app must not pull in Pillow, openai, matplotlib or the Azure SDKs
    (azure.storage.blob excepted: the SDK-type blob binding the .zip trigger declares is built on it)."""
    import subprocess

    code = (
        "import sys, function_app\n"
        "heavy = [m for m in ('PIL', 'openai', 'matplotlib', 'numpy', "
        "'azure.mgmt.cognitiveservices', 'tiktoken', 'jinja2') if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"function_app imports heavy modules at start: {out.stdout.strip()}"
