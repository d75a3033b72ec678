"""Event Grid: a system topic on the storage account and one WebHook subscription per blob trigger.

Flex Consumption only supports Event Grid-sourced blob triggers. The subscription endpoint is the blob
extension's webhook, which needs the app's ``blobs_extension`` system key - a key that exists only once
the code is published - and Event Grid validates the endpoint when the subscription is created. Hence
the documented second pass: ``eventGridSubscriptions`` stays false until ``infra/deploy.sh`` has
published the package, then it is switched on and ``pulumi up`` runs again.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
from pulumi_azure_native import eventgrid, web

from shared.layout import DATASET_ARCHIVE_PATH, DATASET_READY_PATH, TRAINING_MANIFEST_PATH

BLOB_CREATED = "Microsoft.Storage.BlobCreated"
BLOBS_EXTENSION_KEY = "blobs_extension"


@dataclass(frozen=True)
class BlobTrigger:
    """A blob-triggered function: its name and its ``container/pattern`` path (as in function_app.py)."""

    function_name: str
    path: str


# The blob triggers function_app.py declares (tests/infra checks this against the app itself).
BLOB_TRIGGERS = (
    BlobTrigger("dataset_ready", DATASET_READY_PATH),
    BlobTrigger("dataset_archive_ready", DATASET_ARCHIVE_PATH),
    BlobTrigger("training_ready", TRAINING_MANIFEST_PATH),
)


@dataclass(frozen=True)
class SubjectFilter:
    """Event Grid subject filter for blob events (subjects look like
    ``/blobServices/default/containers/<container>/blobs/<blob name>``)."""

    begins_with: str
    ends_with: str


def subject_filter(path: str) -> SubjectFilter:
    """The tightest begins/ends-with filter for a blob-trigger path such as ``datasets/{dataset}/_READY``:
    the container plus the literal text before the first ``{...}``, and the literal text after the last."""
    container, sep, blob_pattern = path.partition("/")
    if not sep or not container or "{" in container:
        raise ValueError(f"blob-trigger path {path!r} must be 'container/pattern'")
    first, last = blob_pattern.find("{"), blob_pattern.rfind("}")
    prefix = blob_pattern if first < 0 else blob_pattern[:first]
    suffix = "" if first < 0 else blob_pattern[last + 1 :]
    if first < 0:  # a fixed blob name: match it exactly
        suffix = blob_pattern
    return SubjectFilter(
        begins_with=f"/blobServices/default/containers/{container}/blobs/{prefix}",
        ends_with=suffix,
    )


def subscription_name(function_name: str) -> str:
    """Event subscription name for a function (3-64 letters, digits and hyphens)."""
    return function_name.replace("_", "-")


def webhook_url(host_name: str, function_name: str, key: str) -> str:
    """The blob extension's Event Grid webhook for one function."""
    return (
        f"https://{host_name}/runtime/webhooks/blobs?functionName=Host.Functions.{function_name}&code={key}"
    )


def create_system_topic(
    *,
    topic_name: pulumi.Input[str],
    resource_group_name: pulumi.Input[str],
    location: str,
    storage_account_id: pulumi.Input[str],
    parent: pulumi.Resource,
) -> eventgrid.SystemTopic:
    """The storage account's Event Grid system topic (created in phase one; costs nothing without events)."""
    return eventgrid.SystemTopic(
        "storage-events",
        system_topic_name=topic_name,
        resource_group_name=resource_group_name,
        location=location,
        source=storage_account_id,
        topic_type="Microsoft.Storage.StorageAccounts",
        opts=pulumi.ResourceOptions(parent=parent),
    )


def blobs_extension_key(
    app_name: pulumi.Input[str], resource_group_name: pulumi.Input[str]
) -> pulumi.Output[str]:
    """The app's ``blobs_extension`` system key, read at deploy time and kept secret in the state."""

    def pick(keys: web.ListWebAppHostKeysResult) -> str:
        key = (keys.system_keys or {}).get(BLOBS_EXTENSION_KEY)
        if not key:
            raise RuntimeError(
                f"the function app has no '{BLOBS_EXTENSION_KEY}' system key yet: publish the code first "
                "(infra/deploy.sh does), or set visiontune:eventGridSubscriptions false"
            )
        return key

    keys = web.list_web_app_host_keys_output(name=app_name, resource_group_name=resource_group_name)
    return pulumi.Output.secret(keys.apply(pick))


def create_blob_subscriptions(
    *,
    topic: eventgrid.SystemTopic,
    resource_group_name: pulumi.Input[str],
    app_host_name: pulumi.Input[str],
    key: pulumi.Output[str],
    parent: pulumi.Resource,
) -> list[eventgrid.SystemTopicEventSubscription]:
    """One WebHook subscription per blob trigger, filtered to BlobCreated events on its path."""
    subscriptions = []
    for trigger in BLOB_TRIGGERS:
        subject = subject_filter(trigger.path)
        endpoint = pulumi.Output.all(app_host_name, key).apply(
            lambda args, fn=trigger.function_name: webhook_url(args[0], fn, args[1])
        )
        subscriptions.append(
            eventgrid.SystemTopicEventSubscription(
                f"events-{subscription_name(trigger.function_name)}",
                event_subscription_name=subscription_name(trigger.function_name),
                system_topic_name=topic.name,
                resource_group_name=resource_group_name,
                destination={
                    "endpoint_type": "WebHook",
                    "endpoint_url": pulumi.Output.secret(endpoint),
                    "max_events_per_batch": 1,
                    "preferred_batch_size_in_kilobytes": 64,
                },
                filter={
                    "included_event_types": [BLOB_CREATED],
                    "subject_begins_with": subject.begins_with,
                    "subject_ends_with": subject.ends_with,
                    "is_subject_case_sensitive": True,
                },
                event_delivery_schema="EventGridSchema",
                # Event Grid's own maximum: 30 attempts over 24 hours (handlers are idempotent).
                retry_policy={"max_delivery_attempts": 30, "event_time_to_live_in_minutes": 1440},
                opts=pulumi.ResourceOptions(parent=topic),
            )
        )
    return subscriptions
