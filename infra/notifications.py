"""How people hear about the pipeline: the Event Grid custom topic the app publishes its CloudEvents to
(shared/events.py), an action group, and Azure Monitor alert rules.

- The topic takes CloudEvents 1.0 only (``inputSchema: CloudEventSchemaV1_0``), with local (key) auth
  disabled: the app sends with its managed identity, which gets "EventGrid Data Sender" on the topic.
  Route the events to e-mail, Teams or a webhook with event subscriptions on it (README, "Events").
- The action group's e-mail receivers come from ``visiontune:alertEmails`` (none by default: the rules
  then still fire and show in the portal, they notify nobody).
- Alert rules, each with the action group: failed function executions (Application Insights requests
  with success false), messages in the poison queues (the storage account's queue message
  count: an hourly capacity metric with no per-queue dimension, so the fan-out's ``convert-shards`` queue,
  which holds messages while a large drop converts, can raise it too), a failed run and a production regression (the warning
  lines ``shared/events.py`` logs for those events, ``EVENT_LOG_PREFIX``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
from pulumi_azure_native import eventgrid, monitor

from shared.events import EVENT_LOG_PREFIX, EVENT_TYPE_PREFIX, REGRESSION_EVENT, STATE_EVENTS

ACTION_GROUP_SHORT_NAME = "visiontune"  # at most 12 characters (Azure Monitor action groups)
# Log alerts: evaluate every 5 minutes over the last 15 (Microsoft Learn, "Create or edit a log search
# alert rule": frequency 1 min - 1 day, window at least the frequency).
LOG_ALERT_FREQUENCY = "PT5M"
LOG_ALERT_WINDOW = "PT15M"
# Storage capacity metrics such as QueueMessageCount are emitted hourly (Microsoft Learn, "Azure Queue
# Storage monitoring data reference"), so a shorter window would see no data.
QUEUE_ALERT_FREQUENCY = "PT1H"
QUEUE_ALERT_WINDOW = "PT1H"


@dataclass
class Notifications:
    topic: eventgrid.Topic
    action_group: monitor.ActionGroup
    alerts: list[pulumi.CustomResource]

    @property
    def topic_endpoint(self) -> pulumi.Output[str]:
        return self.topic.endpoint


def create_events_topic(
    *, topic_name: pulumi.Input[str], resource_group_name: pulumi.Input[str], location: str, parent: pulumi.Resource
) -> eventgrid.Topic:
    """The custom topic for the app's CloudEvents (Entra ID only)."""
    return eventgrid.Topic(
        "events-topic",
        topic_name=topic_name,
        resource_group_name=resource_group_name,
        location=location,
        input_schema="CloudEventSchemaV1_0",
        disable_local_auth=True,
        minimum_tls_version_allowed="1.2",
        public_network_access="Enabled",
        opts=pulumi.ResourceOptions(parent=parent),
    )


def event_log_query(event_type: str) -> str:
    """The App Insights query that finds the log line ``shared/events.py`` writes for ``event_type``."""
    return (
        f'traces | where message startswith "{EVENT_LOG_PREFIX}{EVENT_TYPE_PREFIX}{event_type} "'
        " | summarize events = count()"
    )


def create_notifications(
    *,
    topic: eventgrid.Topic,
    action_group_name: pulumi.Input[str],
    resource_group_name: pulumi.Input[str],
    location: str,
    alert_emails: Sequence[str],
    app_insights_id: pulumi.Input[str],
    storage_account_id: pulumi.Input[str],
    name_stem: pulumi.Input[str],
    parent: pulumi.Resource,
) -> Notifications:
    """The action group and the four alert rules."""
    opts = pulumi.ResourceOptions(parent=parent)
    group = monitor.ActionGroup(
        "alerts-action-group",
        action_group_name=action_group_name,
        resource_group_name=resource_group_name,
        location="Global",
        group_short_name=ACTION_GROUP_SHORT_NAME,
        enabled=True,
        email_receivers=[
            {"name": f"email-{index}", "email_address": address, "use_common_alert_schema": True}
            for index, address in enumerate(alert_emails)
        ],
        opts=opts,
    )
    actions = {"action_groups": [group.id]}
    stem = pulumi.Output.from_input(name_stem)

    def log_alert(logical: str, suffix: str, description: str, query: str, severity: int) -> monitor.ScheduledQueryRule:
        return monitor.ScheduledQueryRule(
            logical,
            rule_name=stem.apply(lambda s: f"{s}-{suffix}"),
            resource_group_name=resource_group_name,
            location=location,
            description=description,
            display_name=description,
            enabled=True,
            severity=severity,
            scopes=[app_insights_id],
            evaluation_frequency=LOG_ALERT_FREQUENCY,
            window_size=LOG_ALERT_WINDOW,
            criteria={
                "all_of": [
                    {
                        "query": query,
                        "time_aggregation": "Total",
                        "metric_measure_column": "events",
                        "operator": "GreaterThan",
                        "threshold": 0,
                        "failing_periods": {"number_of_evaluation_periods": 1, "min_failing_periods_to_alert": 1},
                    }
                ]
            },
            actions=actions,
            auto_mitigate=False,
            opts=opts,
        )

    alerts: list[pulumi.CustomResource] = [
        log_alert(
            "alert-failed-executions",
            "failed-executions",
            "visiontune: a function execution failed",
            "requests | where success == false | summarize events = count()",
            severity=2,
        ),
        log_alert(
            "alert-failed-run",
            "failed-run",
            "visiontune: a run failed",
            event_log_query(STATE_EVENTS["failed"]),
            severity=2,
        ),
        log_alert(
            "alert-regression",
            "regression",
            "visiontune: production accuracy regressed",
            event_log_query(REGRESSION_EVENT),
            severity=1,
        ),
        monitor.MetricAlert(
            "alert-poison-queue",
            rule_name=stem.apply(lambda s: f"{s}-poison-queue"),
            resource_group_name=resource_group_name,
            location="global",
            description="visiontune: messages in the blob-trigger poison queue (a blob failed 5 times)",
            enabled=True,
            severity=2,
            scopes=[pulumi.Output.concat(storage_account_id, "/queueServices/default")],
            evaluation_frequency=QUEUE_ALERT_FREQUENCY,
            window_size=QUEUE_ALERT_WINDOW,
            criteria=monitor.MetricAlertSingleResourceMultipleMetricCriteriaArgs(
                odata_type="Microsoft.Azure.Monitor.SingleResourceMultipleMetricCriteria",
                all_of=[
                    monitor.MetricCriteriaArgs(
                        criterion_type="StaticThresholdCriterion",
                        name="poison-messages",
                        metric_namespace="Microsoft.Storage/storageAccounts/queueServices",
                        metric_name="QueueMessageCount",
                        operator="GreaterThan",
                        threshold=0,
                        time_aggregation="Average",
                    )
                ],
            ),
            actions=[{"action_group_id": group.id}],
            auto_mitigate=True,
            opts=opts,
        ),
    ]
    return Notifications(topic=topic, action_group=group, alerts=alerts)
