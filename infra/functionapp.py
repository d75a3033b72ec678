"""The function app on the Flex Consumption plan (FC1, Linux, Python 3.11) with one user-assigned
managed identity for everything: storage (host + triggers + deployment package), Azure OpenAI and
Application Insights. No keys, no connection strings with secrets, no basic-auth publishing."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import pulumi
from pulumi_azure_native import web

from shared.settings import Settings
from shared.telemetry import DISABLED_INSTRUMENTATIONS

PYTHON_VERSION = "3.11"
# The connection name every blob trigger in function_app.py uses.
STORAGE_CONNECTION = "AzureWebJobsStorage"
# Settings the Functions host reads that the app's Settings object does not.
HOST_ONLY_SETTINGS = (
    f"{STORAGE_CONNECTION}__credential",
    f"{STORAGE_CONNECTION}__clientId",
    "APPLICATIONINSIGHTS_CONNECTION_STRING",
    "APPLICATIONINSIGHTS_AUTHENTICATION_STRING",
    "PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY",
    "OTEL_PYTHON_DISABLED_INSTRUMENTATIONS",
)


@dataclass
class FunctionApp:
    """The plan and the app, plus its public host name."""

    plan: web.AppServicePlan
    app: web.WebApp
    default_host_name: pulumi.Output[str]


def _env(field: str) -> str:
    return Settings.environment_name(field)


def build_app_settings(
    *,
    blob_endpoint: pulumi.Input[str],
    queue_endpoint: pulumi.Input[str],
    identity_client_id: pulumi.Input[str],
    openai_endpoint: pulumi.Input[str],
    subscription_id: pulumi.Input[str],
    resource_group_name: pulumi.Input[str],
    openai_account_name: pulumi.Input[str],
    base_model: str,
    base_deployment: pulumi.Input[str],
    batch_deployment: pulumi.Input[str] | None,
    app_insights_connection_string: pulumi.Input[str],
    events_topic_endpoint: pulumi.Input[str],
    tunables: Mapping[str, str],
    instance_memory_mb: int,
) -> dict[str, pulumi.Input[str]]:
    """Every app setting by name: what ``shared.settings.Settings`` reads (minus local-only ones) plus
    ``HOST_ONLY_SETTINGS``. Identity-based storage (service URIs + managed identity), Entra ID for
    Azure OpenAI and Application Insights: no value is a credential."""
    strip = lambda url: pulumi.Output.from_input(url).apply(lambda u: u.rstrip("/"))  # noqa: E731
    settings: dict[str, pulumi.Input[str]] = dict(tunables)
    settings.update(
        {
            _env("storage_blob_service_uri"): strip(blob_endpoint),
            _env("storage_queue_service_uri"): strip(queue_endpoint),
            _env("azure_client_id"): identity_client_id,
            _env("openai_endpoint"): openai_endpoint,
            _env("subscription_id"): subscription_id,
            _env("resource_group"): resource_group_name,
            _env("openai_account"): openai_account_name,
            _env("base_model"): base_model,
            _env("base_deployment"): base_deployment,
            _env("instance_memory_mb"): str(instance_memory_mb),
            _env("events_topic_endpoint"): events_topic_endpoint,
            f"{STORAGE_CONNECTION}__credential": "managedidentity",
            f"{STORAGE_CONNECTION}__clientId": identity_client_id,
            "APPLICATIONINSIGHTS_CONNECTION_STRING": app_insights_connection_string,
            "APPLICATIONINSIGHTS_AUTHENTICATION_STRING": pulumi.Output.concat(
                "ClientId=", identity_client_id, ";Authorization=AAD"
            ),
            # With host.json "telemetryMode": "OpenTelemetry": the Python worker configures the Azure
            # Monitor OpenTelemetry distro and sends the app's logs itself, with their custom dimensions
            # (Microsoft Learn, "Use OpenTelemetry with Azure Functions", Python). Its exporter reads the
            # authentication string above, so ingestion stays keyless (shared/telemetry.py).
            "PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY": "true",
            # ...but not a span per HTTP call (a `dependencies` row per image of a drop).
            "OTEL_PYTHON_DISABLED_INSTRUMENTATIONS": ",".join(DISABLED_INSTRUMENTATIONS),
        }
    )
    if batch_deployment is not None:
        settings[_env("batch_deployment")] = batch_deployment
    return settings


def create_function_app(
    *,
    app_name: pulumi.Input[str],
    plan_name: pulumi.Input[str],
    resource_group_name: pulumi.Input[str],
    location: str,
    identity_id: pulumi.Input[str],
    deployment_container_url: pulumi.Input[str],
    instance_memory_mb: int,
    maximum_instance_count: int,
    app_settings: Mapping[str, pulumi.Input[str]],
    depends_on: list[pulumi.Resource],
    parent: pulumi.Resource,
) -> FunctionApp:
    """Create the FC1 plan and the app. ``depends_on``: the role assignments the host needs at start-up."""
    plan = web.AppServicePlan(
        "plan",
        name=plan_name,
        resource_group_name=resource_group_name,
        location=location,
        kind="functionapp",
        reserved=True,  # Linux
        sku={"name": "FC1", "tier": "FlexConsumption"},
        opts=pulumi.ResourceOptions(parent=parent),
    )
    app = web.WebApp(
        "app",
        name=app_name,
        resource_group_name=resource_group_name,
        location=location,
        kind="functionapp,linux",
        server_farm_id=plan.id,
        https_only=True,
        identity={"type": "UserAssigned", "user_assigned_identities": [identity_id]},
        function_app_config={
            "deployment": {
                "storage": {
                    "type": "blobContainer",
                    "value": deployment_container_url,
                    "authentication": {
                        "type": "UserAssignedIdentity",
                        "user_assigned_identity_resource_id": identity_id,
                    },
                }
            },
            "runtime": {"name": "python", "version": PYTHON_VERSION},
            "scale_and_concurrency": {
                "instance_memory_mb": instance_memory_mb,
                "maximum_instance_count": maximum_instance_count,
            },
        },
        # Flex ignores FUNCTIONS_WORKER_RUNTIME / WEBSITE_RUN_FROM_PACKAGE / ftpsState: none are set.
        site_config={
            "min_tls_version": "1.2",
            "scm_min_tls_version": "1.2",
            "http20_enabled": True,
            "app_settings": [{"name": name, "value": app_settings[name]} for name in sorted(app_settings)],
        },
        opts=pulumi.ResourceOptions(parent=parent, depends_on=depends_on),
    )
    # No basic-auth (username/password) publishing: the az CLI deploys to Flex with an Entra token.
    for kind, resource in (("scm", web.WebAppScmAllowed), ("ftp", web.WebAppFtpAllowed)):
        resource(
            f"app-{kind}-basic-auth",
            name=app.name,
            resource_group_name=resource_group_name,
            allow=False,
            opts=pulumi.ResourceOptions(parent=app),
        )
    return FunctionApp(plan=plan, app=app, default_host_name=app.default_host_name)
