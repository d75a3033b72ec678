"""``VisionTune``: the one component that composes every concern into a working, locked-down stack."""

from __future__ import annotations

import pulumi
from pulumi_azure_native import authorization, managedidentity, resources

from infra import events, notifications, rbac
from infra.config import StackConfig
from infra.functionapp import build_app_settings, create_function_app
from infra.monitoring import create_monitoring
from infra.naming import ResourceNames, resource_names
from infra.openai_account import create_openai
from infra.storage import create_storage
from shared.layout import DATASETS_CONTAINER, REPORTS_CONTAINER, RUNS_CONTAINER


class VisionTune(pulumi.ComponentResource):
    """Resource group, storage, Azure OpenAI, monitoring, the Flex function app, its roles and (phase
    two) the Event Grid subscriptions. Public attributes are the values the stack exports."""

    def __init__(self, name: str, config: StackConfig, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("visiontune:index:VisionTune", name, None, opts)
        client = authorization.get_client_config_output()
        subscription_id = client.subscription_id
        names: pulumi.Output[ResourceNames] = subscription_id.apply(
            lambda sub: resource_names(config.name_prefix, config.stack, sub, config.resource_group_name)
        )

        group = resources.ResourceGroup(
            "resource-group",
            resource_group_name=config.resource_group_name,
            location=config.location,
            opts=pulumi.ResourceOptions(parent=self),
        )
        rg_name = group.name
        identity = managedidentity.UserAssignedIdentity(
            "app-identity",
            resource_name_=names.identity,
            resource_group_name=rg_name,
            location=config.location,
            opts=pulumi.ResourceOptions(parent=self),
        )
        data = create_storage(
            account_name=names.storage_account,
            resource_group_name=rg_name,
            location=config.location,
            soft_delete_days=config.soft_delete_days,
            version_retention_days=config.version_retention_days,
            parent=self,
        )
        monitoring = create_monitoring(
            workspace_name=names.log_workspace,
            app_insights_name=names.app_insights,
            resource_group_name=rg_name,
            location=config.location,
            retention_days=config.log_retention_days,
            daily_cap_gb=config.log_daily_cap_gb,
            parent=self,
        )
        ai = create_openai(
            account_name=names.openai_account,
            resource_group_name=rg_name,
            location=config.openai_location,
            public_network_access=config.openai_public_network_access,
            model_name=config.base_model_name,
            model_version=config.base_model_version,
            base_deployment_name=config.base_deployment_name,
            base_deployment_sku=config.base_deployment_sku,
            base_deployment_capacity=config.base_deployment_capacity,
            batch_deployment_name=config.batch_deployment,
            batch_deployment_capacity=config.batch_deployment_capacity,
            parent=self,
        )

        events_topic = notifications.create_events_topic(
            topic_name=names.events_topic,
            resource_group_name=rg_name,
            location=config.location,
            parent=self,
        )

        # Least privilege for the app's identity: each role on the one resource that needs it.
        app_principal = identity.principal_id
        grants = [
            ("app-blob-owner-on-storage", rbac.Role.STORAGE_BLOB_DATA_OWNER, data.account.id),
            ("app-queue-contributor-on-storage", rbac.Role.STORAGE_QUEUE_DATA_CONTRIBUTOR, data.account.id),
            (
                "app-openai-contributor-on-openai",
                rbac.Role.COGNITIVE_SERVICES_OPENAI_CONTRIBUTOR,
                ai.account.id,
            ),
            (
                "app-metrics-publisher-on-insights",
                rbac.Role.MONITORING_METRICS_PUBLISHER,
                monitoring.app_insights.id,
            ),
            ("app-eventgrid-sender-on-topic", rbac.Role.EVENTGRID_DATA_SENDER, events_topic.id),
        ]
        app_roles = [
            rbac.assign_role(
                logical,
                role=role,
                principal_id=app_principal,
                scope=scope,
                subscription_id=subscription_id,
                parent=self,
            )
            for logical, role, scope in grants
        ]
        # People / CI allowed to push datasets (write: drop zone only) and follow them (read: runs, reports).
        for index, principal in enumerate(config.drop_zone_principals):
            for logical, role, container in (
                (f"drop-zone-writer-{index}", rbac.Role.STORAGE_BLOB_DATA_CONTRIBUTOR, DATASETS_CONTAINER),
                (f"runs-reader-{index}", rbac.Role.STORAGE_BLOB_DATA_READER, RUNS_CONTAINER),
                (f"reports-reader-{index}", rbac.Role.STORAGE_BLOB_DATA_READER, REPORTS_CONTAINER),
            ):
                rbac.assign_role(
                    logical,
                    role=role,
                    principal_id=principal.object_id,
                    principal_type=principal.principal_type,
                    scope=data.container_id(container),
                    subscription_id=subscription_id,
                    parent=self,
                )

        settings = build_app_settings(
            blob_endpoint=data.blob_endpoint,
            queue_endpoint=data.queue_endpoint,
            identity_client_id=identity.client_id,
            openai_endpoint=ai.endpoint,
            subscription_id=subscription_id,
            resource_group_name=rg_name,
            openai_account_name=ai.account.name,
            base_model=config.base_model,
            base_deployment=ai.base_deployment.name,
            batch_deployment=ai.batch_deployment.name if ai.batch_deployment else None,
            app_insights_connection_string=monitoring.connection_string,
            events_topic_endpoint=events_topic.endpoint,
            tunables=config.app_tunables,
            instance_memory_mb=config.instance_memory_mb,
        )
        function_app = create_function_app(
            app_name=names.function_app,
            plan_name=names.plan,
            resource_group_name=rg_name,
            location=config.location,
            identity_id=identity.id,
            deployment_container_url=data.deployment_container_url,
            instance_memory_mb=config.instance_memory_mb,
            maximum_instance_count=config.maximum_instance_count,
            app_settings=settings,
            depends_on=[*app_roles, *data.containers.values()],
            parent=self,
        )

        self.notifications = notifications.create_notifications(
            topic=events_topic,
            action_group_name=names.action_group,
            resource_group_name=rg_name,
            location=config.location,
            alert_emails=config.alert_emails,
            app_insights_id=monitoring.app_insights.id,
            storage_account_id=data.account.id,
            name_stem=names.alert_stem,
            parent=self,
        )

        topic = events.create_system_topic(
            topic_name=names.system_topic,
            resource_group_name=rg_name,
            location=config.location,
            storage_account_id=data.account.id,
            parent=self,
        )
        self.event_subscriptions = []
        if config.event_grid_subscriptions:
            key = events.blobs_extension_key(function_app.app.name, rg_name)
            self.event_subscriptions = events.create_blob_subscriptions(
                topic=topic,
                resource_group_name=rg_name,
                app_host_name=function_app.default_host_name,
                key=key,
                parent=self,
            )

        host = function_app.default_host_name
        account_name = data.account.name
        self.outputs: dict[str, pulumi.Input[object]] = {
            "resourceGroup": rg_name,
            "storageAccount": account_name,
            "dropZoneUrl": pulumi.Output.concat(data.blob_endpoint, DATASETS_CONTAINER),
            "functionAppName": function_app.app.name,
            "functionAppUrl": pulumi.Output.concat("https://", host),
            "statusUrl": pulumi.Output.concat("https://", host, "/api/status"),
            "openaiAccount": ai.account.name,
            "openaiEndpoint": ai.endpoint,
            "baseDeployment": ai.base_deployment.name,
            "batchDeployment": ai.batch_deployment.name if ai.batch_deployment else None,
            "baseModel": config.base_model,
            "appIdentityClientId": identity.client_id,
            "eventGridSubscriptions": config.event_grid_subscriptions,
            "eventsTopicEndpoint": events_topic.endpoint,
            "eventsTopicId": events_topic.id,
            "uploadCommand": account_name.apply(upload_command),
            # `pulumi stack output cliSettings --json > azure.settings.json`: the CLI against Azure.
            "cliSettings": pulumi.Output.all(data.blob_endpoint, data.queue_endpoint).apply(
                lambda ends: {
                    "IsEncrypted": False,
                    "Values": {
                        "AzureWebJobsStorage__blobServiceUri": ends[0].rstrip("/"),
                        "AzureWebJobsStorage__queueServiceUri": ends[1].rstrip("/"),
                    },
                }
            ),
        }
        self.register_outputs(self.outputs)


def upload_command(account_name: str) -> str:
    """An example command that pushes a dataset folder and then its ``_READY`` marker (Entra ID auth)."""
    return (
        f"az storage blob upload-batch --auth-mode login --account-name {account_name} "
        f"--destination {DATASETS_CONTAINER} --destination-path <dataset> --source ./<dataset-folder> && "
        f"az storage blob upload --auth-mode login --account-name {account_name} "
        f"--container-name {DATASETS_CONTAINER} --name <dataset>/_READY --data '{{}}' --overwrite"
    )
