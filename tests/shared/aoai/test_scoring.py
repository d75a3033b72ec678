"""Unit tests of the pure parts of shared/aoai/scoring: test items, batch lines and batch result joins (no
server needed)."""

from __future__ import annotations

import json

import pytest

from shared.aoai.scoring import (
    BATCH_MAX_REQUESTS,
    TestItem,
    batch_input_lines,
    join_batch_results,
    read_test_items,
)


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
