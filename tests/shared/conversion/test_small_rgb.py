"""Any decoded image to small RGB: modes converted (CMYK, 16-bit grey, transparency onto white) and a big
image reduced band by band to the same pixels as all at once."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from bench.hostile_images import rgba16_png
from shared.conversion import small_rgb
from shared.conversion.images import ImageSettings, normalise_image
from shared.conversion.small_rgb import to_rgb_small
from tests.shared.conversion import image_cases as cases


def small(data: bytes, max_side: int = 512) -> Image.Image:
    image = to_rgb_small(Image.open(io.BytesIO(data)), max_side)
    assert image.mode == "RGB" and max(image.size) <= max_side
    return image


def close(pixel, expected, tolerance=40) -> bool:
    return all(abs(a - b) <= tolerance for a, b in zip(pixel, expected, strict=True))


def test_cmyk_jpeg_becomes_rgb():
    assert close(small(cases.cmyk_jpeg()).getpixel((40, 30)), cases.RED, tolerance=60)


def test_16_bit_grey_is_scaled_not_clipped():
    r, g, b = small(cases.grey16_png(32768)).getpixel((10, 10))
    assert 120 <= r <= 135 and r == g == b  # 32768/65535 of white, not clipped to 255


@pytest.mark.parametrize(
    ("data", "transparent_xy", "opaque_xy", "opaque_colour"),
    [
        (cases.palette_transparent_png(), (5, 5), (60, 5), cases.GREEN),
        (cases.la_png(), (5, 5), (60, 5), (0, 0, 0)),
        (cases.rgba_png(), (5, 5), (60, 5), cases.BLUE),
    ],
    ids=["P-with-transparency", "LA", "RGBA"],
)
def test_alpha_is_flattened_onto_white(data, transparent_xy, opaque_xy, opaque_colour):
    image = small(data)
    assert close(image.getpixel(transparent_xy), cases.WHITE, tolerance=10)
    assert close(image.getpixel(opaque_xy), opaque_colour)


@pytest.mark.parametrize(
    "make",
    [
        lambda: cases.encode(cases.pattern(1500, 1100, seed=1).convert("P"), "PNG"),
        lambda: cases.palette_transparent_png(),
        lambda: cases.encode(cases.pattern(1400, 900, seed=2).convert("RGBA"), "PNG"),
        lambda: cases.encode(cases.pattern(1300, 1700, seed=3).convert("LA"), "PNG"),
        lambda: cases.encode(Image.linear_gradient("L").resize((1600, 1200)).convert("I;16"), "PNG"),
        lambda: cases.encode(cases.pattern(1700, 1300, seed=4).convert("CMYK"), "JPEG", quality=95),
        lambda: rgba16_png(1600, 1000),
    ],
)
def test_band_by_band_conversion_gives_the_same_pixels(monkeypatch, make):
    data = make()
    whole = normalise_image(data, ImageSettings())
    monkeypatch.setattr(small_rgb, "_BAND_BYTES", 1)  # bands of one reduction block of rows
    banded = normalise_image(data, ImageSettings())
    assert whole.ok and banded.ok
    assert whole.jpeg == banded.jpeg
