"""Injected faults are seen by the official SDKs and survived through their own retries."""

from __future__ import annotations

import time

import openai
import pytest

from local.emulator.admin import EmulatorAdmin, EmulatorAdminError
from local.emulator.clients import management_client, openai_client
from local.emulator.constants import ACCOUNT, BASE_DEPLOYMENT, RESOURCE_GROUP
from tests.fixtures.emulator import digit_messages

pytestmark = pytest.mark.emulator


@pytest.fixture
def server_and_admin(emulator_factory):
    server = emulator_factory()
    with EmulatorAdmin(server.url) as admin:
        yield server, admin


def test_429_with_retry_after_is_retried_by_the_openai_sdk(server_and_admin):
    server, admin = server_and_admin
    admin.inject(route="chat_completions", status=429, retry_after=0.3, count=2)
    client = openai_client(server.url, max_retries=2)
    started = time.monotonic()
    answer = client.chat.completions.create(model=BASE_DEPLOYMENT, messages=digit_messages(1), temperature=0)
    assert answer.choices[0].message.content
    assert time.monotonic() - started >= 0.6  # honoured Retry-After twice
    stats = admin.stats()
    assert stats.count("chat_completions") == 3 and stats.faults["chat_completions"] == 2


def test_more_faults_than_retries_surface_as_the_sdk_error(server_and_admin):
    server, admin = server_and_admin
    admin.inject(route="files_list", status=429, retry_after=0.1, count=3)
    client = openai_client(server.url, max_retries=2)
    with pytest.raises(openai.RateLimitError) as limited:
        client.files.list()
    assert limited.value.response.headers["retry-after"] == "0.1"
    assert admin.stats().count("files_list") == 3
    assert client.files.list().object == "list"  # faults used up


@pytest.mark.parametrize("status", [500, 503])
def test_server_errors_are_retried(server_and_admin, status):
    server, admin = server_and_admin
    admin.inject(route="files_create", status=status, retry_after=0.1, count=1)
    client = openai_client(server.url, max_retries=1)
    created = client.files.create(file=("b.jsonl", b"{}\n"), purpose="batch")
    assert created.id.startswith("file-")
    assert admin.stats().count("files_create") == 2
    assert len(client.files.list().data) == 1  # the failed attempt stored nothing


def test_slow_answers(server_and_admin):
    server, admin = server_and_admin
    admin.inject(route="chat_completions", delay_seconds=1.0, count=1)
    client = openai_client(server.url, max_retries=0)
    started = time.monotonic()
    client.chat.completions.create(model=BASE_DEPLOYMENT, messages=digit_messages(1))
    assert time.monotonic() - started >= 1.0
    with pytest.raises(openai.APITimeoutError):
        admin.inject(route="chat_completions", delay_seconds=2.0, count=1)
        openai_client(server.url, max_retries=0, timeout=0.5).chat.completions.create(
            model=BASE_DEPLOYMENT, messages=digit_messages(1)
        )


def test_management_client_retries_503(server_and_admin):
    server, admin = server_and_admin
    admin.inject(route="deployments_get", status=503, retry_after=0, count=1)
    mgmt = management_client(server.url, retry_backoff_factor=0.05)
    assert mgmt.deployments.get(RESOURCE_GROUP, ACCOUNT, BASE_DEPLOYMENT).name == BASE_DEPLOYMENT
    assert admin.stats().count("deployments_get") == 2


def test_every_route_and_until_reset(server_and_admin):
    server, admin = server_and_admin
    admin.inject(route="*", status=500, count=-1)
    client = openai_client(server.url, max_retries=0)
    with pytest.raises(openai.InternalServerError):
        client.fine_tuning.jobs.list()
    with pytest.raises(openai.InternalServerError):
        client.batches.list()
    assert admin.faults()["routes"][0]["remaining"] == -1
    admin.reset_faults()
    assert client.batches.list().object == "list"


def test_admin_rejects_bad_faults(server_and_admin):
    _, admin = server_and_admin
    with pytest.raises(EmulatorAdminError, match="unknown route"):
        admin.inject(route="no_such_route", status=429)
    with pytest.raises(EmulatorAdminError, match="status"):
        admin.inject(route="files_list", status=418)
    with pytest.raises(EmulatorAdminError, match="unknown fault kind"):
        admin.inject(kind="meteor_strike")
