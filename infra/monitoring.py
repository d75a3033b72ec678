"""Log Analytics + workspace-based Application Insights, both with local (key) auth disabled: the app
sends telemetry with its managed identity (Monitoring Metrics Publisher + the Entra auth string)."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
from pulumi_azure_native import applicationinsights, operationalinsights


@dataclass
class Monitoring:
    """The workspace and the Application Insights component."""

    workspace: operationalinsights.Workspace
    app_insights: applicationinsights.Component

    @property
    def connection_string(self) -> pulumi.Output[str]:
        """Application Insights connection string: an endpoint locator, no credential (local auth is off)."""
        return self.app_insights.connection_string


def create_monitoring(
    *,
    workspace_name: pulumi.Input[str],
    app_insights_name: pulumi.Input[str],
    resource_group_name: pulumi.Input[str],
    location: str,
    retention_days: int,
    daily_cap_gb: float,
    parent: pulumi.Resource,
) -> Monitoring:
    """Create the workspace (daily ingestion cap) and Application Insights on it."""
    opts = pulumi.ResourceOptions(parent=parent)
    workspace = operationalinsights.Workspace(
        "logs",
        workspace_name=workspace_name,
        resource_group_name=resource_group_name,
        location=location,
        sku={"name": "PerGB2018"},
        retention_in_days=retention_days,
        workspace_capping={"daily_quota_gb": daily_cap_gb},
        features={"disable_local_auth": True},
        opts=opts,
    )
    app_insights = applicationinsights.Component(
        "insights",
        resource_name_=app_insights_name,
        resource_group_name=resource_group_name,
        location=location,
        kind="web",
        application_type="web",
        workspace_resource_id=workspace.id,
        ingestion_mode="LogAnalytics",
        disable_local_auth=True,
        opts=opts,
    )
    return Monitoring(workspace=workspace, app_insights=app_insights)
