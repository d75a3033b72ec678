"""Files API of the emulator through the official openai SDK: upload, status, validation, quota, auth."""

from __future__ import annotations

import base64
import io
import json

import httpx
import openai
import pytest
from PIL import Image

from local.emulator.clients import openai_client
from local.emulator.constants import API_KEY
from tests.fixtures.emulator import digits_examples, to_jsonl, upload_processed

pytestmark = pytest.mark.emulator


def _image_url(fmt: str = "PNG", mode: str = "RGB") -> str:
    buffer = io.BytesIO()
    Image.new(mode, (8, 8), 128 if mode == "L" else (10, 20, 30)).save(buffer, fmt)
    return f"data:image/{fmt.lower()};base64," + base64.b64encode(buffer.getvalue()).decode()


def test_upload_list_retrieve_content_delete(emulator):
    client = openai_client(emulator.url)
    content = to_jsonl(digits_examples(list(range(12))))
    created = client.files.create(file=("train.jsonl", content), purpose="fine-tune")
    assert created.status == "pending" and created.id.startswith("file-")
    assert created.bytes == len(content) and created.filename == "train.jsonl"
    processed = upload_processed(client, content)
    assert processed.status == "processed"
    assert client.files.content(processed.id).content == content
    listed = {f.id for f in client.files.list(purpose="fine-tune")}
    assert {created.id, processed.id} <= listed
    deleted = client.files.delete(created.id)
    assert deleted.deleted and deleted.id == created.id
    with pytest.raises(openai.NotFoundError):
        client.files.retrieve(created.id)


@pytest.mark.parametrize(
    ("rows", "expected"),
    [
        (b"not json at all\n", "Line 1: the line is not valid JSON"),
        (to_jsonl([{"prompt": "x"}] * 12), "key 'messages' is required"),
        (to_jsonl(digits_examples(list(range(5)))), "must have at least 10 examples"),
    ],
)
def test_invalid_training_files_end_in_error_with_the_reason(emulator, rows, expected):
    client = openai_client(emulator.url)
    result = upload_processed(client, rows)
    assert result.status == "error"
    assert expected in result.status_details


def test_image_rules_are_enforced(emulator):
    client = openai_client(emulator.url)
    good = digits_examples(list(range(12)))

    def with_image(url: str, role: str = "user") -> bytes:
        bad = json.loads(json.dumps(good))
        message = {
            "role": role,
            "content": [{"type": "image_url", "image_url": {"url": url, "detail": "low"}}],
        }
        bad[3]["messages"].insert(1, message)
        return to_jsonl(bad)

    gif = upload_processed(client, with_image(_image_url("GIF", "L")))
    assert gif.status == "error" and "Line 4" in gif.status_details and "GIF" in gif.status_details
    gray = upload_processed(client, with_image(_image_url("PNG", "L")))
    assert gray.status == "error" and "mode L" in gray.status_details
    in_assistant = upload_processed(client, with_image(_image_url(), role="assistant"))
    assert in_assistant.status == "error" and "only allowed in user messages" in in_assistant.status_details
    assert upload_processed(client, with_image(_image_url("WEBP"))).status == "processed"


def test_bad_purpose_is_refused(emulator):
    client = openai_client(emulator.url)
    with pytest.raises(openai.BadRequestError) as refused:
        client.files.create(file=("x.jsonl", b"{}\n"), purpose="vision")  # type: ignore[arg-type]
    assert "purpose" in str(refused.value)


def test_file_count_quota(emulator_factory):
    server = emulator_factory(max_files=50)
    client = openai_client(server.url)
    for number in range(50):
        client.files.create(file=(f"f{number}.jsonl", b'{"messages": []}\n'), purpose="fine-tune")
    with pytest.raises(openai.BadRequestError) as refused:
        client.files.create(file=("one-too-many.jsonl", b'{"messages": []}\n'), purpose="fine-tune")
    assert refused.value.body["code"] == "quotaExceeded" and "50" in refused.value.body["message"]
    # Batch files do not count against the fine-tuning file quota; deleting frees a slot.
    client.files.create(file=("batch.jsonl", b"{}\n"), purpose="batch")
    client.files.delete(client.files.list(purpose="fine-tune").data[0].id)
    client.files.create(file=("fits-now.jsonl", b'{"messages": []}\n'), purpose="fine-tune")


def test_total_size_quota(emulator_factory):
    server = emulator_factory(max_total_file_bytes=1000)
    client = openai_client(server.url)
    client.files.create(file=("a.jsonl", b"x" * 600), purpose="fine-tune")
    with pytest.raises(openai.BadRequestError) as refused:
        client.files.create(file=("b.jsonl", b"x" * 600), purpose="fine-tune")
    assert refused.value.body["code"] == "quotaExceeded" and "1000 bytes" in refused.value.body["message"]


def test_wrong_or_missing_key_is_401_like_azure(emulator):
    wrong = openai.AzureOpenAI(
        azure_endpoint=emulator.url, api_key="nope", api_version="2024-10-21", max_retries=0
    )
    with pytest.raises(openai.AuthenticationError) as denied:
        wrong.files.list()
    assert denied.value.body["code"] == "401"
    assert denied.value.body["message"].startswith(
        "Access denied due to invalid subscription key or wrong API endpoint"
    )
    raw = httpx.get(f"{emulator.url}/openai/files", params={"api-version": "2024-10-21"})
    assert raw.status_code == 401 and raw.json()["error"]["code"] == "401"
    # A bearer token the emulator issued is accepted (any other is not); the key in the right header too.
    from local.emulator.clients import LocalTokenCredential

    issued = LocalTokenCredential().get_token("https://cognitiveservices.azure.com/.default").token
    token = openai.AzureOpenAI(
        azure_endpoint=emulator.url, azure_ad_token_provider=lambda: issued, api_version="2024-10-21"
    )
    assert token.files.list().object == "list"
    stranger = openai.AzureOpenAI(
        azure_endpoint=emulator.url, azure_ad_token_provider=lambda: "any-token", api_version="2024-10-21",
        max_retries=0,
    )
    with pytest.raises(openai.AuthenticationError):
        stranger.files.list()
    ok = httpx.get(
        f"{emulator.url}/openai/files", params={"api-version": "2024-10-21"}, headers={"api-key": API_KEY}
    )
    assert ok.status_code == 200


def test_api_version_is_required_and_checked(emulator):
    headers = {"api-key": API_KEY}
    assert httpx.get(f"{emulator.url}/openai/files", headers=headers).status_code == 404
    old = httpx.get(f"{emulator.url}/openai/files", params={"api-version": "2023-05-15"}, headers=headers)
    assert old.status_code == 400 and "not supported" in old.json()["error"]["message"]
    preview = httpx.get(
        f"{emulator.url}/openai/files", params={"api-version": "2025-04-01-preview"}, headers=headers
    )
    assert preview.status_code == 200
    v1 = httpx.get(f"{emulator.url}/openai/v1/files", headers=headers)
    assert v1.status_code == 200 and v1.json()["object"] == "list"


def test_uploads_api_assembles_parts_into_a_file(emulator):
    client = openai_client(emulator.url)
    content = to_jsonl(digits_examples(list(range(12))))
    upload = client.uploads.create(bytes=len(content), filename="big.jsonl", mime_type="application/jsonl", purpose="fine-tune")
    assert upload.status == "pending"
    third = len(content) // 3 + 1
    parts = [client.uploads.parts.create(upload.id, data=content[i : i + third]) for i in range(0, len(content), third)]
    with pytest.raises(openai.BadRequestError):
        client.uploads.complete(upload.id, part_ids=[parts[0].id])  # too few bytes
    completed = client.uploads.complete(upload.id, part_ids=[p.id for p in parts])
    assert completed.status == "completed" and completed.file.filename == "big.jsonl"
    assert client.files.content(completed.file.id).content == content
    assert upload_processed(client, content).status == "processed"
    other = client.uploads.create(bytes=10, filename="x.jsonl", mime_type="application/jsonl", purpose="batch")
    assert client.uploads.cancel(other.id).status == "cancelled"
