"""infra/events.py: subject filters derived from blob-trigger paths, and the webhook address."""

from __future__ import annotations

import pytest

from infra.events import BLOB_TRIGGERS, subject_filter, subscription_name, webhook_url

PREFIX = "/blobServices/default/containers"


@pytest.mark.parametrize(
    ("path", "begins", "ends"),
    [
        ("datasets/{dataset}/_READY", f"{PREFIX}/datasets/blobs/", "/_READY"),
        ("datasets/{dataset}.zip", f"{PREFIX}/datasets/blobs/", ".zip"),
        ("training/{dataset}/{version}/manifest.json", f"{PREFIX}/training/blobs/", "/manifest.json"),
        ("inbox/fixed/{name}", f"{PREFIX}/inbox/blobs/fixed/", ""),
        ("inbox/exact.txt", f"{PREFIX}/inbox/blobs/exact.txt", "exact.txt"),
    ],
)
def test_subject_filter_is_the_tightest_prefix_and_suffix(path: str, begins: str, ends: str) -> None:
    rule = subject_filter(path)
    assert (rule.begins_with, rule.ends_with) == (begins, ends)


@pytest.mark.parametrize("path", ["no-container", "{container}/x", "/leading"])
def test_subject_filter_rejects_paths_without_a_container(path: str) -> None:
    with pytest.raises(ValueError, match="container/pattern"):
        subject_filter(path)


def test_webhook_and_subscription_names() -> None:
    assert webhook_url("app.azurewebsites.net", "dataset_ready", "k3y") == (
        "https://app.azurewebsites.net/runtime/webhooks/blobs"
        "?functionName=Host.Functions.dataset_ready&code=k3y"
    )
    names = [subscription_name(t.function_name) for t in BLOB_TRIGGERS]
    assert len(set(names)) == len(names) and all(n.replace("-", "").isalnum() for n in names), names
