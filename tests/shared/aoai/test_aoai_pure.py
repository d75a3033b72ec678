"""Unit tests of the pure parts of shared/aoai: names, suffixes, results.csv, test items, batch lines,
batch result joins, error descriptions and client construction (no server needed)."""

from __future__ import annotations

import base64
import io
import json
import re
from typing import Any

import pytest

from shared.aoai import clients
from shared.aoai import files as aoai_files
from shared.aoai.deployments import DEPLOYMENT_NAME_RE, deployment_name
from shared.aoai.errors import describe_error_body
from shared.aoai.finetune import SUFFIX_RE, make_suffix, parse_results_csv
from shared.aoai.scoring import (
    BATCH_MAX_REQUESTS,
    TestItem,
    batch_input_lines,
    join_batch_results,
    read_test_items,
)
from shared.settings import Settings

DATASET_NAMES = [
    "digits",
    "Dogs",
    "dogs",
    "stanford-dogs-120-breeds-v2",
    "stanford-dogs-120-breeds-v3",
    "a.b",
    "a_b",
    "x" * 63,
    "9",
    "my_data-set.v2",
]


@pytest.mark.parametrize("dataset", DATASET_NAMES)
def test_suffix_is_valid_short_and_deterministic(dataset: str) -> None:
    suffix = make_suffix(dataset)
    assert SUFFIX_RE.match(suffix), suffix
    assert 1 <= len(suffix) <= 18
    assert make_suffix(dataset) == suffix


def test_suffix_keeps_short_clean_names_and_separates_the_rest() -> None:
    assert make_suffix("digits") == "digits"
    assert make_suffix("a_b") == "a_b"
    suffixes = [make_suffix(d) for d in DATASET_NAMES]
    assert len(set(suffixes)) == len(suffixes), suffixes
    assert make_suffix("stanford-dogs-120-breeds-v2").startswith("stanford-do")


@pytest.mark.parametrize("role", ["cand", "prod", "incumbent"])
def test_deployment_names_are_valid_unique_and_deterministic(role: str) -> None:
    version = "3f9a0c1d2e4b5a6978c0d1e2f3a4b5c6"
    names = [deployment_name(d, version, role) for d in DATASET_NAMES]
    for name in names:
        assert DEPLOYMENT_NAME_RE.match(name), name
        assert len(name) <= 64
        assert re.fullmatch(r"[a-z0-9-]+", name)
    assert len(set(names)) == len(names)
    assert names == [deployment_name(d, version, role) for d in DATASET_NAMES]
    assert deployment_name("digits", version, role) == f"vt-digits-3f9a0c1d2e4b-{role[:12]}"


def test_deployment_names_differ_by_version_and_role() -> None:
    assert deployment_name("digits", "aaaa1111") != deployment_name("digits", "bbbb2222")
    assert deployment_name("digits", "aaaa1111", "cand") != deployment_name("digits", "aaaa1111", "prod")


RESULTS_CSV = (
    "step,train_loss,train_mean_token_accuracy,valid_loss,validation_mean_token_accuracy,"
    "full_valid_loss,full_valid_mean_token_accuracy\n"
    "1,2.31,0.10,,,,\n"
    "2,1.75,0.45,1.9,0.40,,\n"
    "3,0.52,0.91,0.61,0.88,0.64,0.87\n"
)


def test_results_csv_plain_and_base64_parse_the_same() -> None:
    plain = parse_results_csv(RESULTS_CSV)
    encoded = parse_results_csv(base64.b64encode(RESULTS_CSV.encode()))
    assert plain == encoded
    assert [r.step for r in plain] == [1, 2, 3]
    assert plain[0].train_loss == pytest.approx(2.31)
    assert plain[0].valid_loss is None
    assert plain[1].validation_mean_token_accuracy == pytest.approx(0.40)
    assert plain[2].full_valid_mean_token_accuracy == pytest.approx(0.87)


def test_results_csv_tolerates_extra_columns_and_bad_rows_but_not_garbage() -> None:
    text = "step,train_loss,extra\n1,0.5,x\nnot-a-step,1,2\n2.0,nan,y\n"
    rows = parse_results_csv(text.encode())
    assert [(r.step, r.train_loss) for r in rows] == [(1, 0.5), (2, None)]
    with pytest.raises(ValueError, match="not a results.csv"):
        parse_results_csv(b"hello,world\n1,2\n")


def _example(label: str, *, image: str = "data:image/jpeg;base64,AAAA") -> dict:
    return {
        "messages": [
            {"role": "system", "content": "Classify.\nCategories:\n- cat\n- dog"},
            {"role": "user", "content": [{"type": "image_url", "image_url": {"url": image, "detail": "low"}}]},
            {"role": "assistant", "content": label},
        ]
    }


def test_read_test_items_strips_the_answer_and_numbers_stably() -> None:
    lines = [json.dumps(_example("cat")).encode(), b"\n", "\ufeff" + json.dumps(_example(" dog "))]
    items = read_test_items(lines)
    assert [i.custom_id for i in items] == ["t-000000", "t-000001"]
    assert [i.truth for i in items] == ["cat", "dog"]
    assert all(m["role"] != "assistant" for i in items for m in i.messages)
    assert len(items[0].messages) == 2
    assert read_test_items(lines) == items


def test_read_test_items_names_the_bad_line() -> None:
    no_answer = {"messages": [{"role": "user", "content": "hi"}]}
    with pytest.raises(ValueError, match="line 2: no assistant message"):
        read_test_items([json.dumps(_example("cat")), json.dumps(no_answer)])
    with pytest.raises(ValueError, match="line 1"):
        read_test_items(["{not json"])


def _items(n: int) -> list[TestItem]:
    return read_test_items([json.dumps(_example("cat" if i % 2 else "dog")) for i in range(n)])


def test_batch_input_lines_follow_the_batch_format() -> None:
    items = _items(3)
    data = batch_input_lines(items, "base-batch")
    assert not data.startswith(b"\xef\xbb\xbf")
    lines = data.splitlines()
    assert len(lines) == 3 and data.endswith(b"\n")
    for item, raw in zip(items, lines, strict=True):
        record = json.loads(raw)
        assert record["custom_id"] == item.custom_id
        assert record["method"] == "POST" and record["url"] == "/chat/completions"
        assert record["body"]["model"] == "base-batch"
        assert record["body"]["messages"] == item.messages
        assert record["body"]["temperature"] == 0


def test_batch_input_lines_refuse_duplicates_empty_and_too_many() -> None:
    item = _items(1)[0]
    with pytest.raises(ValueError, match="duplicate custom_id"):
        batch_input_lines([item, item], "b")
    with pytest.raises(ValueError, match="at least one"):
        batch_input_lines([], "b")
    many = [TestItem(custom_id=f"t-{i}", truth="x", messages=[]) for i in range(BATCH_MAX_REQUESTS + 1)]
    with pytest.raises(ValueError, match="100000"):
        batch_input_lines(many, "b")


def _output_line(custom_id: str, answer: str) -> bytes:
    body = {
        "choices": [{"index": 0, "message": {"role": "assistant", "content": answer}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 120, "completion_tokens": 2, "total_tokens": 122},
    }
    return json.dumps({"custom_id": custom_id, "response": {"status_code": 200, "body": body}, "error": None}).encode()


def test_join_batch_results_in_any_order_with_errors_and_gaps() -> None:
    items = _items(5)
    output = b"\n".join([_output_line("t-000003", "cat"), _output_line("t-000000", "dog"), b"{torn"])
    error_line = {
        "custom_id": "t-000001",
        "response": {"status_code": 400, "body": {"error": {"code": "content_filter", "message": "filtered"}}},
        "error": None,
    }
    errors = json.dumps(error_line).encode() + b"\n" + json.dumps({"custom_id": "unknown"}).encode()
    joined = join_batch_results(items, output, errors, missing_reason="no result (batch expired)")
    assert [r.custom_id for r in joined] == [i.custom_id for i in items]
    by_id = {r.custom_id: r for r in joined}
    assert by_id["t-000000"].answer == "dog" and by_id["t-000000"].prompt_tokens == 120
    assert by_id["t-000003"].answer == "cat" and by_id["t-000003"].latency_ms is None
    assert by_id["t-000001"].answer is None and "content_filter: filtered" in by_id["t-000001"].error
    assert by_id["t-000002"].error == "no result (batch expired)"
    assert by_id["t-000004"].answer is None
    assert [r.truth for r in joined] == [i.truth for i in items]


def test_error_bodies_keep_the_service_message() -> None:
    body = {"error": {"code": "InvalidPayload", "message": "The file has 3 errors.", "innererror": {"code": "x"}}}
    assert describe_error_body(body, 400) == "HTTP 400 InvalidPayload: The file has 3 errors. (inner: x)"
    assert describe_error_body(body["error"]) == "InvalidPayload: The file has 3 errors. (inner: x)"
    assert describe_error_body("upstream timeout", 504) == "HTTP 504: upstream timeout"


def test_openai_client_uses_the_key_locally_and_entra_id_otherwise() -> None:
    clients.clear_client_cache()
    local = Settings(AZURE_OPENAI_ENDPOINT="http://127.0.0.1:1", AZURE_OPENAI_API_KEY="k")
    azure = Settings(AZURE_OPENAI_ENDPOINT="https://x.openai.azure.com", AZURE_CLIENT_ID="00000000-1111")
    local_client = clients.openai_client(local)
    assert clients.openai_client(local) is local_client
    assert local_client.dated.api_key == "k" and local_client.v1.api_key == "k"
    assert local_client.dated.max_retries == local_client.v1.max_retries == clients.OPENAI_MAX_RETRIES
    azure_client = clients.openai_client(azure)
    assert azure_client is not local_client
    assert azure_client.dated._azure_ad_token_provider is not None
    assert callable(azure_client.v1._api_key_provider)
    with pytest.raises(Exception, match="AZURE_OPENAI_ENDPOINT"):
        clients.openai_client(Settings())


def test_each_operation_goes_to_the_surface_chosen_for_it() -> None:
    clients.clear_client_cache()
    client = clients.openai_client(Settings(AZURE_OPENAI_ENDPOINT="https://x.openai.azure.com/", AZURE_OPENAI_API_KEY="k"))
    assert str(client.v1.base_url) == "https://x.openai.azure.com/openai/v1/"
    assert client.dated._api_version == "2024-10-21"
    assert client.fine_tuning is client.v1.fine_tuning and client.chat is client.v1.chat
    for dated in ("files", "uploads", "models", "batches"):
        assert getattr(client, dated) is getattr(client.dated, dated)


def test_error_bodies_do_not_repeat_a_status_code() -> None:
    body = {"error": {"code": "429", "message": "Requests to the API have exceeded the call rate limit."}}
    assert describe_error_body(body, 429) == "HTTP 429: Requests to the API have exceeded the call rate limit."


class _TrickleStream(io.RawIOBase):
    """Returns at most 7 bytes per read, like a slow socket."""

    def __init__(self, data: bytes) -> None:
        self._inner = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        chunk = self._inner.read(min(7, len(buffer)))
        buffer[: len(chunk)] = chunk
        return len(chunk)


def test_upload_parts_are_full_sized_even_from_short_reads() -> None:
    data = bytes(range(256)) * 4
    parts = list(aoai_files._read_parts(_TrickleStream(data), 100))
    assert [len(p) for p in parts] == [100] * 10 + [24]
    assert b"".join(parts) == data
