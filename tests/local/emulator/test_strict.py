"""The emulator answers by the spec of the API version called (local/emulator/strict.py, specs.py): an
undeclared body field or a missing required one is a 400 naming the field and the version, a path or method
the version lacks is a 404, and every request can be recorded with the spec operation that covered it."""

from __future__ import annotations

import httpx
import openai
import pytest

from local.emulator.admin import EmulatorAdmin
from local.emulator.clients import openai_client, v1_client
from local.emulator.constants import API_KEY, BASE_DEPLOYMENT, BASE_MODEL
from local.emulator.specs import load_catalog
from tests.fixtures.emulator import digit_messages, digits_examples, to_jsonl, upload_processed

pytestmark = pytest.mark.emulator

OLD_SHAPE = {
    "method": {"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 2}}},
    "trainingType": "globalstandard",
}

if load_catalog() is None:  # pragma: no cover - the copies sit beside every checkout and CI clone
    pytest.skip("the spec copies (shared/specs beside the checkout) are missing", allow_module_level=True)


def _post(url: str, path: str, body: object) -> httpx.Response:
    return httpx.post(f"{url}{path}", headers={"api-key": API_KEY}, json=body, timeout=30)


@pytest.fixture(scope="module")
def training_file(emulator) -> str:
    return upload_processed(openai_client(emulator.url), to_jsonl(digits_examples(list(range(20))))).id


def test_the_old_fine_tuning_shape_is_refused_on_2024_10_21(emulator, training_file):
    client = openai_client(emulator.url)  # api-version 2024-10-21
    with pytest.raises(openai.BadRequestError) as refused:
        client.fine_tuning.jobs.create(
            model=BASE_MODEL,
            training_file=training_file,
            method=OLD_SHAPE["method"],
            extra_body={"trainingType": "globalstandard"},
        )
    message = refused.value.body["message"]
    assert refused.value.status_code == 400 and refused.value.body["param"] == "method"
    assert "'2024-10-21'" in message and "field 'method' is not declared" in message
    assert "field 'trainingType' is not declared" in message


def test_trainingType_alone_is_refused_on_2024_10_21_and_top_level_hyperparameters_pass_the_gate(emulator, training_file):
    refused = _post(
        emulator.url,
        "/openai/fine_tuning/jobs?api-version=2024-10-21",
        {"model": BASE_MODEL, "training_file": training_file, "trainingType": "globalstandard"},
    )
    assert refused.status_code == 400 and refused.json()["error"]["param"] == "trainingType"
    accepted = _post(
        emulator.url,
        "/openai/fine_tuning/jobs?api-version=2024-10-21",
        {"model": BASE_MODEL, "training_file": training_file, "hyperparameters": {"n_epochs": 1}, "suffix": "strict"},
    )
    assert accepted.status_code == 201, accepted.text


def test_the_same_request_is_accepted_on_v1_and_2025_04_01_preview(emulator, training_file):
    job = v1_client(emulator.url).fine_tuning.jobs.create(
        model=BASE_MODEL, training_file=training_file, method=OLD_SHAPE["method"], extra_body={"trainingType": "globalstandard"}
    )
    assert job.id.startswith("ftjob-")
    preview = _post(
        emulator.url,
        "/openai/fine_tuning/jobs?api-version=2025-04-01-preview",
        {"model": BASE_MODEL, "training_file": training_file, "method": {"type": "supervised"}, "trainingType": "developer"},
    )
    assert preview.status_code == 201, preview.text


@pytest.mark.parametrize(
    ("path", "body", "words"),
    [
        ("/openai/batches?api-version=2024-10-21",
         {"input_file_id": "file-x", "endpoint": "/chat/completions", "completion_window": "24h", "priority": "high"},
         ["field 'priority' is not declared", "'2024-10-21'"]),
        ("/openai/batches?api-version=2024-10-21", {"input_file_id": "file-x", "completion_window": "24h"},
         ["required field 'endpoint' is missing"]),
        ("/openai/v1/fine_tuning/jobs", {"training_file": "file-x"}, ["required field 'model' is missing", "'v1'"]),
        ("/openai/v1/fine_tuning/jobs",
         {"model": BASE_MODEL, "training_file": "file-x", "method": {"type": "supervised", "supervised": {"epochs": 3}}},
         ["field 'method.supervised.epochs' is not declared"]),
        ("/openai/v1/chat/completions", {"model": BASE_DEPLOYMENT, "messages": digit_messages(3), "top_k": 3},
         ["field 'top_k' is not declared", "openai-openapi.yaml"]),
        ("/openai/uploads?api-version=2024-10-21", {"bytes": 10, "filename": "a.jsonl", "purpose": "fine-tune"},
         ["required field 'mime_type' is missing"]),
    ],
)  # fmt: skip
def test_undeclared_and_missing_fields_are_refused_naming_field_and_version(emulator, path, body, words):
    response = _post(emulator.url, path, body)
    assert response.status_code == 400, response.text
    message = response.json()["error"]["message"]
    assert all(word in message for word in words), message


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/openai/v1/batches"),  # the v1 spec has no batches
        ("GET", "/openai/v1/batches/batch_x"),
        ("POST", "/openai/v1/uploads"),  # nor the Uploads API
        ("DELETE", "/openai/v1/fine_tuning/jobs/ftjob-x"),  # nor job deletion
    ],
)
def test_a_path_or_method_the_version_lacks_is_404(emulator, method, path):
    response = httpx.request(method, f"{emulator.url}{path}", headers={"api-key": API_KEY}, json={}, timeout=30)
    assert response.status_code == 404 and response.json()["error"]["code"] == "404"
    assert "'v1'" in response.json()["error"]["message"]


def test_an_api_version_without_a_spec_copy_is_refused(emulator):
    response = httpx.get(f"{emulator.url}/openai/files?api-version=2025-03-01-preview", headers={"api-key": API_KEY})
    assert response.status_code == 400 and "2024-10-21" in response.json()["error"]["message"]
    v1 = httpx.get(f"{emulator.url}/openai/v1/files?api-version=2024-10-21", headers={"api-key": API_KEY})
    assert v1.status_code == 400
    assert httpx.get(f"{emulator.url}/openai/v1/files?api-version=preview", headers={"api-key": API_KEY}).status_code == 200


def test_multipart_fields_follow_the_version(emulator):
    content = to_jsonl(digits_examples(list(range(12))))
    # v1's AzureCreateFileRequestMultiPart requires expires_after; 2024-10-21 declares purpose and file only.
    with pytest.raises(openai.BadRequestError) as refused:
        v1_client(emulator.url).files.create(file=("t.jsonl", content), purpose="fine-tune")
    assert "expires_after" in refused.value.body["message"] and "'v1'" in refused.value.body["message"]
    with pytest.raises(openai.BadRequestError) as undeclared:
        openai_client(emulator.url).files.create(
            file=("t.jsonl", content), purpose="fine-tune", expires_after={"anchor": "created_at", "seconds": 1209600}
        )
    assert "expires_after" in undeclared.value.body["message"] and "'2024-10-21'" in undeclared.value.body["message"]


def test_requests_are_recorded_with_the_operation_that_covered_them(emulator_factory):
    server = emulator_factory(record_requests=True)
    admin = EmulatorAdmin(server.url)
    openai_client(server.url).files.list()
    v1_client(server.url).chat.completions.create(model=BASE_DEPLOYMENT, messages=digit_messages(1), temperature=0)
    openai_client(server.url).chat.completions.create(model=BASE_DEPLOYMENT, messages=digit_messages(1))
    _post(server.url, "/openai/v1/batches", {})
    records = admin.requests()
    by_path = {(r["method"], r["path"]): r for r in records}
    assert by_path[("GET", "/openai/files")]["operation"] == "2024-10-21.authoring.json Files_List"
    assert by_path[("POST", "/openai/v1/chat/completions")]["operation"] == "openai-openapi.yaml createChatCompletion"
    assert by_path[("POST", "/openai/v1/chat/completions")]["fields"] == ["messages", "model", "temperature"]
    dated_chat = by_path[("POST", f"/openai/deployments/{BASE_DEPLOYMENT}/chat/completions")]
    assert dated_chat["operation"] is None and dated_chat["status"] is None  # served, not validated
    assert by_path[("POST", "/openai/v1/batches")]["status"] == 404


def test_arm_requests_on_the_held_version_are_checked_against_its_spec(emulator_factory):
    from local.emulator.constants import ACCOUNT, RESOURCE_GROUP, SUBSCRIPTION_ID

    server = emulator_factory(record_requests=True)
    url = (
        f"{server.url}/subscriptions/{SUBSCRIPTION_ID}/resourceGroups/{RESOURCE_GROUP}"
        f"/providers/Microsoft.CognitiveServices/accounts/{ACCOUNT}/deployments"
    )
    headers = {"authorization": f"Bearer {API_KEY}"}  # the key as a bearer token, as the local stack sends it
    body = {"sku": {"name": "GlobalStandard", "capacity": 1}, "properties": {"model": {"format": "OpenAI", "name": BASE_MODEL}}}
    refused = httpx.put(
        f"{url}/strict-check?api-version=2026-09-01",
        headers=headers,
        json={**body, "properties": {**body["properties"], "scaleType": "Standard"}},
    )
    assert refused.status_code == 400 and "field 'properties.scaleType' is not declared" in refused.json()["error"]["message"]
    assert "2026-09-01" in refused.json()["error"]["message"]
    assert httpx.put(f"{url}/strict-check?api-version=2026-09-01", headers=headers, json=body).status_code == 201
    assert httpx.get(f"{url}?api-version=2026-09-01", headers=headers).status_code == 200
    assert httpx.get(f"{url}?api-version=2024-10-01", headers=headers).status_code == 200  # served, not validated
    records = EmulatorAdmin(server.url).requests()
    operations = [(r["api_version"], r["method"], r["operation"], r["status"]) for r in records]
    operation = "cognitiveservices-2026-09-01.deployments.excerpt.json Deployments_CreateOrUpdate"
    assert ("2026-09-01", "PUT", operation, 400) in operations
    assert ("2026-09-01", "GET", "cognitiveservices-2026-09-01.json (full spec) Deployments_List", None) in operations
    assert ("2024-10-01", "GET", None, None) in operations
