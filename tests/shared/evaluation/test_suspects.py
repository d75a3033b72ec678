"""The review queue: both models agree on a label other than the dataset's."""

from __future__ import annotations

import base64
import io
import json

from shared.evaluation.metrics import ScoredExample
from shared.evaluation.suspects import find_suspects, line_index, thumbnails

LABELS = ["cat", "dog", "fox"]


def _ex(i: int, truth: str, answer: str | None, confidence: float | None = None, error: str | None = None) -> ScoredExample:
    return ScoredExample(custom_id=f"t-{i:06d}", truth=truth, answer=answer, confidence=confidence, error=error)


def test_only_images_both_models_call_the_same_other_label_most_confident_first() -> None:
    candidate = [
        _ex(0, "cat", "dog", 0.6),   # both say dog: suspect
        _ex(1, "cat", "Dog.", 0.9),  # both say dog (wrapped answer): suspect, more confident
        _ex(2, "cat", "cat", 0.99),  # right
        _ex(3, "cat", "dog", 0.8),   # the other says fox: a disagreement, not a suspect
        _ex(4, "fox", "I am not sure"),  # off-label
        _ex(5, "fox", "dog"),        # the other failed
        _ex(6, "dog", "fox"),        # no confidence: last
    ]
    other = [
        _ex(0, "cat", "dog", 0.8),
        _ex(1, "cat", "dog"),
        _ex(2, "cat", "dog"),
        _ex(3, "cat", "fox"),
        _ex(4, "fox", "I am not sure"),
        _ex(5, "fox", None, error="HTTP 500"),
        _ex(6, "dog", "fox"),
    ]
    found = find_suspects(candidate, other, LABELS, "incumbent")
    assert [(s["custom_id"], s["answer"]) for s in found] == [("t-000001", "dog"), ("t-000000", "dog"), ("t-000006", "fox")]
    assert found[0]["confidence"] == 0.9 and abs(found[1]["confidence"] - 0.7) < 1e-9 and found[2]["confidence"] is None
    assert found[0]["candidate_answer"] == "Dog." and found[0]["other_role"] == "incumbent"


def test_thumbnails_come_from_the_wanted_lines_of_test_jsonl() -> None:
    from PIL import Image

    def line(color: tuple[int, int, int]) -> bytes:
        out = io.BytesIO()
        Image.new("RGB", (300, 200), color).save(out, "JPEG")
        url = "data:image/jpeg;base64," + base64.b64encode(out.getvalue()).decode()
        return json.dumps({"messages": [
            {"role": "system", "content": "x"},
            {"role": "user", "content": [{"type": "image_url", "image_url": {"url": url, "detail": "low"}}]},
            {"role": "assistant", "content": "cat"},
        ]}).encode() + b"\n"

    lines = [line((255, 0, 0)), b"\n", line((0, 255, 0)), b"not json\n"]
    pictures = thumbnails(lines, {line_index("t-000001"), 2})
    assert set(pictures) == {1}  # line 2 (the third non-blank one) is broken: no thumbnail, no error
    image = Image.open(io.BytesIO(base64.b64decode(pictures[1].split(",", 1)[1])))
    assert max(image.size) == 64 and image.getpixel((10, 10))[1] > 200
