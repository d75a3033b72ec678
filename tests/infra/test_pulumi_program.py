"""The real Pulumi entry point, run the way ``pulumi up`` runs it, against ``pulumi.runtime.set_mocks``.

Each scenario runs ``pulumi_program_driver.py`` in a fresh interpreter (the Pulumi runtime is
process-global): working directory ``infra/``, program ``runpy.run_path(".")``, repository root not on
``sys.path``. The driver records every resource's inputs, every invoke and the stack outputs; the tests
below check them against the security baseline, least privilege, the app's settings object and the
triggers ``function_app.py`` declares. Every failure message names the offending resource.
"""

from __future__ import annotations

import functools
import json
import re
import subprocess
import sys
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest

from shared.layout import (
    ALL_CONTAINERS,
    DATASETS_CONTAINER,
    REPORTS_CONTAINER,
    RUNS_CONTAINER,
    match_blob_path,
)
from shared.settings import LOCAL_ONLY_SETTINGS, Settings, load_settings

REPO_ROOT = Path(__file__).resolve().parents[2]
DRIVER = Path(__file__).with_name("pulumi_program_driver.py")
PROJECT = "visiontune"

# Built-in role ids, as listed in the design's azure-facts (independent of infra/rbac.py on purpose).
ROLE_IDS = {
    "Storage Blob Data Owner": "b7e6dc6d-f1e8-4753-8033-0f276bb0955b",
    "Storage Blob Data Contributor": "ba92f5b4-2d11-453d-a403-e96b0029c9fe",
    "Storage Blob Data Reader": "2a2b9908-6ea1-4ae2-8e65-a410df84e7d1",
    "Storage Queue Data Contributor": "974c5e8b-45b9-4653-ba55-5f855dd0fb88",
    "Cognitive Services OpenAI Contributor": "a001fd3d-188f-4b5d-821b-7da978bf7442",
    "Monitoring Metrics Publisher": "3913510d-42f4-4e42-8a64-420c390055eb",
    "EventGrid Data Sender": "d5a91429-5739-47e2-a06b-3470a27159e7",
}
WRITER_USER = "11111111-aaaa-bbbb-cccc-000000000001"
WRITER_CI = "22222222-aaaa-bbbb-cccc-000000000002"

# Settings the Functions host reads that shared.settings.Settings does not.
HOST_ONLY = {
    "AzureWebJobsStorage__credential",
    "AzureWebJobsStorage__clientId",
    "APPLICATIONINSIGHTS_CONNECTION_STRING",
    "APPLICATIONINSIGHTS_AUTHENTICATION_STRING",
    "PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY",
    "OTEL_PYTHON_DISABLED_INSTRUMENTATIONS",
}
BASE_CONFIG = {
    "location": "northcentralus",
    "namePrefix": "vtci",
    "instanceMemoryMb": "4096",
    "maximumInstanceCount": "25",
    "baseDeploymentCapacity": "30",
    "promotionMargin": "0.03",
    "evaluationSchedule": "0 30 4 * * *",
    "maxRunUsd": "123.5",
    "alertEmails": json.dumps(["ops@example.com", "ml-team@example.com"]),
    # Optional fine-tuning hyperparameters (None = the service chooses): set, so every setting is written.
    "nEpochs": "3",
    "batchSize": "8",
    "learningRateMultiplier": "1.5",
    "dropZonePrincipals": json.dumps(
        [
            {"objectId": WRITER_USER, "principalType": "User"},
            {"objectId": WRITER_CI, "principalType": "ServicePrincipal"},
        ]
    ),
}
SCENARIOS = {
    "defaults": {},
    "phase1": BASE_CONFIG,
    "phase2": {**BASE_CONFIG, "eventGridSubscriptions": "true"},
}


def _run(name: str, config: dict[str, str], folder: Path) -> dict:
    spec = folder / f"{name}.spec.json"
    out = folder / f"{name}.out.json"
    spec.write_text(
        json.dumps(
            {
                "infra_dir": str(REPO_ROOT / "infra"),
                "project": PROJECT,
                "stack": "ci",
                "config": config,
                "out": str(out),
            }
        )
    )
    # A clean interpreter: no PYTHONPATH, started outside the repository.
    env = {"PATH": "/usr/bin:/bin", "HOME": str(folder)}
    done = subprocess.run(
        [sys.executable, str(DRIVER), str(spec)],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, f"driver for {name} crashed:\n{done.stdout}\n{done.stderr}"
    return json.loads(out.read_text())


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    folder = tmp_path_factory.mktemp("pulumi-runs")
    with ThreadPoolExecutor(max_workers=len(SCENARIOS)) as pool:
        futures = {name: pool.submit(_run, name, config, folder) for name, config in SCENARIOS.items()}
        results = {name: future.result() for name, future in futures.items()}
    for name, result in results.items():
        assert result["error"] is None, f"scenario {name}: the program failed:\n{result['error']}"
    return results


# --- helpers ---------------------------------------------------------------------------------------


def label(resource: dict) -> str:
    return f"{resource['type'].removeprefix('azure-native:')} '{resource['name']}'"


def of_type(run: dict, short_type: str) -> list[dict]:
    return [r for r in run["resources"] if r["type"] == f"azure-native:{short_type}"]


def one(run: dict, short_type: str) -> dict:
    found = of_type(run, short_type)
    assert len(found) == 1, f"expected exactly one {short_type}, found {[r['name'] for r in found]}"
    return found[0]


def app_settings(run: dict) -> dict[str, str]:
    app = one(run, "web:WebApp")
    pairs = app["inputs"]["siteConfig"]["appSettings"]
    names = [p["name"] for p in pairs]
    assert len(names) == len(set(names)), f"{label(app)}: duplicate app settings {names}"
    return {p["name"]: p["value"] for p in pairs}


@functools.cache
def app_functions() -> list:
    import function_app

    # azure-functions 1.26 refuses a second get_functions() on one app (it remembers the names it saw):
    # start from a clean slate in case another test already indexed the app.
    function_app.app.functions_bindings = {}
    return list(function_app.app.get_functions())


def blob_triggers() -> dict[str, dict]:
    """function name -> trigger binding (path, connection), as the app itself declares them."""
    triggers = {}
    for function in app_functions():
        trigger = function.get_trigger()
        if trigger.type == "blobTrigger":
            triggers[function.get_function_name()] = {"path": trigger.path, "connection": trigger.connection}
    assert triggers, "function_app.py declares no blob trigger"
    return triggers


# --- the entry point -------------------------------------------------------------------------------


def test_entry_point_runs_as_pulumi_runs_it(runs: dict[str, dict]) -> None:
    for name, run in runs.items():
        assert str(REPO_ROOT) not in run["sys_path_before"], f"{name}: the repo root was on sys.path already"
        assert "infra.component" in run["modules"], f"{name}: the program did not import infra.component"
        assert one(run, "web:WebApp"), name


def test_infra_module_names_shadow_nothing_installed() -> None:
    """``infra/`` is on sys.path under Pulumi: its module names must not hide real packages."""
    import importlib.util

    stems = [p.stem for p in (REPO_ROOT / "infra").glob("*.py") if p.stem not in ("__init__", "__main__")]
    shadowed = [s for s in stems if s in sys.stdlib_module_names or importlib.util.find_spec(s) is not None]
    assert not shadowed, f"infra modules shadow importable modules: {shadowed}"


# --- security baseline -----------------------------------------------------------------------------


def test_storage_is_locked_down(runs: dict[str, dict]) -> None:
    run = runs["phase1"]
    for account in of_type(run, "storage:StorageAccount"):
        inputs = account["inputs"]
        expected = {
            "allowBlobPublicAccess": False,
            "allowSharedKeyAccess": False,
            "minimumTlsVersion": "TLS1_2",
            "enableHttpsTrafficOnly": True,
        }
        for key, value in expected.items():
            assert inputs.get(key) == value, (
                f"{label(account)}: {key} is {inputs.get(key)!r}, expected {value!r}"
            )
    for service in of_type(run, "storage:BlobServiceProperties"):
        inputs = service["inputs"]
        assert inputs.get("isVersioningEnabled") is True, f"{label(service)}: blob versioning is off"
        for policy in ("deleteRetentionPolicy", "containerDeleteRetentionPolicy"):
            setting = inputs.get(policy) or {}
            assert setting.get("enabled") is True and setting.get("days", 0) >= 1, (
                f"{label(service)}: {policy} {setting}"
            )
    containers = of_type(run, "storage:BlobContainer")
    for container in containers:
        assert container["inputs"].get("publicAccess") == "None", f"{label(container)}: public access allowed"
    names = {c["inputs"]["containerName"] for c in containers}
    assert set(ALL_CONTAINERS) <= names, f"missing containers: {set(ALL_CONTAINERS) - names}"


def test_the_shard_queue_is_declared_on_the_app_storage_account_and_the_host_retries_match(runs: dict[str, dict]) -> None:
    import json
    from pathlib import Path

    from shared.layout import SHARD_MAX_DEQUEUE_COUNT, SHARD_QUEUE

    run = runs["phase1"]
    account = one(run, "storage:StorageAccount")
    queue = one(run, "storage:Queue")
    assert queue["inputs"]["queueName"] == SHARD_QUEUE, f"{label(queue)}: {queue['inputs']}"
    assert queue["inputs"]["accountName"] == account["inputs"]["accountName"], f"{label(queue)}: other account"
    # the poison queue is the host's (created on the first poisoned message), not declared
    assert not [q for q in of_type(run, "storage:Queue") if q["inputs"]["queueName"].endswith("-poison")]
    host = json.loads((Path(__file__).resolve().parents[2] / "host.json").read_text())
    queues = host["extensions"]["queues"]
    assert queues["maxDequeueCount"] == SHARD_MAX_DEQUEUE_COUNT, queues
    for name in ("VISIONTUNE_SHARD_MIN_IMAGES", "VISIONTUNE_SHARD_IMAGES"):
        assert name in Settings.environment_names()


def test_openai_is_entra_only_with_pinned_sequential_deployments(runs: dict[str, dict]) -> None:
    run = runs["phase1"]
    account = one(run, "cognitiveservices:Account")
    inputs, properties = account["inputs"], account["inputs"].get("properties", {})
    assert inputs.get("kind") == "OpenAI", f"{label(account)}: kind {inputs.get('kind')}"
    assert properties.get("disableLocalAuth") is True, f"{label(account)}: local (key) auth enabled"
    assert properties.get("customSubDomainName") == inputs["accountName"], (
        f"{label(account)}: no custom subdomain"
    )
    assert inputs.get("identity", {}).get("type") == "SystemAssigned", f"{label(account)}: no system identity"

    deployments = {d["inputs"]["deploymentName"]: d for d in of_type(run, "cognitiveservices:Deployment")}
    base, batch = deployments["base"], deployments["base-batch"]
    assert base["inputs"]["sku"] == {"name": "GlobalStandard", "capacity": 30}, (
        f"{label(base)}: {base['inputs']['sku']}"
    )
    assert batch["inputs"]["sku"]["name"] == "GlobalBatch", f"{label(batch)}: {batch['inputs']['sku']}"
    for deployment in (base, batch):
        model = deployment["inputs"]["properties"]["model"]
        assert model == {"format": "OpenAI", "name": "gpt-4.1", "version": "2025-04-14"}, (
            f"{label(deployment)}: {model}"
        )
    # Azure rejects concurrent deployment operations on one account: batch must wait for base.
    batch_dependencies = run["dependencies"][f"{batch['type']} {batch['name']}"]
    assert any(urn.endswith(f"::{base['name']}") for urn in batch_dependencies), (
        f"{label(batch)} does not depend on {label(base)}: {batch_dependencies}"
    )


def test_monitoring_has_local_auth_disabled(runs: dict[str, dict]) -> None:
    run = runs["phase1"]
    insights = one(run, "applicationinsights:Component")
    workspace = one(run, "operationalinsights:Workspace")
    assert insights["inputs"].get("disableLocalAuth") is True, f"{label(insights)}: local auth enabled"
    assert insights["inputs"].get("workspaceResourceId") == workspace["id"], (
        f"{label(insights)}: not on {label(workspace)}"
    )
    assert workspace["inputs"].get("features", {}).get("disableLocalAuth") is True, (
        f"{label(workspace)}: local auth on"
    )
    assert workspace["inputs"].get("workspaceCapping", {}).get("dailyQuotaGb", 0) > 0, (
        f"{label(workspace)}: no daily cap"
    )


def test_function_app_is_flex_python_with_identity_only(runs: dict[str, dict]) -> None:
    run = runs["phase1"]
    plan, app = one(run, "web:AppServicePlan"), one(run, "web:WebApp")
    identity = one(run, "managedidentity:UserAssignedIdentity")
    account = one(run, "storage:StorageAccount")
    assert plan["inputs"]["sku"] == {"name": "FC1", "tier": "FlexConsumption"}, (
        f"{label(plan)}: {plan['inputs']['sku']}"
    )
    assert plan["inputs"].get("reserved") is True, f"{label(plan)}: not Linux"
    assert app["inputs"]["serverFarmId"] == plan["id"], f"{label(app)} is not on {label(plan)}"

    inputs = app["inputs"]
    assert inputs.get("kind") == "functionapp,linux", f"{label(app)}: kind {inputs.get('kind')}"
    assert inputs.get("httpsOnly") is True, f"{label(app)}: httpsOnly is off"
    assert inputs["siteConfig"].get("minTlsVersion") == "1.2", f"{label(app)}: minTlsVersion"
    assert "ftpsState" not in inputs["siteConfig"], f"{label(app)}: ftpsState is not used on Flex"
    assert inputs["identity"] == {"type": "UserAssigned", "userAssignedIdentities": [identity["id"]]}, (
        f"{label(app)}: identity {inputs['identity']}"
    )
    config = inputs["functionAppConfig"]
    assert config["runtime"] == {"name": "python", "version": "3.11"}, (
        f"{label(app)}: runtime {config['runtime']}"
    )
    assert config["scaleAndConcurrency"] == {"instanceMemoryMB": 4096, "maximumInstanceCount": 25}, (
        f"{label(app)}: scale {config['scaleAndConcurrency']}"
    )
    storage = config["deployment"]["storage"]
    container = storage["value"].removeprefix(
        f"https://{account['inputs']['accountName']}.blob.core.windows.net/"
    )
    assert storage["type"] == "blobContainer" and container != storage["value"], (
        f"{label(app)}: deployment {storage}"
    )
    assert container in {c["inputs"]["containerName"] for c in of_type(run, "storage:BlobContainer")}, (
        f"{label(app)}: deployment container {container!r} is not created"
    )
    assert storage["authentication"] == {
        "type": "UserAssignedIdentity",
        "userAssignedIdentityResourceId": identity["id"],
    }, f"{label(app)}: deployment storage auth {storage['authentication']}"

    basic_auth = of_type(run, "web:WebAppScmAllowed") + of_type(run, "web:WebAppFtpAllowed")
    assert len(basic_auth) == 2, "basic-auth publishing policies missing"
    for policy in basic_auth:
        assert policy["inputs"]["allow"] is False, f"{label(policy)}: basic-auth publishing allowed"


# --- app settings ----------------------------------------------------------------------------------


def test_app_settings_cover_exactly_what_the_settings_object_reads(runs: dict[str, dict]) -> None:
    wanted = set(Settings.environment_names()) - LOCAL_ONLY_SETTINGS
    written = set(app_settings(runs["phase1"]))
    assert written - HOST_ONLY == wanted, (
        f"WebApp app settings: missing {sorted(wanted - written)}, "
        f"unexpected {sorted(written - HOST_ONLY - wanted)}"
    )
    assert HOST_ONLY <= written, f"WebApp app settings: host settings missing {sorted(HOST_ONLY - written)}"
    # With the defaults, only optional settings whose default is None ("the service decides") are left out.
    left_out = wanted - set(app_settings(runs["defaults"]))
    optional = {
        Settings.environment_name(f) for f, info in Settings.model_fields.items() if info.default is None
    }
    assert left_out <= optional, (
        f"WebApp app settings (defaults) leave out required settings {sorted(left_out - optional)}"
    )


SECRET_PATTERNS = [
    re.compile(p, re.IGNORECASE)
    for p in (
        r"AccountKey=",
        r"SharedAccessSignature",
        r"[?&]sig=",
        r"\bsv=\d{4}-",
        r"api[-_]?key",
        r"password",
        r"secret",
    )
]


def test_app_settings_hold_no_secret(runs: dict[str, dict]) -> None:
    for scenario in ("defaults", "phase1", "phase2"):
        settings = app_settings(runs[scenario])
        for name, value in settings.items():
            for pattern in SECRET_PATTERNS:
                assert not pattern.search(value), (
                    f"WebApp app setting {name} looks like a secret ({pattern.pattern})"
                )
        assert not (LOCAL_ONLY_SETTINGS & set(settings)), (
            f"WebApp sets local-only {LOCAL_ONLY_SETTINGS & set(settings)}"
        )
        for banned in ("FUNCTIONS_WORKER_RUNTIME", "WEBSITE_RUN_FROM_PACKAGE", "AzureWebJobsStorage"):
            assert banned not in settings, (
                f"WebApp app setting {banned} must not be set on Flex/identity storage"
            )
        # The App Insights connection string locates the endpoint; with local auth off it is no credential.
        parts = dict(
            part.split("=", 1)
            for part in settings["APPLICATIONINSIGHTS_CONNECTION_STRING"].split(";")
            if part
        )
        assert set(parts) <= {"InstrumentationKey", "IngestionEndpoint", "LiveEndpoint", "ApplicationId"}, (
            parts
        )


def test_telemetry_goes_through_the_workers_opentelemetry_distro_keyless(runs: dict[str, dict]) -> None:
    """host.json, the app settings and requirements.txt agree (shared/telemetry.py): the host in
    OpenTelemetry mode, the worker configuring the Azure Monitor distro (so log attributes become
    customDimensions), the distro pinned in the deployed requirements, and Entra ID ingestion."""
    root = Path(__file__).resolve().parents[2]
    host = json.loads((root / "host.json").read_text(encoding="utf-8"))
    assert host.get("telemetryMode") == "OpenTelemetry", "host.json: telemetryMode"
    pins = [line.split("==") for line in (root / "requirements.txt").read_text().splitlines() if "==" in line]
    assert any(name.strip() == "azure-monitor-opentelemetry" for name, _ in pins), "requirements.txt: distro pin"
    settings = app_settings(runs["phase1"])
    assert settings["PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY"] == "true"
    # No span per HTTP call: every HTTP client the distro would instrument is switched off, by the
    # names the distro itself uses.
    from azure.monitor.opentelemetry._constants import _FULLY_SUPPORTED_INSTRUMENTED_LIBRARIES

    disabled = set(settings["OTEL_PYTHON_DISABLED_INSTRUMENTATIONS"].split(","))
    http_clients = {"azure_sdk", "requests", "urllib", "urllib3", "httpx", "httpx2"}
    assert http_clients <= disabled <= set(_FULLY_SUPPORTED_INSTRUMENTED_LIBRARIES), disabled
    assert settings["APPLICATIONINSIGHTS_AUTHENTICATION_STRING"].endswith(";Authorization=AAD")
    insights = one(runs["phase1"], "applicationinsights:Component")
    assert insights["inputs"]["disableLocalAuth"] is True, "Application Insights accepts keys"


def test_app_settings_point_at_the_created_resources(
    runs: dict[str, dict], monkeypatch: pytest.MonkeyPatch
) -> None:
    run = runs["phase1"]
    settings = app_settings(run)
    identity = one(run, "managedidentity:UserAssignedIdentity")
    client_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"client/{identity['inputs']['resourceName']}"))
    account = one(run, "storage:StorageAccount")["inputs"]["accountName"]
    openai = one(run, "cognitiveservices:Account")
    subdomain = openai["inputs"]["properties"]["customSubDomainName"]
    group = one(run, "resources:ResourceGroup")
    deployments = {
        d["name"]: d["inputs"]["deploymentName"] for d in of_type(run, "cognitiveservices:Deployment")
    }
    expected = {
        "AzureWebJobsStorage__blobServiceUri": f"https://{account}.blob.core.windows.net",
        "AzureWebJobsStorage__queueServiceUri": f"https://{account}.queue.core.windows.net",
        "AzureWebJobsStorage__credential": "managedidentity",
        "AzureWebJobsStorage__clientId": client_id,
        "AZURE_CLIENT_ID": client_id,
        "APPLICATIONINSIGHTS_AUTHENTICATION_STRING": f"ClientId={client_id};Authorization=AAD",
        "PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY": "true",
        "VISIONTUNE_SDK_LOG_LEVEL": "WARNING",
        "AZURE_OPENAI_ENDPOINT": f"https://{subdomain}.openai.azure.com/",
        "AZURE_OPENAI_ACCOUNT": openai["inputs"]["accountName"],
        "AZURE_RESOURCE_GROUP": group["inputs"]["resourceGroupName"],
        "AZURE_SUBSCRIPTION_ID": run["subscription_id"],
        "AZURE_OPENAI_BASE_DEPLOYMENT": deployments["openai-base-deployment"],
        "AZURE_OPENAI_BATCH_DEPLOYMENT": deployments["openai-batch-deployment"],
        "VISIONTUNE_BASE_MODEL": "gpt-4.1-2025-04-14",
        "VISIONTUNE_PROMOTION_MARGIN": "0.03",
        "VISIONTUNE_EVALUATION_SCHEDULE": "0 30 4 * * *",
        "VISIONTUNE_MAX_RUN_USD": "123.5",
        "VISIONTUNE_EPOCHS": "3",
        "VISIONTUNE_EVENTS_TOPIC_ENDPOINT": f"https://{one(run, 'eventgrid:Topic')['inputs']['topicName']}"
        ".northcentralus-1.eventgrid.azure.net/api/events",
    }
    for name, value in expected.items():
        assert settings.get(name) == value, (
            f"WebApp app setting {name} = {settings.get(name)!r}, expected {value!r}"
        )

    # The deployed app loads these exact values through the real settings object.
    for name in Settings.environment_names():
        monkeypatch.delenv(name, raising=False)
    for name, value in settings.items():
        monkeypatch.setenv(name, value)
    loaded = load_settings()
    loaded.require_storage()
    assert loaded.promotion_margin == 0.03 and loaded.n_epochs == 3 and loaded.max_run_usd == 123.5
    assert not loaded.uses_api_key, "the deployed app would use an API key"


def test_every_binding_setting_is_provided(runs: dict[str, dict]) -> None:
    settings = app_settings(runs["phase1"])
    for name, trigger in blob_triggers().items():
        connection = trigger["connection"]
        for suffix in ("__blobServiceUri", "__queueServiceUri", "__credential", "__clientId"):
            assert connection + suffix in settings, f"blob trigger {name}: WebApp lacks {connection + suffix}"
    for function in app_functions():
        schedule = getattr(function.get_trigger(), "schedule", None)
        if schedule and schedule.startswith("%"):
            setting = schedule.strip("%")
            assert setting in settings, f"timer {function.get_function_name()}: WebApp lacks {setting}"
            assert len(settings[setting].split()) == 6, (
                f"timer {function.get_function_name()}: {settings[setting]!r}"
            )


# --- least privilege -------------------------------------------------------------------------------


def test_each_principal_holds_exactly_the_roles_it_needs_on_one_resource(runs: dict[str, dict]) -> None:
    run = runs["phase1"]
    app_principal = str(
        uuid.uuid5(
            uuid.NAMESPACE_URL,
            f"principal/{one(run, 'managedidentity:UserAssignedIdentity')['inputs']['resourceName']}",
        )
    )
    containers = {c["inputs"]["containerName"]: c["id"] for c in of_type(run, "storage:BlobContainer")}
    scopes = {
        "storage account": one(run, "storage:StorageAccount")["id"],
        "openai account": one(run, "cognitiveservices:Account")["id"],
        "app insights": one(run, "applicationinsights:Component")["id"],
        "events topic": one(run, "eventgrid:Topic")["id"],
        "datasets container": containers[DATASETS_CONTAINER],
        "runs container": containers[RUNS_CONTAINER],
        "reports container": containers[REPORTS_CONTAINER],
    }
    principals = {"app identity": app_principal, "writer user": WRITER_USER, "writer ci": WRITER_CI}
    principal_types = {
        "app identity": "ServicePrincipal",
        "writer user": "User",
        "writer ci": "ServicePrincipal",
    }
    expected_table = [
        # principal        role                                     scope
        ("app identity", "Storage Blob Data Owner", "storage account"),
        ("app identity", "Storage Queue Data Contributor", "storage account"),
        ("app identity", "Cognitive Services OpenAI Contributor", "openai account"),
        ("app identity", "Monitoring Metrics Publisher", "app insights"),
        ("app identity", "EventGrid Data Sender", "events topic"),
        ("writer user", "Storage Blob Data Contributor", "datasets container"),
        ("writer user", "Storage Blob Data Reader", "runs container"),
        ("writer user", "Storage Blob Data Reader", "reports container"),
        ("writer ci", "Storage Blob Data Contributor", "datasets container"),
        ("writer ci", "Storage Blob Data Reader", "runs container"),
        ("writer ci", "Storage Blob Data Reader", "reports container"),
    ]
    expected = {(principals[p], ROLE_IDS[r], scopes[s]) for p, r, s in expected_table}
    by_principal = {v: k for k, v in principals.items()}
    role_names = {v: k for k, v in ROLE_IDS.items()}

    actual = set()
    for assignment in of_type(run, "authorization:RoleAssignment"):
        inputs = assignment["inputs"]
        match = re.fullmatch(
            rf"/subscriptions/{run['subscription_id']}/providers/Microsoft\.Authorization"
            r"/roleDefinitions/([0-9a-f-]{36})",
            inputs["roleDefinitionId"],
        )
        assert match, f"{label(assignment)}: role definition id {inputs['roleDefinitionId']!r}"
        role_id = match.group(1)
        who = by_principal.get(inputs["principalId"], inputs["principalId"])
        assert inputs.get("principalType") == principal_types.get(who), f"{label(assignment)}: principalType"
        uuid.UUID(inputs["roleAssignmentName"])  # a GUID, as ARM requires
        actual.add((inputs["principalId"], role_id, inputs["scope"]))

    def describe(rows: set) -> list[str]:
        scope_names = {v: k for k, v in scopes.items()}
        return sorted(
            f"{by_principal.get(p, p)} / {role_names.get(r, r)} / {scope_names.get(s, s)}" for p, r, s in rows
        )

    assert actual == expected, (
        f"role assignments: extra {describe(actual - expected)}, missing {describe(expected - actual)}"
    )
    assert len(of_type(run, "authorization:RoleAssignment")) == len(expected), "duplicate role assignments"


# --- Event Grid: phase one without, phase two with subscriptions -----------------------------------


def test_phase_one_has_no_subscriptions_and_needs_no_app_key(runs: dict[str, dict]) -> None:
    phase1, phase2 = runs["phase1"], runs["phase2"]
    assert not of_type(phase1, "eventgrid:SystemTopicEventSubscription"), (
        "phase one created event subscriptions"
    )
    tokens = [c["token"] for c in phase1["calls"]]
    assert "azure-native:web:listWebAppHostKeys" not in tokens, (
        "phase one reads the app keys (they do not exist yet)"
    )
    one(phase1, "eventgrid:SystemTopic")
    # Phase two is phase one plus the subscriptions, nothing else changes.
    names = lambda run: {(r["type"], r["name"]) for r in run["resources"]}  # noqa: E731
    added = names(phase2) - names(phase1)
    assert names(phase1) <= names(phase2), f"phase two drops {names(phase1) - names(phase2)}"
    assert {t for t, _ in added} == {"azure-native:eventgrid:SystemTopicEventSubscription"}, added
    for before in phase1["resources"]:
        after = next(
            r for r in phase2["resources"] if (r["type"], r["name"]) == (before["type"], before["name"])
        )
        assert after["inputs"] == before["inputs"], f"{label(before)} changes between phase one and two"


def _admits(subscription: dict, subject: str) -> bool:
    rule = subscription["inputs"]["filter"]
    begins, ends = rule.get("subjectBeginsWith", ""), rule.get("subjectEndsWith", "")
    if rule.get("isSubjectCaseSensitive"):
        return subject.startswith(begins) and subject.endswith(ends)
    return subject.lower().startswith(begins.lower()) and subject.lower().endswith(ends.lower())


def _subject(blob_path: str) -> str:
    container, _, blob = blob_path.partition("/")
    return f"/blobServices/default/containers/{container}/blobs/{blob}"


def _examples(pattern: str) -> list[str]:
    values = [
        {"dataset": "cats", "version": "v1a2b3"},
        {"dataset": "dogs.2024_v2", "version": "0123456789abcdef"},
    ]
    return [re.sub(r"\{(\w+)\}", lambda m, v=v: v.get(m.group(1), "x"), pattern) for v in values]


def test_event_grid_filters_match_the_app_triggers(runs: dict[str, dict]) -> None:
    run = runs["phase2"]
    triggers = blob_triggers()
    topic = one(run, "eventgrid:SystemTopic")
    assert topic["inputs"]["source"] == one(run, "storage:StorageAccount")["id"], (
        f"{label(topic)}: wrong source"
    )
    assert topic["inputs"]["topicType"] == "Microsoft.Storage.StorageAccounts", label(topic)
    host = f"{one(run, 'web:WebApp')['inputs']['name']}.azurewebsites.net"

    subscriptions: dict[str, dict] = {}
    for subscription in of_type(run, "eventgrid:SystemTopicEventSubscription"):
        inputs = subscription["inputs"]
        destination = inputs["destination"]
        url = urlparse(destination["endpointUrl"])
        query = parse_qs(url.query)
        assert destination["endpointType"] == "WebHook", (
            f"{label(subscription)}: {destination['endpointType']}"
        )
        assert (url.scheme, url.netloc, url.path) == ("https", host, "/runtime/webhooks/blobs"), (
            f"{label(subscription)}: endpoint {url.scheme}://{url.netloc}{url.path}"
        )
        assert query.get("code") == [run["blobs_extension_key"]], (
            f"{label(subscription)}: not the blobs_extension key"
        )
        assert "destination" in subscription["secret_paths"], (
            f"{label(subscription)}: the key is not kept secret"
        )
        assert inputs["systemTopicName"] == topic["inputs"]["systemTopicName"], (
            f"{label(subscription)}: other topic"
        )
        assert inputs["filter"]["includedEventTypes"] == ["Microsoft.Storage.BlobCreated"], label(
            subscription
        )
        function_name = query["functionName"][0].removeprefix("Host.Functions.")
        assert function_name not in subscriptions, (
            f"{label(subscription)}: second subscription for {function_name}"
        )
        subscriptions[function_name] = subscription
    assert set(subscriptions) == set(triggers), (
        f"subscriptions for {sorted(subscriptions)}, blob triggers in function_app.py {sorted(triggers)}"
    )

    # Every blob a trigger matches is delivered to that trigger's webhook...
    for name, trigger in triggers.items():
        for blob_path in _examples(trigger["path"]):
            assert match_blob_path(trigger["path"], blob_path), blob_path
            assert _admits(subscriptions[name], _subject(blob_path)), (
                f"{label(subscriptions[name])}: filter drops {blob_path}, "
                f"which trigger {name} ({trigger['path']}) matches"
            )
    # ...and the blobs that start nothing (images, reports, runs, other triggers' blobs) raise no event there.
    quiet = [
        "datasets/cats/tabby/0001.jpg",
        "datasets/cats/train/tabby/0002.png",
        "training/cats/v1/train.jsonl",
        "runs/cats/v1.json",
        "reports/cats/v1/report.json",
        "reports/cats/v1/_READY",
        "app-package/released-package.zip",
    ]
    for name, subscription in subscriptions.items():
        others = [p for other, t in triggers.items() if other != name for p in _examples(t["path"])]
        for blob_path in quiet + others:
            if match_blob_path(triggers[name]["path"], blob_path):
                continue
            assert not _admits(subscription, _subject(blob_path)), (
                f"{label(subscription)}: filter admits {blob_path}"
            )


# --- stack outputs ---------------------------------------------------------------------------------


def test_stack_outputs_tell_the_user_what_they_need(runs: dict[str, dict]) -> None:
    run = runs["phase1"]
    outputs = run["outputs"]
    account = one(run, "storage:StorageAccount")["inputs"]["accountName"]
    app = one(run, "web:WebApp")["inputs"]["name"]
    assert outputs["dropZoneUrl"] == f"https://{account}.blob.core.windows.net/{DATASETS_CONTAINER}"
    assert outputs["functionAppName"] == app
    assert outputs["functionAppUrl"] == f"https://{app}.azurewebsites.net"
    assert outputs["openaiEndpoint"] == app_settings(run)["AZURE_OPENAI_ENDPOINT"]
    assert (outputs["baseDeployment"], outputs["batchDeployment"]) == ("base", "base-batch")
    command = outputs["uploadCommand"]
    assert "--auth-mode login" in command and account in command and "_READY" in command, command
    assert outputs["cliSettings"]["Values"]["AzureWebJobsStorage__blobServiceUri"] == (
        f"https://{account}.blob.core.windows.net"
    )
    assert (
        outputs["eventGridSubscriptions"] is False
        and runs["phase2"]["outputs"]["eventGridSubscriptions"] is True
    )


# --- events and alerts -----------------------------------------------------------------------------
def test_events_topic_takes_cloudevents_with_entra_id_only(runs: dict[str, dict]) -> None:
    topic = one(runs["phase1"], "eventgrid:Topic")
    inputs = topic["inputs"]
    assert inputs.get("inputSchema") == "CloudEventSchemaV1_0", f"{label(topic)}: schema {inputs.get('inputSchema')}"
    assert inputs.get("disableLocalAuth") is True, f"{label(topic)}: local (key) auth enabled"
    assert inputs.get("minimumTlsVersionAllowed") == "1.2", f"{label(topic)}: TLS"
    assert 3 <= len(inputs["topicName"]) <= 50, f"{label(topic)}: name {inputs['topicName']!r} over 50 characters"


def test_action_group_mails_the_configured_receivers_and_nobody_by_default(runs: dict[str, dict]) -> None:
    group = one(runs["phase1"], "monitor:ActionGroup")
    assert [r["emailAddress"] for r in group["inputs"]["emailReceivers"]] == ["ops@example.com", "ml-team@example.com"], (
        f"{label(group)}: {group['inputs']['emailReceivers']}"
    )
    assert len(group["inputs"]["groupShortName"]) <= 12 and group["inputs"]["location"] == "Global", label(group)
    default = one(runs["defaults"], "monitor:ActionGroup")
    assert default["inputs"].get("emailReceivers") in (None, []), f"{label(default)}: receivers by default"


def test_alert_rules_cover_failures_poison_messages_failed_runs_and_regressions(runs: dict[str, dict]) -> None:
    from shared.events import EVENT_LOG_PREFIX

    run = runs["phase1"]
    group = one(run, "monitor:ActionGroup")
    insights = one(run, "applicationinsights:Component")
    account = one(run, "storage:StorageAccount")
    rules = {r["name"]: r for r in of_type(run, "monitor:ScheduledQueryRule")}
    assert set(rules) == {"alert-failed-executions", "alert-failed-run", "alert-regression"}, sorted(rules)
    queries = {}
    for name, rule in rules.items():
        inputs = rule["inputs"]
        assert inputs["scopes"] == [insights["id"]], f"{label(rule)}: scopes {inputs['scopes']}"
        assert inputs["actions"]["actionGroups"] == [group["id"]], f"{label(rule)}: actions {inputs['actions']}"
        assert inputs["enabled"] is True, f"{label(rule)}: disabled"
        [criterion] = inputs["criteria"]["allOf"]
        assert criterion["operator"] == "GreaterThan" and criterion["threshold"] == 0, f"{label(rule)}: {criterion}"
        queries[name] = criterion["query"]
    assert "success == false" in queries["alert-failed-executions"]
    assert f'"{EVENT_LOG_PREFIX}visiontune.run.failed ' in queries["alert-failed-run"]
    assert f'"{EVENT_LOG_PREFIX}visiontune.production.regression ' in queries["alert-regression"]
    poison = one(run, "monitor:MetricAlert")
    inputs = poison["inputs"]
    assert inputs["scopes"] == [f"{account['id']}/queueServices/default"], f"{label(poison)}: {inputs['scopes']}"
    [criterion] = inputs["criteria"]["allOf"]
    assert criterion["metricName"] == "QueueMessageCount" and criterion["threshold"] == 0, f"{label(poison)}"
    assert inputs["actions"] == [{"actionGroupId": group["id"]}], f"{label(poison)}: actions {inputs['actions']}"


def test_the_logged_event_line_matches_the_alert_query(caplog: pytest.LogCaptureFixture) -> None:
    """The alert rules match the log line the publisher writes: check it with the real publisher."""
    import logging
    from datetime import datetime

    from infra.notifications import event_log_query
    from shared.events import EventPublisher, cloud_event

    publisher = EventPublisher(Settings())
    publisher._append = lambda event: None  # no storage here: only the log line matters
    event = cloud_event("run.failed", "dogs/v1", {"detail": "boom"}, at=datetime.now(UTC), key="k")
    with caplog.at_level(logging.INFO, logger="shared.events"):
        publisher.publish(event)
    prefix = event_log_query("run.failed").split('startswith "', 1)[1].split('"', 1)[0]
    assert any(r.getMessage().startswith(prefix) and r.levelno == logging.WARNING for r in caplog.records)
