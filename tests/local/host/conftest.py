"""Fixtures for the tests of the local functions host on the sample app."""

from __future__ import annotations

from pathlib import Path

import pytest

from local.host.host import LocalFunctionsHost
from tests.local.host.sample_host import SAMPLE_APP


@pytest.fixture
def calls_file(tmp_path: Path) -> Path:
    return tmp_path / "calls.jsonl"


@pytest.fixture
def make_host(azurite, fresh_container, calls_file):
    """``make_host(**kwargs)``: a host on the sample app with this test's container; stopped after the test."""
    hosts: list[LocalFunctionsHost] = []

    def make(
        app_root: Path = SAMPLE_APP, settings: dict[str, str | None] | None = None, **kwargs
    ) -> LocalFunctionsHost:
        base = {
            "AzureWebJobsStorage": azurite.connection_string,
            "SAMPLE_CONTAINER": fresh_container,
            "SAMPLE_CALLS_FILE": str(calls_file),
            "SAMPLE_SCHEDULE": "0 0 3 * * *",
        }
        kwargs.setdefault("retry_delay", 0)
        merged = {k: v for k, v in {**base, **(settings or {})}.items() if v is not None}  # None: leave unset
        host = LocalFunctionsHost(app_root, settings=merged, **kwargs)
        hosts.append(host)
        return host

    yield make
    for host in hosts:
        host.stop()
