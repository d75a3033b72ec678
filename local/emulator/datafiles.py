"""Parsing and validating uploaded JSONL files the way the service does, with its kind of messages."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

from local.emulator.learners import ImageError, decode_image_url, open_image

MIN_TRAINING_EXAMPLES = 10
MAX_IMAGES_PER_EXAMPLE = 64
MAX_IMAGE_EXAMPLES = 50_000
MAX_BATCH_REQUESTS = 100_000
IMAGE_TOKENS_LOW_DETAIL = 85
ROLES = ("system", "user", "assistant", "tool", "function", "developer")


class FileValidationError(ValueError):
    """The file is not usable; the message is what ``status_details`` says."""


def count_text_tokens(text: str) -> int:
    """A rough token count (about 4 characters per token), good enough for usage and billing figures."""
    return math.ceil(len(text) / 4) if text else 0


def message_text(content: Any) -> str:
    """The text of a message's content (a string or a list of parts)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            part.get("text", "") for part in content if isinstance(part, dict) and part.get("type") == "text"
        )
    return ""


def message_images(content: Any) -> list[dict[str, Any]]:
    """The ``image_url`` objects of a message's content parts."""
    if not isinstance(content, list):
        return []
    images: list[dict[str, Any]] = []
    for part in content:
        if isinstance(part, dict) and part.get("type") == "image_url":
            image_url = part.get("image_url")
            images.append(image_url if isinstance(image_url, dict) else {"url": image_url})
    return images


def count_message_tokens(messages: list[dict[str, Any]]) -> tuple[int, int]:
    """(text tokens incl. 3 per message of overhead, number of images) of a message list."""
    text_tokens = 0
    images = 0
    for message in messages:
        text_tokens += 3 + count_text_tokens(message_text(message.get("content")))
        images += len(message_images(message.get("content")))
    return text_tokens, images


@dataclass
class TrainingExample:
    """One usable example: the target label and the image the classifier learns from."""

    label: str
    image: bytes | None
    tokens: int


@dataclass
class TrainingFile:
    """A validated fine-tuning file."""

    examples: list[TrainingExample] = field(default_factory=list)

    @property
    def tokens(self) -> int:
        return sum(example.tokens for example in self.examples)


def _lines(raw: bytes) -> list[tuple[int, str]]:
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise FileValidationError(f"Invalid file format. The file must be UTF-8 encoded JSONL: {exc}.") from None
    lines = [(number, line) for number, line in enumerate(text.splitlines(), start=1) if line.strip()]
    if not lines:
        raise FileValidationError("Invalid file format. The file is empty.")
    return lines


def _parse_json_line(number: int, line: str) -> dict[str, Any]:
    try:
        value = json.loads(line)
    except json.JSONDecodeError as exc:
        raise FileValidationError(f"Invalid file format. Line {number}: the line is not valid JSON ({exc.msg}).") from None
    if not isinstance(value, dict):
        raise FileValidationError(f"Invalid file format. Line {number}: each line must be a JSON object.")
    return value


def parse_training_file(raw: bytes) -> TrainingFile:
    """Validate a chat-format fine-tuning JSONL (with image rules) and return its examples."""
    parsed = TrainingFile()
    image_examples = 0
    for number, line in _lines(raw):
        example = _parse_json_line(number, line)
        messages = example.get("messages")
        if not isinstance(messages, list) or not messages:
            raise FileValidationError(
                f"Invalid file format. Line {number}: key 'messages' is required and must be a non-empty list."
            )
        label: str | None = None
        image: bytes | None = None
        images = 0
        for position, message in enumerate(messages):
            where = f"Line {number}, message {position + 1}"
            if not isinstance(message, dict) or message.get("role") not in ROLES:
                raise FileValidationError(
                    f"Invalid file format. {where}: each message needs a 'role' of system, user or assistant."
                )
            content = message.get("content")
            if not isinstance(content, (str, list)):
                raise FileValidationError(f"Invalid file format. {where}: 'content' must be a string or a list.")
            parts = message_images(content)
            if parts and message["role"] != "user":
                raise FileValidationError(
                    f"Invalid file format. {where}: images are only allowed in user messages."
                )
            for part in parts:
                images += 1
                try:
                    raw_image = decode_image_url(part.get("url"))
                    open_image(raw_image, strict=True)
                except ImageError as exc:
                    raise FileValidationError(f"Invalid image. {where}: {exc}.") from None
                image = raw_image
            if message["role"] == "assistant":
                label = message_text(content).strip()
        if images > MAX_IMAGES_PER_EXAMPLE:
            raise FileValidationError(
                f"Invalid file format. Line {number}: {images} images; an example may contain at most "
                f"{MAX_IMAGES_PER_EXAMPLE} images."
            )
        if not label:
            raise FileValidationError(
                f"Invalid file format. Line {number}: each example must end with an assistant message with content."
            )
        image_examples += 1 if images else 0
        text_tokens, _ = count_message_tokens(messages)
        parsed.examples.append(
            TrainingExample(label=label, image=image, tokens=text_tokens + IMAGE_TOKENS_LOW_DETAIL * images)
        )
    if image_examples > MAX_IMAGE_EXAMPLES:
        raise FileValidationError(
            f"The file contains {image_examples} examples with images; the limit is {MAX_IMAGE_EXAMPLES}."
        )
    if len(parsed.examples) < MIN_TRAINING_EXAMPLES:
        raise FileValidationError(
            f"Training file has {len(parsed.examples)} example(s), but must have at least "
            f"{MIN_TRAINING_EXAMPLES} examples."
        )
    return parsed


def check_jsonl(raw: bytes) -> int:
    """Check that a batch input file is JSONL of objects; returns the number of lines."""
    lines = _lines(raw)
    for number, line in lines:
        _parse_json_line(number, line)
    return len(lines)


@dataclass
class BatchRequest:
    """One line of a batch input file."""

    line: int
    custom_id: str
    body: dict[str, Any]


def parse_batch_input(raw: bytes, *, endpoint: str) -> tuple[list[BatchRequest], str]:
    """Validate a batch input file; returns its requests and the model (deployment) every line names.

    Raises ``FileValidationError`` whose message names the line, as the batch's ``errors`` do.
    """
    requests: list[BatchRequest] = []
    seen: set[str] = set()
    model: str | None = None
    for number, line in _lines(raw):
        value = _parse_json_line(number, line)
        custom_id = value.get("custom_id")
        if not isinstance(custom_id, str) or not custom_id:
            raise FileValidationError(f"Line {number}: 'custom_id' is required and must be a string.")
        if custom_id in seen:
            raise FileValidationError(f"Line {number}: duplicate custom_id '{custom_id}'; every custom_id must be unique.")
        seen.add(custom_id)
        if value.get("method") != "POST":
            raise FileValidationError(f"Line {number}: 'method' must be 'POST'.")
        url = value.get("url")
        if _normal_endpoint(url) != _normal_endpoint(endpoint):
            raise FileValidationError(
                f"Line {number}: 'url' {url!r} does not match the batch endpoint {endpoint!r}."
            )
        body = value.get("body")
        if not isinstance(body, dict):
            raise FileValidationError(f"Line {number}: 'body' must be an object.")
        line_model = body.get("model")
        if not isinstance(line_model, str) or not line_model:
            raise FileValidationError(f"Line {number}: 'body.model' (the batch deployment name) is required.")
        if model is None:
            model = line_model
        elif line_model != model:
            raise FileValidationError(
                f"Line {number}: the model '{line_model}' differs from '{model}'; every line of a batch must use "
                "the same model deployment."
            )
        requests.append(BatchRequest(line=number, custom_id=custom_id, body=body))
        if len(requests) > MAX_BATCH_REQUESTS:
            raise FileValidationError(
                f"The input file has more than {MAX_BATCH_REQUESTS} requests; split it into several batches."
            )
    assert model is not None
    return requests, model


def _normal_endpoint(url: Any) -> str:
    text = str(url or "")
    return text[3:] if text.startswith("/v1/") else text
