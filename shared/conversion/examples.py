"""The fine-tuning examples: system prompt, one user image, the label as the assistant's answer."""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from typing import Any

CATEGORIES_PLACEHOLDER = "{categories}"
DEFAULT_PROMPT_TEMPLATE = (
    "You are an image classifier. Look at the image and answer with exactly one category from the "
    "list below, written exactly as shown, and nothing else.\n"
    "Categories:\n" + CATEGORIES_PLACEHOLDER
)
IMAGE_DETAIL = "low"


def category_lines(labels: Sequence[str]) -> str:
    """The ``- label`` lines, sorted (the emulator reads the label set back from these)."""
    return "\n".join(f"- {label}" for label in sorted(labels))


def build_prompt(labels: Sequence[str], template: str | None = None) -> str:
    """The system prompt: ``template`` (default: the classifier prompt) with ``{categories}`` replaced
    by the sorted ``- label`` lines. A custom template without the placeholder is used verbatim."""
    return (template or DEFAULT_PROMPT_TEMPLATE).replace(CATEGORIES_PLACEHOLDER, category_lines(labels))


def example_messages(prompt: str, label: str, image_url: str) -> list[dict[str, Any]]:
    """The chat messages of one example (the image URL may be a placeholder for token counting)."""
    return [
        {"role": "system", "content": prompt},
        {"role": "user", "content": [{"type": "image_url", "image_url": {"url": image_url, "detail": IMAGE_DETAIL}}]},
        {"role": "assistant", "content": label},
    ]


def example_line(prompt: str, label: str, jpeg: bytes) -> bytes:
    """One JSONL line (with its newline), compact UTF-8 JSON, image as a base64 JPEG data URL."""
    url = "data:image/jpeg;base64," + base64.b64encode(jpeg).decode("ascii")
    text = json.dumps({"messages": example_messages(prompt, label, url)}, ensure_ascii=False, separators=(",", ":"))
    return text.encode("utf-8") + b"\n"
