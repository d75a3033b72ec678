"""The test items of shared/aoai/scoring, read from test.jsonl lines (no server needed)."""

from __future__ import annotations

import json

import pytest

from shared.aoai.scoring import read_test_items


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
