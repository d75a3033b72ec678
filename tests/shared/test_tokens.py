"""Offline tiktoken encodings from the bundled bpe-openai files."""

from __future__ import annotations

import socket

import pytest

from shared import tokens


@pytest.fixture
def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)


def test_o200k_builds_offline_and_matches_known_token_ids(no_network):
    tokens.get_encoding.cache_clear()
    encoding = tokens.get_encoding("o200k_base")
    assert encoding.name == "o200k_base"
    assert encoding.n_vocab == 200019
    assert encoding.encode("hello world") == [24912, 2375]
    text = "Categories:\n- café\n- 猫 😀"
    assert encoding.decode(encoding.encode(text)) == text
    assert encoding.encode("<|endoftext|>", allowed_special="all") == [199999]


def test_cl100k_builds_offline(no_network):
    encoding = tokens.get_encoding("cl100k_base")
    assert encoding.encode("hello world") == [15339, 1917]


def test_models_map_to_their_encodings():
    assert tokens.encoding_name_for_model("gpt-4.1-2025-04-14") == "o200k_base"
    assert tokens.encoding_name_for_model("gpt-4o-2024-08-06") == "o200k_base"
    assert tokens.encoding_name_for_model("gpt-4.1-2025-04-14.ft-abc123-digits") == "o200k_base"
    assert tokens.encoding_name_for_model("gpt-4") == "cl100k_base"
    assert tokens.encoding_name_for_model("some-future-model") == "o200k_base"


def test_message_tokens_follow_the_cookbook_and_price_images_at_85():
    encoding = tokens.get_encoding("o200k_base")
    messages = [
        {"role": "system", "content": "Classify."},
        {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:,", "detail": "low"}},
                                     {"type": "text", "text": "what is it?"}]},
        {"role": "assistant", "content": "cat"},
    ]
    counted = tokens.count_message_tokens(messages, "gpt-4.1-2025-04-14")
    expected = 3 + sum(3 + len(encoding.encode(m["role"])) for m in messages)
    expected += len(encoding.encode("Classify.")) + len(encoding.encode("what is it?")) + len(encoding.encode("cat"))
    assert counted.text == expected
    assert counted.images == 1 and counted.image_tokens == 85
    assert counted.total == expected + 85


def test_unknown_encoding_is_a_clear_error():
    with pytest.raises(tokens.TokenizerError, match="no bundled encoding"):
        tokens.get_encoding("p50k_base")
