"""Token and cost estimate of a converted dataset, counted with tiktoken on the real messages."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from shared.conversion.examples import example_messages
from shared.tokens import count_message_tokens


def tokens_per_label(prompt: str, labels: list[str], model: str) -> dict[str, tuple[int, int]]:
    """``label -> (text tokens, image tokens)`` of one example. Every example of a label has the same
    messages apart from the image, which costs a flat 85 tokens at low detail."""
    counts = {}
    for label in labels:
        tokens = count_message_tokens(example_messages(prompt, label, "data:image/jpeg;base64,"), model)
        counts[label] = (tokens.text, tokens.image_tokens)
    return counts


def split_tokens(per_label: Mapping[str, int], label_tokens: Mapping[str, tuple[int, int]]) -> tuple[int, int]:
    """(text tokens, image tokens) of a split with ``per_label`` examples."""
    text = sum(n * label_tokens[label][0] for label, n in per_label.items())
    images = sum(n * label_tokens[label][1] for label, n in per_label.items())
    return text, images


def estimate(
    train_text_tokens: int, train_image_tokens: int, *, epochs: int, price_per_1m: float, model: str
) -> dict[str, Any]:
    """The manifest's ``estimate``: training tokens = tokens of the training split x epochs (the
    validation split is not billed), cost at ``price_per_1m`` USD per 1M training tokens."""
    per_epoch = train_text_tokens + train_image_tokens
    training_tokens = per_epoch * epochs
    return {
        "text_tokens": train_text_tokens,
        "image_tokens": train_image_tokens,
        "tokens_per_epoch": per_epoch,
        "epochs": epochs,
        "training_tokens": training_tokens,
        "cost_usd": round(training_tokens / 1_000_000 * price_per_1m, 4),
        "price_per_1m": price_per_1m,
        "model": model,
    }
