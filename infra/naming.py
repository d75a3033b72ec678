"""Azure resource names. Storage accounts, Azure OpenAI subdomains and function apps need globally unique
names, so they carry a short suffix derived from the subscription and resource group: stable across
``pulumi up`` runs, different for every subscription/stack, no random state to lose."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass


@dataclass(frozen=True)
class ResourceNames:
    """Names of the resources ``VisionTune`` creates."""

    storage_account: str
    openai_account: str
    function_app: str
    plan: str
    identity: str
    log_workspace: str
    app_insights: str
    system_topic: str
    events_topic: str
    action_group: str
    alert_stem: str


def unique_suffix(subscription_id: str, resource_group: str, length: int = 6) -> str:
    """A short lowercase hex digest of the subscription id and resource group name."""
    digest = hashlib.sha256(f"{subscription_id.lower()}/{resource_group.lower()}".encode()).hexdigest()
    return digest[:length]


def resource_names(prefix: str, stack: str, subscription_id: str, resource_group: str) -> ResourceNames:
    """Every resource name for one stack; ``ValueError`` if prefix and stack cannot make valid names."""
    suffix = unique_suffix(subscription_id, resource_group)
    base = re.sub(r"[^a-z0-9-]", "-", f"{prefix}-{stack}".lower()).strip("-")
    base = re.sub(r"-{2,}", "-", base)
    if not base or not base[0].isalpha():
        raise ValueError(f"cannot derive resource names from prefix {prefix!r} and stack {stack!r}")
    compact = base.replace("-", "")
    # Storage: 3-24 lowercase letters and digits. Function app and OpenAI subdomain: <= 60 / 64, hyphens ok.
    storage = compact[: 24 - len(suffix)] + suffix
    stem = base[:40].rstrip("-")
    return ResourceNames(
        storage_account=storage,
        openai_account=f"{stem}-{suffix}-aoai",
        function_app=f"{stem}-{suffix}-func",
        plan=f"{stem}-plan",
        identity=f"{stem}-app-identity",
        log_workspace=f"{stem}-logs",
        app_insights=f"{stem}-insights",
        system_topic=f"{stem}-storage-events",
        events_topic=f"{stem[:36].rstrip('-')}-{suffix}-events",  # Event Grid topics: 3-50 characters
        action_group=f"{stem}-alerts",
        alert_stem=stem,
    )
