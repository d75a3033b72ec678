"""Runs the real Pulumi entry point (``infra/__main__.py``) the way ``pulumi up`` does, against
``pulumi.runtime.set_mocks``, and writes every registered resource, invoke and stack output as JSON.

Not a test module: ``test_pulumi_program.py`` starts it in a fresh interpreter per phase, because the
Pulumi runtime is process-global. How ``pulumi up`` runs a Python program (pulumi-language-python-exec):
the working directory is the ``main:`` directory and the program is
``run_in_stack(lambda: runpy.run_path(".", run_name="__main__"))``, so ``infra/`` is on ``sys.path``
and the repository root is not. This driver reproduces exactly that.

Usage: python pulumi_program_driver.py SPEC.json   (SPEC: {"infra_dir", "config", "out"})
"""

from __future__ import annotations

import json
import os
import runpy
import sys
import uuid
from pathlib import Path

SUBSCRIPTION_ID = "00000000-1111-2222-3333-444444444444"
TENANT_ID = "99999999-8888-7777-6666-555555555555"
DEPLOYER_OBJECT_ID = "12121212-3434-5656-7878-909090909090"
BLOBS_EXTENSION_KEY = "mock-blobs-extension-key"

# type token -> (input that carries the resource's name, ARM provider path under the resource group)
ARM_TYPES = {
    "azure-native:resources:ResourceGroup": ("resourceGroupName", None),
    "azure-native:managedidentity:UserAssignedIdentity": (
        "resourceName",
        "Microsoft.ManagedIdentity/userAssignedIdentities",
    ),
    "azure-native:storage:StorageAccount": ("accountName", "Microsoft.Storage/storageAccounts"),
    "azure-native:cognitiveservices:Account": ("accountName", "Microsoft.CognitiveServices/accounts"),
    "azure-native:operationalinsights:Workspace": (
        "workspaceName",
        "Microsoft.OperationalInsights/workspaces",
    ),
    "azure-native:applicationinsights:Component": ("resourceName", "Microsoft.Insights/components"),
    "azure-native:web:AppServicePlan": ("name", "Microsoft.Web/serverfarms"),
    "azure-native:web:WebApp": ("name", "Microsoft.Web/sites"),
    "azure-native:eventgrid:SystemTopic": ("systemTopicName", "Microsoft.EventGrid/systemTopics"),
    "azure-native:eventgrid:Topic": ("topicName", "Microsoft.EventGrid/topics"),
    "azure-native:monitor:ActionGroup": ("actionGroupName", "Microsoft.Insights/actionGroups"),
    "azure-native:monitor:ScheduledQueryRule": ("ruleName", "Microsoft.Insights/scheduledQueryRules"),
    "azure-native:monitor:MetricAlert": ("ruleName", "Microsoft.Insights/metricAlerts"),
}


def _stable_guid(*parts: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, "/".join(parts)))


def _rg_id(group: str) -> str:
    return f"/subscriptions/{SUBSCRIPTION_ID}/resourceGroups/{group}"


def _unwrap_secrets(value, path: str, secret_paths: list[str]):
    """Replace Pulumi's secret envelopes by their values, noting where they were (dotted paths)."""
    from pulumi.runtime.rpc import _special_secret_sig

    if isinstance(value, dict):
        if value.get(_special_sig_key()) == _special_secret_sig:
            secret_paths.append(path)
            return _unwrap_secrets(value.get("value"), path, secret_paths)
        return {k: _unwrap_secrets(v, f"{path}.{k}" if path else k, secret_paths) for k, v in value.items()}
    if isinstance(value, list):
        return [_unwrap_secrets(v, f"{path}[{i}]", secret_paths) for i, v in enumerate(value)]
    return value


def _special_sig_key() -> str:
    from pulumi.runtime.rpc import _special_sig_key as key

    return key


def main() -> None:
    spec = json.loads(Path(sys.argv[1]).read_text())
    infra_dir = Path(spec["infra_dir"]).resolve()
    repo_root = infra_dir.parent

    # Pulumi's conditions: cwd = infra/, nothing of ours on sys.path (runpy adds infra/ itself).
    script_dir = str(Path(__file__).resolve().parent)
    sys.path[:] = [
        p for p in sys.path if p not in ("", ".") and Path(p).resolve() not in (Path(script_dir), repo_root)
    ]
    os.chdir(infra_dir)
    path_before = list(sys.path)

    import pulumi
    from pulumi.runtime.stack import run_pulumi_func
    from pulumi.runtime.sync_await import _sync_await

    resources: list[dict] = []
    calls: list[dict] = []

    class Mocks(pulumi.runtime.Mocks):
        def new_resource(self, args: pulumi.runtime.MockResourceArgs):
            inputs = dict(args.inputs)
            outputs = dict(inputs)
            typ = args.typ
            name_key, provider_path = ARM_TYPES.get(typ, (None, None))
            name = inputs.get(name_key) if name_key else None
            group = inputs.get("resourceGroupName", "")
            resource_id = f"{args.name}-id"
            if typ == "azure-native:resources:ResourceGroup":
                resource_id = _rg_id(name)
            elif provider_path:
                resource_id = f"{_rg_id(group)}/providers/{provider_path}/{name}"
            elif typ == "azure-native:storage:BlobContainer":
                name = inputs["containerName"]
                resource_id = (
                    f"{_rg_id(group)}/providers/Microsoft.Storage/storageAccounts/{inputs['accountName']}"
                    f"/blobServices/default/containers/{name}"
                )
            elif typ == "azure-native:cognitiveservices:Deployment":
                name = inputs["deploymentName"]
                resource_id = (
                    f"{_rg_id(group)}/providers/Microsoft.CognitiveServices/accounts/{inputs['accountName']}"
                    f"/deployments/{name}"
                )
            elif typ == "azure-native:authorization:RoleAssignment":
                name = inputs["roleAssignmentName"]
                resource_id = f"{inputs['scope']}/providers/Microsoft.Authorization/roleAssignments/{name}"
            elif typ == "azure-native:eventgrid:SystemTopicEventSubscription":
                name = inputs["eventSubscriptionName"]
                resource_id = (
                    f"{_rg_id(group)}/providers/Microsoft.EventGrid/systemTopics/{inputs['systemTopicName']}"
                    f"/eventSubscriptions/{name}"
                )
            if name is not None:
                outputs["name"] = name
            identity = inputs.get("identity")
            if isinstance(identity, dict) and isinstance(identity.get("userAssignedIdentities"), list):
                # ARM answers with a map: identity resource id -> {principalId, clientId}.
                outputs["identity"] = {
                    **identity,
                    "userAssignedIdentities": {
                        uami: {
                            "principalId": _stable_guid("principal", uami),
                            "clientId": _stable_guid("client", uami),
                        }
                        for uami in identity["userAssignedIdentities"]
                    },
                }
            # Computed outputs the program reads.
            if typ == "azure-native:managedidentity:UserAssignedIdentity":
                outputs["principalId"] = _stable_guid("principal", name)
                outputs["clientId"] = _stable_guid("client", name)
                outputs["tenantId"] = TENANT_ID
            elif typ == "azure-native:storage:StorageAccount":
                outputs["primaryEndpoints"] = {
                    service: f"https://{name}.{service}.core.windows.net/"
                    for service in ("blob", "queue", "table", "file", "dfs", "web")
                }
            elif typ == "azure-native:cognitiveservices:Account":
                subdomain = inputs.get("properties", {}).get("customSubDomainName", name)
                outputs["properties"] = {
                    **inputs.get("properties", {}),
                    "endpoint": f"https://{subdomain}.openai.azure.com/",
                }
            elif typ == "azure-native:web:WebApp":
                outputs["defaultHostName"] = f"{name}.azurewebsites.net"
            elif typ == "azure-native:eventgrid:Topic":
                outputs["endpoint"] = f"https://{name}.{inputs.get('location')}-1.eventgrid.azure.net/api/events"
            elif typ == "azure-native:applicationinsights:Component":
                ikey = _stable_guid("ikey", name)
                outputs["instrumentationKey"] = ikey
                outputs["connectionString"] = (
                    f"InstrumentationKey={ikey};"
                    "IngestionEndpoint=https://swedencentral-0.in.applicationinsights.azure.com/;"
                    f"ApplicationId={_stable_guid('appid', name)}"
                )
            elif typ == "azure-native:operationalinsights:Workspace":
                outputs["customerId"] = _stable_guid("workspace", name)
            secret_paths: list[str] = []
            resources.append(
                {
                    "type": typ,
                    "name": args.name,
                    "id": resource_id,
                    "inputs": _unwrap_secrets(inputs, "", secret_paths),
                    "secret_paths": secret_paths,
                    "custom": args.custom,
                }
            )
            return resource_id, outputs

        def call(self, args: pulumi.runtime.MockCallArgs):
            calls.append({"token": args.token, "args": dict(args.args)})
            if args.token == "azure-native:authorization:getClientConfig":
                return {
                    "clientId": _stable_guid("deployer-client"),
                    "objectId": DEPLOYER_OBJECT_ID,
                    "subscriptionId": SUBSCRIPTION_ID,
                    "tenantId": TENANT_ID,
                }, []
            if args.token == "azure-native:web:listWebAppHostKeys":
                return {
                    "masterKey": "mock-master-key",
                    "functionKeys": {"default": "mock-function-key"},
                    "systemKeys": {"blobs_extension": BLOBS_EXTENSION_KEY},
                }, []
            raise AssertionError(f"unexpected invoke {args.token}")

    dependencies: dict[str, list[str]] = {}  # "type name" -> URNs it depends on (depends_on + inputs)

    class RecordingMonitor(pulumi.runtime.mocks.MockMonitor):
        def RegisterResource(self, request):
            dependencies[f"{request.type} {request.name}"] = sorted(
                {
                    *request.dependencies,
                    *(u for deps in request.propertyDependencies.values() for u in deps.urns),
                }
            )
            return super().RegisterResource(request)

    mocks = Mocks()
    pulumi.runtime.set_mocks(
        mocks, project=spec["project"], stack=spec["stack"], preview=False, monitor=RecordingMonitor(mocks)
    )
    pulumi.runtime.set_all_config({f"{spec['project']}:{k}": v for k, v in spec["config"].items()})

    outputs: dict = {}
    error: str | None = None

    async def program() -> None:
        runpy.run_path(".", run_name="__main__")
        root = pulumi.runtime.get_root_resource()
        resolved = await pulumi.Output.from_input(dict(root.outputs)).future()
        outputs.update(resolved or {})

    try:
        _sync_await(run_pulumi_func(program))
    except Exception as exc:  # reported to the test with the message Pulumi would print
        import traceback

        error = f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}"

    Path(spec["out"]).write_text(
        json.dumps(
            {
                "error": error,
                "resources": resources,
                "calls": calls,
                "dependencies": dependencies,
                "outputs": outputs,
                "sys_path_before": path_before,
                "subscription_id": SUBSCRIPTION_ID,
                "blobs_extension_key": BLOBS_EXTENSION_KEY,
                "modules": sorted(m for m in sys.modules if m == "infra" or m.startswith("infra.")),
            },
            indent=1,
            default=str,
        )
    )


if __name__ == "__main__":
    main()
