"""The review queue of suspect labels: test images two models agree are something else.

When the candidate and the other model (the incumbent, or the base model for a first model) both answer
the same label for a test image, and that label is not the one the dataset gives it, the dataset's label
is the likeliest thing that is wrong. The queue lists those images, most confident first (the mean of the
two models' answer probabilities from logprobs, where they exist), each with a small thumbnail, the source
path and both answers, so a person can fix the data.
"""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Iterable, Sequence
from typing import Any

from shared.evaluation.answers import match_answer
from shared.evaluation.metrics import ScoredExample

THUMBNAIL_SIDE = 64
THUMBNAIL_QUALITY = 70
MAX_SUSPECTS = 200  # a longer queue is a data problem the per-class figures already show


def find_suspects(
    candidate: Sequence[ScoredExample], other: Sequence[ScoredExample], labels: Sequence[str], other_role: str
) -> list[dict[str, Any]]:
    """The suspects as dicts (``custom_id``, ``label``, ``answer``, both raw answers, ``other_role``,
    ``confidence``), most confident first (unknown confidence last), at most ``MAX_SUSPECTS``."""
    others = {e.custom_id: e for e in other}
    found: list[dict[str, Any]] = []
    for mine in candidate:
        theirs = others.get(mine.custom_id)
        if theirs is None or mine.failed or theirs.failed:
            continue
        answer = match_answer(mine.answer, labels)
        if answer is None or answer == mine.truth or match_answer(theirs.answer, labels) != answer:
            continue
        known = [c for c in (mine.confidence, theirs.confidence) if c is not None]
        found.append(
            {
                "custom_id": mine.custom_id,
                "label": mine.truth,
                "answer": answer,
                "candidate_answer": str(mine.answer),
                "other_role": other_role,
                "other_answer": str(theirs.answer),
                "confidence": sum(known) / len(known) if known else None,
            }
        )
    found.sort(key=lambda s: (s["confidence"] is None, -float(s["confidence"] or 0.0), str(s["custom_id"])))
    return found[:MAX_SUSPECTS]


def line_index(custom_id: str) -> int:
    """``t-000042`` -> 42: the position of the item among the non-blank lines of test.jsonl."""
    return int(custom_id.rsplit("-", 1)[1])


def thumbnails(lines: Iterable[bytes], wanted: set[int]) -> dict[int, str]:
    """Small JPEG data URLs of the images on the ``wanted`` non-blank lines of a test.jsonl stream."""
    from PIL import Image

    found: dict[int, str] = {}
    number = -1
    for raw in lines:
        if not raw.strip():
            continue
        number += 1
        if number not in wanted:
            continue
        try:
            record = json.loads(raw)
            url = next(
                part["image_url"]["url"]
                for message in record["messages"]
                if message.get("role") == "user" and isinstance(message.get("content"), list)
                for part in message["content"]
                if isinstance(part, dict) and part.get("type") == "image_url"
            )
            image = Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))).convert("RGB")
            image.thumbnail((THUMBNAIL_SIDE, THUMBNAIL_SIDE))
            out = io.BytesIO()
            image.save(out, "JPEG", quality=THUMBNAIL_QUALITY)
            found[number] = "data:image/jpeg;base64," + base64.b64encode(out.getvalue()).decode("ascii")
        except Exception:  # noqa: BLE001 - a thumbnail is a convenience: the entry stays without one
            continue
        if len(found) == len(wanted):
            break
    return found
