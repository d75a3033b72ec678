"""The storage account: the drop zone and every pipeline container, plus the Functions host's own
storage and the Flex deployment-package container. Locked down: no public blob access, no shared keys
(Entra ID only), TLS 1.2, HTTPS only, blob versioning and soft delete, old versions expire."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
from pulumi_azure_native import storage

from shared.layout import ALL_CONTAINERS, SHARD_QUEUE

# Where the Flex Consumption plan keeps the app's deployment package.
DEPLOYMENT_CONTAINER = "app-package"


@dataclass
class Storage:
    """The account and its containers (by name), with the endpoints the app settings need."""

    account: storage.StorageAccount
    containers: dict[str, storage.BlobContainer]
    queues: dict[str, storage.Queue]
    blob_endpoint: pulumi.Output[str]  # https://<account>.blob.core.windows.net/ (trailing slash)
    queue_endpoint: pulumi.Output[str]

    def container_id(self, name: str) -> pulumi.Output[str]:
        """ARM id of one container: a valid, narrow role-assignment scope."""
        return self.containers[name].id

    @property
    def deployment_container_url(self) -> pulumi.Output[str]:
        """``<blob endpoint><container>``, the Flex deployment storage value."""
        return pulumi.Output.concat(self.blob_endpoint, DEPLOYMENT_CONTAINER)


def create_storage(
    *,
    account_name: pulumi.Input[str],
    resource_group_name: pulumi.Input[str],
    location: str,
    soft_delete_days: int,
    version_retention_days: int,
    parent: pulumi.Resource,
) -> Storage:
    """Create the account, its blob service settings, a lifecycle rule and the containers."""
    opts = pulumi.ResourceOptions(parent=parent)
    account = storage.StorageAccount(
        "storage",
        account_name=account_name,
        resource_group_name=resource_group_name,
        location=location,
        kind="StorageV2",
        sku={"name": "Standard_LRS"},
        access_tier="Hot",
        allow_blob_public_access=False,
        allow_shared_key_access=False,
        default_to_o_auth_authentication=True,
        allow_cross_tenant_replication=False,
        minimum_tls_version="TLS1_2",
        enable_https_traffic_only=True,
        public_network_access="Enabled",
        opts=opts,
    )
    child = pulumi.ResourceOptions(parent=account)
    blob_service = storage.BlobServiceProperties(
        "storage-blob-service",
        account_name=account.name,
        resource_group_name=resource_group_name,
        blob_services_name="default",
        is_versioning_enabled=True,
        delete_retention_policy={"enabled": True, "days": soft_delete_days},
        container_delete_retention_policy={"enabled": True, "days": soft_delete_days},
        opts=child,
    )
    # Runs are rewritten on every state change and versioning keeps each old copy: expire them.
    storage.ManagementPolicy(
        "storage-lifecycle",
        account_name=account.name,
        resource_group_name=resource_group_name,
        management_policy_name="default",
        policy={
            "rules": [
                {
                    "name": "expire-old-versions",
                    "enabled": True,
                    "type": "Lifecycle",
                    "definition": {
                        "filters": {"blob_types": ["blockBlob"]},
                        "actions": {
                            "version": {
                                "delete": {"days_after_creation_greater_than": version_retention_days}
                            }
                        },
                    },
                }
            ]
        },
        opts=pulumi.ResourceOptions(parent=account, depends_on=[blob_service]),
    )
    containers = {
        name: storage.BlobContainer(
            f"container-{name}",
            account_name=account.name,
            resource_group_name=resource_group_name,
            container_name=name,
            public_access="None",
            opts=pulumi.ResourceOptions(parent=account, depends_on=[blob_service]),
        )
        for name in (*ALL_CONTAINERS, DEPLOYMENT_CONTAINER)
    }
    # The fan-out's shard queue (convert_shard's trigger); its "<queue>-poison" queue is created by the
    # Functions host the first time a message fails maxDequeueCount times.
    queues = {
        SHARD_QUEUE: storage.Queue(
            f"queue-{SHARD_QUEUE}",
            account_name=account.name,
            resource_group_name=resource_group_name,
            queue_name=SHARD_QUEUE,
            opts=child,
        )
    }
    endpoints = account.primary_endpoints
    return Storage(
        account=account,
        containers=containers,
        queues=queues,
        blob_endpoint=endpoints.apply(lambda e: e.blob),
        queue_endpoint=endpoints.apply(lambda e: e.queue),
    )
