"""ARM deployments through azure-mgmt-cognitiveservices (LRO pollers) and the rules Azure enforces."""

from __future__ import annotations

import openai
import pytest
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError

from local.emulator.admin import EmulatorAdmin
from local.emulator.clients import management_client, openai_client
from local.emulator.constants import (
    ACCOUNT,
    BASE_DEPLOYMENT,
    BASE_MODEL,
    BATCH_DEPLOYMENT,
    RESOURCE_GROUP,
)
from tests.fixtures.emulator import (
    deploy_model,
    deployment_of,
    digit_messages,
    digit_split,
    digits_examples,
    fine_tune,
    to_jsonl,
)

pytestmark = pytest.mark.emulator


def test_default_deployments_exist(emulator):
    mgmt = management_client(emulator.url)
    deployments = {d.name: d for d in mgmt.deployments.list(RESOURCE_GROUP, ACCOUNT)}
    assert deployments[BASE_DEPLOYMENT].sku.name == "GlobalStandard"
    assert deployments[BATCH_DEPLOYMENT].sku.name == "GlobalBatch"
    assert deployments[BASE_DEPLOYMENT].properties.model.name == BASE_MODEL
    assert deployments[BASE_DEPLOYMENT].properties.provisioning_state == "Succeeded"


def test_put_get_list_delete_fine_tuned_deployment(emulator, small_fine_tuned_job):
    mgmt = management_client(emulator.url)
    client = openai_client(emulator.url)
    poller = mgmt.deployments.begin_create_or_update(
        RESOURCE_GROUP, ACCOUNT, "candidate-crud", deployment_of(small_fine_tuned_job.fine_tuned_model, "DeveloperTier")
    )
    assert poller.status() in ("Creating", "InProgress")
    # Not serving until provisioning succeeded: Azure's answer for a deployment that is not there yet.
    with pytest.raises(openai.NotFoundError) as early:
        client.chat.completions.create(model="candidate-crud", messages=digit_messages(0))
    assert early.value.body["code"] == "DeploymentNotFound"
    result = poller.result()
    assert result.properties.provisioning_state == "Succeeded"
    assert result.sku.name == "DeveloperTier"
    fetched = mgmt.deployments.get(RESOURCE_GROUP, ACCOUNT, "candidate-crud")
    assert fetched.properties.model.name == small_fine_tuned_job.fine_tuned_model
    assert fetched.id.endswith(f"/accounts/{ACCOUNT}/deployments/candidate-crud")
    assert "candidate-crud" in {d.name for d in mgmt.deployments.list(RESOURCE_GROUP, ACCOUNT)}
    answer = client.chat.completions.create(model="candidate-crud", messages=digit_messages(0), temperature=0)
    assert answer.choices[0].message.content in [str(d) for d in range(10)]
    # Same model, other capacity: an update is fine.
    updated = mgmt.deployments.begin_create_or_update(
        RESOURCE_GROUP, ACCOUNT, "candidate-crud",
        deployment_of(small_fine_tuned_job.fine_tuned_model, "DeveloperTier", capacity=5),
    ).result()
    assert updated.sku.capacity == 5
    mgmt.deployments.begin_delete(RESOURCE_GROUP, ACCOUNT, "candidate-crud").result()
    with pytest.raises(ResourceNotFoundError):
        mgmt.deployments.get(RESOURCE_GROUP, ACCOUNT, "candidate-crud")


def test_checkpoint_is_deployable(emulator, small_fine_tuned_job):
    client = openai_client(emulator.url)
    mgmt = management_client(emulator.url)
    oldest_kept = client.fine_tuning.jobs.checkpoints.list(small_fine_tuned_job.id).data[-1]
    result = deploy_model(mgmt, "checkpoint-deploy", oldest_kept.id)
    assert result.properties.provisioning_state == "Succeeded"
    mgmt.deployments.begin_delete(RESOURCE_GROUP, ACCOUNT, "checkpoint-deploy").result()


def test_deployment_rules(emulator, small_fine_tuned_job):
    mgmt = management_client(emulator.url)
    model = small_fine_tuned_job.fine_tuned_model
    with pytest.raises(HttpResponseError) as batch_sku:
        deploy_model(mgmt, "ft-batch", model, "GlobalBatch")
    assert batch_sku.value.status_code == 400 and "Standard, GlobalStandard or DeveloperTier" in str(batch_sku.value)
    with pytest.raises(HttpResponseError) as unknown:
        deploy_model(mgmt, "unknown-model", "gpt-4.1-2025-04-14.ft-00000000000000000000000000000000")
    assert unknown.value.error.code == "DeploymentModelNotSupported"
    deploy_model(mgmt, "fixed-model", model)
    with pytest.raises(HttpResponseError) as changed:
        deploy_model(mgmt, "fixed-model", BASE_MODEL)
    assert 400 <= changed.value.status_code < 500 and "cannot be changed" in str(changed.value)
    mgmt.deployments.begin_delete(RESOURCE_GROUP, ACCOUNT, "fixed-model").result()
    with pytest.raises(HttpResponseError) as wrong_account:
        mgmt.deployments.get(RESOURCE_GROUP, "someone-else", BASE_DEPLOYMENT)
    assert wrong_account.value.status_code == 404


def test_at_most_five_fine_tuned_deployments(emulator_factory):
    server = emulator_factory()
    client = openai_client(server.url)
    mgmt = management_client(server.url)
    job = fine_tune(client, to_jsonl(digits_examples(digit_split()[0][:30])), hyperparameters={"n_epochs": 1})
    for number in range(5):
        deploy_model(mgmt, f"ft-{number}", job.fine_tuned_model)
    with pytest.raises(HttpResponseError) as refused:
        deploy_model(mgmt, "ft-5", job.fine_tuned_model)
    assert refused.value.error.code == "QuotaExceeded" and "limit is 5" in str(refused.value)
    deploy_model(mgmt, "base-copy", BASE_MODEL)  # base model deployments do not count
    mgmt.deployments.begin_delete(RESOURCE_GROUP, ACCOUNT, "ft-0").result()
    assert deploy_model(mgmt, "ft-5", job.fine_tuned_model).properties.provisioning_state == "Succeeded"


def test_transient_dependent_service_failures(emulator_factory):
    server = emulator_factory()
    mgmt = management_client(server.url)
    with EmulatorAdmin(server.url) as admin:
        admin.fail_next_deployments(2)
        for _ in range(2):
            with pytest.raises(HttpResponseError) as failed:
                deploy_model(mgmt, "retry-me", BASE_MODEL)
            assert failed.value.error.code == "BadRequestForDependentService"
        assert deploy_model(mgmt, "retry-me", BASE_MODEL).properties.provisioning_state == "Succeeded"
        admin.fail_next_deployments(1, phase="provisioning")
        with pytest.raises(HttpResponseError) as provisioning:
            deploy_model(mgmt, "fails-late", BASE_MODEL)
        assert "BadRequestForDependentService" in str(provisioning.value)
        assert mgmt.deployments.get(RESOURCE_GROUP, ACCOUNT, "fails-late").properties.provisioning_state == "Failed"
        assert deploy_model(mgmt, "fails-late", BASE_MODEL).properties.provisioning_state == "Succeeded"
        assert admin.stats().count("deployments_create_or_update") == 5  # 2 refused, 1 ok, 1 failed late, 1 ok


def test_control_plane_needs_credentials(emulator):
    import httpx

    url = f"{emulator.url}/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/{RESOURCE_GROUP}" \
          f"/providers/Microsoft.CognitiveServices/accounts/{ACCOUNT}/deployments"
    missing = httpx.get(url, params={"api-version": "2024-10-01"})
    assert missing.status_code == 401 and missing.json()["error"]["code"] == "AuthenticationFailed"
    from local.emulator.clients import LocalTokenCredential

    issued = {"Authorization": f"Bearer {LocalTokenCredential().get_token('https://management.azure.com/.default').token}"}
    assert httpx.get(url, params={"api-version": "2024-10-01"}, headers=issued).status_code == 200
    assert httpx.get(url, headers=issued).status_code == 400  # api-version required


def test_a_deployment_write_or_delete_during_another_operation_is_a_409_request_conflict(emulator_factory):
    """ARM serialises deployment operations per account (RequestConflict while one is in progress); a
    delete is asynchronous (``Deleting``, then gone)."""
    server = emulator_factory(deployment_seconds=30)
    mgmt = management_client(server.url)
    admin = EmulatorAdmin(server.url)

    def put(name: str):
        return mgmt.deployments.begin_create_or_update(
            RESOURCE_GROUP, ACCOUNT, name, deployment_of(BASE_MODEL), polling=False
        ).result()

    def state(name: str) -> str:
        return mgmt.deployments.get(RESOURCE_GROUP, ACCOUNT, name).properties.provisioning_state

    put("one")
    assert state("one") == "Creating"
    for attempt in (lambda: put("two"), lambda: mgmt.deployments.begin_delete(RESOURCE_GROUP, ACCOUNT, BASE_DEPLOYMENT)):
        with pytest.raises(HttpResponseError) as refused:
            attempt()
        assert refused.value.status_code == 409 and refused.value.error.code == "RequestConflict"
        assert "Another operation is being performed on the parent resource" in refused.value.message
    admin.advance_clock(31)
    assert state("one") == "Succeeded"
    mgmt.deployments.begin_delete(RESOURCE_GROUP, ACCOUNT, "one", polling=False).result()
    assert state("one") == "Deleting"
    mgmt.deployments.begin_delete(RESOURCE_GROUP, ACCOUNT, "one", polling=False).result()  # asking again is fine
    with pytest.raises(HttpResponseError) as refused:
        put("two")
    assert refused.value.status_code == 409
    admin.advance_clock(31)
    with pytest.raises(ResourceNotFoundError):
        mgmt.deployments.get(RESOURCE_GROUP, ACCOUNT, "one")
    assert put("two").name == "two"


def test_developer_tier_needs_the_arm_api_version_that_documents_it(emulator, small_fine_tuned_job):
    mgmt = management_client(emulator.url)
    model = small_fine_tuned_job.fine_tuned_model
    with pytest.raises(HttpResponseError) as refused:
        mgmt.deployments.begin_create_or_update(
            RESOURCE_GROUP, ACCOUNT, "dev-old", deployment_of(model, "DeveloperTier"), api_version="2024-10-01"
        )
    assert refused.value.status_code == 400 and refused.value.error.code == "InvalidSkuName"
    assert "2024-10-01" in refused.value.message and "2025-07-01-preview" in refused.value.message
    created = mgmt.deployments.begin_create_or_update(
        RESOURCE_GROUP, ACCOUNT, "dev-new", deployment_of(model, "DeveloperTier"), api_version="2025-07-01-preview"
    ).result()
    assert created.sku.name == "DeveloperTier"
    mgmt.deployments.begin_delete(RESOURCE_GROUP, ACCOUNT, "dev-new").result()
