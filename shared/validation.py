"""``visiontune validate``: an independent checker for vision fine-tuning JSONL files.

It shares no code with the converter's writer on purpose. It runs the OpenAI cookbook's format checks
(``data_type``, ``missing_messages_list``, ``message_missing_key``, ``message_unrecognized_key``,
``unrecognized_role``, ``missing_content``, ``example_missing_assistant_message``) and Azure's vision
rules: images only in user messages; JPEG, PNG or WEBP; mode RGB or RGBA; at most 10 MB per image; at
most 64 images per example; at most 50,000 examples with images per file; at least 10 examples.
Data-URL images are decoded (header only) to check format and mode; https URLs are not fetched.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MIN_EXAMPLES = 10
MAX_IMAGE_EXAMPLES = 50_000
MAX_IMAGES_PER_EXAMPLE = 64
MAX_IMAGE_BYTES = 10 * 1024 * 1024
ALLOWED_FORMATS = {"JPEG": "jpeg", "PNG": "png", "WEBP": "webp"}
ALLOWED_MODES = {"RGB", "RGBA"}
ROLES = {"system", "user", "assistant", "tool", "function", "developer"}
MESSAGE_KEYS = {"role", "content", "name", "function_call", "weight", "tool_calls", "tool_call_id", "refusal"}
DETAILS = {"low", "high", "auto"}
_DATA_URL = re.compile(r"^data:image/([A-Za-z0-9.+-]+);base64,(.*)$", re.DOTALL)
_KEEP_LINES = 5  # line numbers kept per error type

# error type -> what it means (printed by the CLI)
ERROR_TYPES = {
    "bom": "the file starts with a UTF-8 byte-order mark",
    "invalid_utf8": "a line is not valid UTF-8",
    "invalid_json": "a line is not valid JSON",
    "data_type": "a line is not a JSON object",
    "missing_messages_list": "no 'messages' list",
    "message_missing_key": "a message lacks 'role' or 'content'",
    "message_unrecognized_key": "a message has a key the API does not know",
    "unrecognized_role": "a message has an unknown role",
    "missing_content": "a message has empty or non-text content",
    "example_missing_assistant_message": "an example has no assistant message",
    "image_not_in_user_message": "an image appears in a non-user message",
    "invalid_content_part": "a content part is malformed or of an unknown type",
    "invalid_image_url": "an image URL is neither https nor a base64 data URL",
    "invalid_image_detail": "an image's detail is not low, high or auto",
    "invalid_base64": "an image's base64 data does not decode",
    "unreadable_image": "an image's bytes are not a readable image",
    "unsupported_image_format": "an image is not JPEG, PNG or WEBP (or its data URL says another type)",
    "unsupported_image_mode": "an image is not RGB or RGBA",
    "image_too_large": "an image is larger than 10 MB",
    "too_many_images": "an example has more than 64 images",
    "too_many_image_examples": "more than 50,000 examples with images",
    "too_few_examples": "fewer than 10 examples",
}


@dataclass
class ValidationReport:
    """Counts per error type (``errors``), the first line numbers of each, and example statistics."""

    examples: int = 0
    image_examples: int = 0
    images: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    lines: dict[str, list[int]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.errors

    def add(self, error: str, line: int) -> None:
        self.errors[error] += 1
        kept = self.lines.setdefault(error, [])
        if len(kept) < _KEEP_LINES:
            kept.append(line)

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "examples": self.examples,
            "image_examples": self.image_examples,
            "images": self.images,
            "errors": dict(sorted(self.errors.items())),
            "lines": {k: v for k, v in sorted(self.lines.items())},
        }


def validate_file(path: Path, *, min_examples: int = MIN_EXAMPLES) -> ValidationReport:
    """Validate a JSONL file on disk, streaming it line by line."""
    with open(path, "rb") as handle:
        return validate_lines(handle, min_examples=min_examples)


def validate_lines(lines: Iterable[bytes | str], *, min_examples: int = MIN_EXAMPLES) -> ValidationReport:
    """Validate JSONL lines (bytes or str); blank lines are skipped, as the API does."""
    report = ValidationReport()
    for number, raw in enumerate(lines, start=1):
        if isinstance(raw, bytes):
            if number == 1 and raw.startswith(b"\xef\xbb\xbf"):
                report.add("bom", number)
                raw = raw[3:]
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                report.add("invalid_utf8", number)
                continue
        else:
            text = raw
            if number == 1 and text.startswith("\ufeff"):
                report.add("bom", number)
                text = text[1:]
        if not text.strip():
            continue
        report.examples += 1
        try:
            example = json.loads(text)
        except json.JSONDecodeError:
            report.add("invalid_json", number)
            continue
        _check_example(example, number, report)
    if report.image_examples > MAX_IMAGE_EXAMPLES:
        report.add("too_many_image_examples", 0)
    if report.examples < min_examples:
        report.add("too_few_examples", 0)
    return report


def _check_example(example: Any, line: int, report: ValidationReport) -> None:
    if not isinstance(example, dict):
        report.add("data_type", line)
        return
    messages = example.get("messages")
    if not isinstance(messages, list) or not messages:
        report.add("missing_messages_list", line)
        return
    images_here = 0
    for message in messages:
        if not isinstance(message, dict):
            report.add("data_type", line)
            continue
        if "role" not in message or "content" not in message:
            report.add("message_missing_key", line)
        if any(key not in MESSAGE_KEYS for key in message):
            report.add("message_unrecognized_key", line)
        role = message.get("role")
        if role not in ROLES:
            report.add("unrecognized_role", line)
        content = message.get("content")
        if isinstance(content, str):
            if not content.strip() and not message.get("tool_calls") and not message.get("function_call"):
                report.add("missing_content", line)
        elif isinstance(content, list):
            if not content:
                report.add("missing_content", line)
            for part in content:
                images_here += _check_part(part, role, line, report)
        elif content is None and (message.get("tool_calls") or message.get("function_call")):
            pass
        elif "content" in message:
            report.add("missing_content", line)
    if not any(isinstance(m, dict) and m.get("role") == "assistant" for m in messages):
        report.add("example_missing_assistant_message", line)
    if images_here:
        report.image_examples += 1
        report.images += images_here
    if images_here > MAX_IMAGES_PER_EXAMPLE:
        report.add("too_many_images", line)


def _check_part(part: Any, role: Any, line: int, report: ValidationReport) -> int:
    """Check one content part; returns 1 if it is an image."""
    if not isinstance(part, dict):
        report.add("invalid_content_part", line)
        return 0
    kind = part.get("type")
    if kind == "text":
        if not isinstance(part.get("text"), str):
            report.add("invalid_content_part", line)
        return 0
    if kind != "image_url":
        report.add("invalid_content_part", line)
        return 0
    if role != "user":
        report.add("image_not_in_user_message", line)
    image_url = part.get("image_url")
    if not isinstance(image_url, dict) or not isinstance(image_url.get("url"), str):
        report.add("invalid_content_part", line)
        return 1
    if "detail" in image_url and image_url["detail"] not in DETAILS:
        report.add("invalid_image_detail", line)
    _check_url(image_url["url"], line, report)
    return 1


def _check_url(url: str, line: int, report: ValidationReport) -> None:
    if url.startswith("https://"):
        return
    found = _DATA_URL.match(url)
    if not found:
        report.add("invalid_image_url", line)
        return
    declared, payload = found.group(1).lower(), found.group(2)
    try:
        data = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        report.add("invalid_base64", line)
        return
    if len(data) > MAX_IMAGE_BYTES:
        report.add("image_too_large", line)
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as image:
            fmt, mode = image.format, image.mode
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        report.add("unreadable_image", line)
        return
    expected = ALLOWED_FORMATS.get(fmt or "")
    if expected is None or declared.replace("jpg", "jpeg") != expected:
        report.add("unsupported_image_format", line)
    if mode not in ALLOWED_MODES:
        report.add("unsupported_image_mode", line)
