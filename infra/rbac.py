"""Role assignments: named built-in roles, each assignment scoped to exactly the one resource it needs.

The role-assignment GUID is derived from (scope, role, principal), so re-running ``pulumi up`` or
recreating the stack addresses the same assignment instead of colliding with a leftover one.
"""

from __future__ import annotations

import uuid
from enum import Enum

import pulumi
from pulumi_azure_native import authorization


class Role(Enum):
    """Built-in Azure role definition ids (the same in every tenant)."""

    STORAGE_BLOB_DATA_OWNER = "b7e6dc6d-f1e8-4753-8033-0f276bb0955b"
    STORAGE_BLOB_DATA_CONTRIBUTOR = "ba92f5b4-2d11-453d-a403-e96b0029c9fe"
    STORAGE_BLOB_DATA_READER = "2a2b9908-6ea1-4ae2-8e65-a410df84e7d1"
    STORAGE_QUEUE_DATA_CONTRIBUTOR = "974c5e8b-45b9-4653-ba55-5f855dd0fb88"
    COGNITIVE_SERVICES_OPENAI_CONTRIBUTOR = "a001fd3d-188f-4b5d-821b-7da978bf7442"
    MONITORING_METRICS_PUBLISHER = "3913510d-42f4-4e42-8a64-420c390055eb"
    # Microsoft Learn, "Azure built-in roles" (Integration): EventGrid Data Sender.
    EVENTGRID_DATA_SENDER = "d5a91429-5739-47e2-a06b-3470a27159e7"


_ASSIGNMENT_NAMESPACE = uuid.UUID("6f1d2d8e-3c1b-4f57-9a8e-2f0c9f3a7b11")


def role_definition_id(subscription_id: str, role: Role) -> str:
    """The subscription-scoped ARM id of a built-in role definition."""
    return f"/subscriptions/{subscription_id}/providers/Microsoft.Authorization/roleDefinitions/{role.value}"


def assignment_guid(scope: str, role: Role, principal_id: str) -> str:
    """Deterministic role-assignment name for (scope, role, principal)."""
    return str(uuid.uuid5(_ASSIGNMENT_NAMESPACE, f"{scope.lower()}|{role.value}|{principal_id.lower()}"))


def assign_role(
    name: str,
    *,
    role: Role,
    principal_id: pulumi.Input[str],
    scope: pulumi.Input[str],
    subscription_id: pulumi.Input[str],
    principal_type: str = "ServicePrincipal",
    parent: pulumi.Resource,
) -> authorization.RoleAssignment:
    """Grant ``role`` to ``principal_id`` on exactly ``scope`` (one resource's ARM id).

    ``principal_type`` must be given for a managed identity (``ServicePrincipal``): without it a freshly
    created identity may not have replicated yet and the assignment fails with PrincipalNotFound.
    """
    return authorization.RoleAssignment(
        name,
        scope=scope,
        principal_id=principal_id,
        principal_type=principal_type,
        role_definition_id=pulumi.Output.from_input(subscription_id).apply(
            lambda sub: role_definition_id(sub, role)
        ),
        role_assignment_name=pulumi.Output.all(scope, principal_id).apply(
            lambda args: assignment_guid(args[0], role, args[1])
        ),
        description=f"visiontune: {role.name.lower()}",
        opts=pulumi.ResourceOptions(parent=parent),
    )
