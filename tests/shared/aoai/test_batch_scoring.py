"""The pure parts of shared/aoai/batch_scoring: batch input lines and the join of batch results (no server
needed; batches against the emulator are in test_aoai_emulator.py)."""

from __future__ import annotations

import json

import pytest

from shared.aoai.batch_scoring import BATCH_MAX_REQUESTS, batch_input_lines, join_batch_results
from shared.aoai.scoring import TestItem, read_test_items
from tests.shared.aoai.test_scoring import _example


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
