"""The Azure OpenAI account (kind ``OpenAI``, Entra ID only) and the base-model deployments: one
real-time deployment and an optional ``GlobalBatch`` one for half-price batch evaluation.

(Named ``openai_account`` so it never shadows the ``openai`` package when ``infra/`` is on ``sys.path``.)
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
from pulumi_azure_native import cognitiveservices


@dataclass
class OpenAI:
    """The account, its endpoint and the base-model deployments (batch may be None)."""

    account: cognitiveservices.Account
    endpoint: pulumi.Output[str]
    base_deployment: cognitiveservices.Deployment
    batch_deployment: cognitiveservices.Deployment | None


def create_openai(
    *,
    account_name: pulumi.Input[str],
    resource_group_name: pulumi.Input[str],
    location: str,
    public_network_access: str,
    model_name: str,
    model_version: str,
    base_deployment_name: str,
    base_deployment_sku: str,
    base_deployment_capacity: int,
    batch_deployment_name: str | None,
    batch_deployment_capacity: int,
    parent: pulumi.Resource,
) -> OpenAI:
    """Create the account and its deployments, one after another (Azure rejects concurrent deployment
    operations on one account, hence the ``depends_on`` chain)."""
    account = cognitiveservices.Account(
        "openai",
        account_name=account_name,
        resource_group_name=resource_group_name,
        location=location,
        kind="OpenAI",
        sku={"name": "S0"},
        identity={"type": "SystemAssigned"},
        properties={
            # A custom subdomain is required for Entra ID tokens; keys are disabled.
            "custom_sub_domain_name": account_name,
            "disable_local_auth": True,
            "public_network_access": public_network_access,
        },
        opts=pulumi.ResourceOptions(parent=parent),
    )
    model = {"format": "OpenAI", "name": model_name, "version": model_version}
    base = cognitiveservices.Deployment(
        "openai-base-deployment",
        account_name=account.name,
        resource_group_name=resource_group_name,
        deployment_name=base_deployment_name,
        sku={"name": base_deployment_sku, "capacity": base_deployment_capacity},
        # Pinned: evaluations compare models over time, the base must not change under them.
        properties={"model": model, "version_upgrade_option": "NoAutoUpgrade"},
        opts=pulumi.ResourceOptions(parent=account),
    )
    batch = None
    if batch_deployment_name:
        batch = cognitiveservices.Deployment(
            "openai-batch-deployment",
            account_name=account.name,
            resource_group_name=resource_group_name,
            deployment_name=batch_deployment_name,
            sku={"name": "GlobalBatch", "capacity": batch_deployment_capacity},
            properties={"model": model, "version_upgrade_option": "NoAutoUpgrade"},
            opts=pulumi.ResourceOptions(parent=account, depends_on=[base]),
        )
    return OpenAI(
        account=account,
        endpoint=account.properties.apply(lambda p: p.endpoint),
        base_deployment=base,
        batch_deployment=batch,
    )
