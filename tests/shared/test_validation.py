"""The independent JSONL checker: cookbook format checks + Azure vision rules."""

from __future__ import annotations

import base64
import json

import pytest
from PIL import Image

from shared.validation import validate_file, validate_lines
from tests.shared.conversion import image_cases as cases


def data_url(data: bytes, kind: str = "jpeg") -> str:
    return f"data:image/{kind};base64," + base64.b64encode(data).decode()


JPEG_URL = data_url(cases.photo_jpeg())


def example(url: str = JPEG_URL, answer: str = "cat", **image_extra) -> dict:
    return {
        "messages": [
            {"role": "system", "content": "Classify."},
            {"role": "user", "content": [{"type": "image_url", "image_url": {"url": url, "detail": "low", **image_extra}}]},
            {"role": "assistant", "content": answer},
        ]
    }


def lines(*examples) -> list[bytes]:
    return [json.dumps(e).encode() + b"\n" for e in examples]


def errors_of(*bad, good: int = 10) -> dict[str, int]:
    report = validate_lines(lines(*([example()] * good), *bad))
    return dict(report.errors)


def test_a_good_file_passes(tmp_path):
    path = tmp_path / "train.jsonl"
    path.write_bytes(b"".join(lines(*[example()] * 12)))
    report = validate_file(path)
    assert report.ok
    assert (report.examples, report.image_examples, report.images) == (12, 12, 12)


def test_png_rgba_and_webp_and_https_are_allowed():
    rgba = data_url(cases.rgba_png(), "png")
    webp = data_url(cases.encode(cases.pattern(30, 20), "WEBP"), "webp")
    assert errors_of(example(rgba), example(webp), example("https://example.com/cat.jpg")) == {}


@pytest.mark.parametrize(
    ("bad", "error"),
    [
        ([1, 2], "data_type"),
        ({"prompt": "x"}, "missing_messages_list"),
        ({"messages": [{"content": "x"}, {"role": "assistant", "content": "a"}]}, "message_missing_key"),
        (
            {"messages": [{"role": "user", "content": "x", "extra": 1}, {"role": "assistant", "content": "a"}]},
            "message_unrecognized_key",
        ),
        ({"messages": [{"role": "robot", "content": "x"}, {"role": "assistant", "content": "a"}]}, "unrecognized_role"),
        ({"messages": [{"role": "user", "content": ""}, {"role": "assistant", "content": "a"}]}, "missing_content"),
        ({"messages": [{"role": "user", "content": "x"}]}, "example_missing_assistant_message"),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_cookbook_format_errors(bad, error):
    assert error in errors_of(bad)


def test_image_in_an_assistant_message_is_an_error():
    bad = example()
    bad["messages"][2]["content"] = [{"type": "image_url", "image_url": {"url": JPEG_URL}}]
    assert errors_of(bad) == {"image_not_in_user_message": 1}


def test_image_rules():
    grey = data_url(cases.encode(Image.new("L", (20, 20), 128), "JPEG"))
    cmyk = data_url(cases.cmyk_jpeg())
    gif = data_url(cases.animated_gif(), "gif")
    huge = data_url(cases.encode(cases.pattern(40, 30), "PNG") + b"\0" * (10 * 1024 * 1024 + 1), "png")
    found = errors_of(
        example(grey),
        example(cmyk),
        example(gif),
        example(huge),
        example(data_url(b"not an image")),
        example("data:image/jpeg;base64,@@@"),
        example("ftp://example.com/x.jpg"),
        example(detail="ultra"),
        example(data_url(cases.photo_jpeg(), "png")),  # the data URL lies about the type
    )
    assert found == {
        "unsupported_image_mode": 3,  # L, CMYK and the GIF's P
        "unsupported_image_format": 2,
        "image_too_large": 1,
        "unreadable_image": 1,
        "invalid_base64": 1,
        "invalid_image_url": 1,
        "invalid_image_detail": 1,
    }


def test_too_many_images_in_one_example():
    bad = example()
    bad["messages"][1]["content"] = bad["messages"][1]["content"] * 65
    assert errors_of(bad) == {"too_many_images": 1}


def test_bom_invalid_json_and_too_few_examples():
    report = validate_lines([b"\xef\xbb\xbf" + lines(example())[0], b"{not json\n", b"\n"])
    assert dict(report.errors) == {"bom": 1, "invalid_json": 1, "too_few_examples": 1}
    assert report.lines["invalid_json"] == [2]
    assert validate_lines([], min_examples=0).ok
