"""The classic baseline's features and classifier (shared.evaluation.classic) on real images."""

from __future__ import annotations

import base64
import io
import json

import numpy as np
import pytest
from PIL import Image

from shared.aoai.scoring import read_test_items
from shared.evaluation.classic import (
    FEATURE_DIMS,
    ClassicDataError,
    decode_data_url,
    fit_classic,
    image_features,
    image_url_of,
    iter_split,
    training_bytes,
)


def _digits_jpegs():
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = []
    for pixels in digits.images:
        grey = (255 - pixels / 16 * 255).astype(np.uint8)
        image = Image.fromarray(grey, mode="L").resize((64, 64), Image.Resampling.BICUBIC).convert("RGB")
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=85)
        images.append(buffer.getvalue())
    return images, [str(t) for t in digits.target]


def _encoded(image: Image.Image, fmt: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt)
    return buffer.getvalue()


def _line(label: str, data: bytes) -> str:
    url = "data:image/jpeg;base64," + base64.b64encode(data).decode()
    return json.dumps({"messages": [
        {"role": "system", "content": "Classify."},
        {"role": "user", "content": [{"type": "image_url", "image_url": {"url": url, "detail": "low"}}]},
        {"role": "assistant", "content": label},
    ]})


@pytest.mark.parametrize("mode,fmt", [("RGB", "JPEG"), ("L", "PNG"), ("RGBA", "PNG"), ("CMYK", "JPEG"), ("P", "PNG")])
def test_features_have_a_fixed_size_for_any_image_mode(mode, fmt):
    image = Image.new("RGB", (300, 170), (200, 30, 40)).convert(mode)
    features = image_features(_encoded(image, fmt))
    assert features.shape == (FEATURE_DIMS,) and features.dtype == np.float32
    assert np.all(np.isfinite(features))


def test_features_see_shape_and_colour():
    red = Image.new("RGB", (64, 64), (220, 20, 20))
    blue = Image.new("RGB", (64, 64), (20, 20, 220))
    striped = red.copy()
    for x in range(0, 64, 8):
        striped.paste((255, 255, 255), (x, 0, x + 4, 64))
    f_red, f_blue, f_striped = (image_features(_encoded(i, "PNG")) for i in (red, blue, striped))
    assert not np.allclose(f_red, f_blue), "colour must change the features"
    assert not np.allclose(f_red, f_striped), "edges must change the features"
    assert np.array_equal(f_red, image_features(_encoded(red, "PNG"))), "features must be deterministic"


def test_a_classifier_on_real_digits_is_a_real_baseline():
    images, labels = _digits_jpegs()
    features = np.stack([image_features(b) for b in images])
    rng = np.random.default_rng(0)
    order = rng.permutation(len(images))
    train, test = order[:1200], order[1200:]
    model = fit_classic(features[train], [labels[i] for i in train])
    predicted = model.predict(features[test])
    accuracy = np.mean([p == labels[i] for p, i in zip(predicted, test, strict=True)])
    assert accuracy > 0.9, accuracy
    assert model.labels == [str(d) for d in range(10)] and model.iterations > 0
    assert model.predict(features[test[0]]) == [predicted[0]], "one image at a time gives the same answer"


def test_one_label_is_refused():
    with pytest.raises(ValueError, match="at least 2 labels"):
        fit_classic(np.zeros((3, FEATURE_DIMS), dtype=np.float32), ["a", "a", "a"])


def test_split_lines_give_the_evaluations_ids_labels_and_images():
    data = _encoded(Image.new("RGB", (20, 20), (1, 2, 3)), "JPEG")
    lines = [_line("cat", data), "", _line("dog", data).encode()]
    parsed = list(iter_split(lines))
    assert [(cid, label) for cid, label, _ in parsed] == [("t-000000", "cat"), ("t-000001", "dog")]
    assert [i.custom_id for i in read_test_items(lines)] == [cid for cid, _, _ in parsed]
    assert decode_data_url(parsed[0][2]) == data


def test_bad_lines_and_urls_say_what_is_wrong():
    no_image = json.dumps({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "cat"}]})
    with pytest.raises(ClassicDataError, match="line 2: the example has no image_url part"):
        list(iter_split([_line("cat", b"x"), no_image]))
    with pytest.raises(ClassicDataError, match="not a base64 data URL"):
        decode_data_url("https://example.com/cat.jpg")
    with pytest.raises(ClassicDataError, match="not valid base64"):
        decode_data_url("data:image/jpeg;base64,@@@")
    with pytest.raises(ClassicDataError):
        image_url_of([{"role": "user", "content": [{"type": "text", "text": "x"}]}])


def test_training_memory_grows_with_the_training_split():
    assert training_bytes(0) == 0
    assert training_bytes(2000) == 2 * training_bytes(1000) > 1000 * FEATURE_DIMS * 4
