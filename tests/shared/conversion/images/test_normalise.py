"""Per-image normalisation on real files of every awkward kind; a file cut off inside its header is reported
as truncated (with its size), not as a vague header error."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from shared.conversion.images import ImageSettings, draft_scale, normalise_image
from tests.shared.conversion import image_cases as cases

SETTINGS = ImageSettings()


def decode(result) -> Image.Image:
    assert result.ok, (result.code, result.reason)
    image = Image.open(io.BytesIO(result.jpeg))
    assert image.format == "JPEG"
    assert image.mode == "RGB"
    assert image.size == (result.width, result.height)
    return image


def close(pixel, expected, tolerance=40) -> bool:
    return all(abs(a - b) <= tolerance for a, b in zip(pixel, expected, strict=True))


@pytest.mark.parametrize(
    ("orientation", "red_corner"),
    [(1, "top_left"), (3, "bottom_right"), (6, "top_right"), (8, "bottom_left")],
)
def test_exif_orientation_is_applied_so_the_output_is_upright(orientation, red_corner):
    # Stored 400x300 (landscape); orientations 6 and 8 are shown as 300x400 (portrait).
    image = decode(normalise_image(cases.marked_photo(400, 300, orientation), SETTINGS))
    portrait = orientation in (6, 8)
    assert image.size == ((300, 400) if portrait else (400, 300))
    w, h = image.size
    corners = {"top_left": (10, 10), "top_right": (w - 11, 10), "bottom_left": (10, h - 11), "bottom_right": (w - 11, h - 11)}
    for name, xy in corners.items():
        expected = cases.RED if name == red_corner else cases.BLUE
        assert close(image.getpixel(xy), expected), (orientation, name, image.getpixel(xy))


def test_rotated_12_megapixel_phone_photo_is_upright_and_at_most_max_side():
    data = cases.marked_photo(4032, 3024, 6)
    image = decode(normalise_image(data, SETTINGS))
    assert max(image.size) <= 512
    assert image.height > image.width  # portrait, as the phone showed it
    # decoded at 1/8 scale: 504x378 stored -> 378x504 upright (within the 2% draft tolerance of 512)
    assert image.size == (378, 504)
    assert close(image.getpixel((image.width - 10, 10)), cases.RED)
    assert close(image.getpixel((10, 10)), cases.BLUE)


def test_large_png_is_shrunk_to_max_side_keeping_the_aspect_ratio():
    data = cases.encode(cases.pattern(1920, 1080), "PNG")
    image = decode(normalise_image(data, SETTINGS))
    assert image.size == (512, 288)


def test_small_images_are_never_enlarged_and_max_side_is_honoured():
    assert decode(normalise_image(cases.photo_jpeg(size=(96, 72)), SETTINGS)).size == (96, 72)
    small = decode(normalise_image(cases.encode(cases.pattern(1000, 500), "PNG"), ImageSettings(max_side=100)))
    assert small.size == (100, 50)


def test_draft_scale_picks_the_smallest_dct_scale_within_tolerance():
    assert draft_scale((4032, 3024), 512) == 8  # 504 px >= 98% of 512
    assert draft_scale((3000, 2000), 512) == 4  # 750 px; 1/8 would give 375
    assert draft_scale((500, 375), 512) == 1
    assert draft_scale((1024, 768), 512) == 2


def test_animated_gif_keeps_the_first_frame():
    image = decode(normalise_image(cases.animated_gif(), SETTINGS))
    assert image.size == (40, 30)
    assert close(image.getpixel((20, 15)), cases.RED)


@pytest.mark.parametrize(
    ("data", "code", "words"),
    [
        (b"", "empty", "0 bytes"),
        (b"this is a text file, not a JPEG\n", "not_an_image", "it looks like a text file"),
        (cases.truncated_jpeg(), "truncated", "truncated JPEG: image file is truncated"),
        (cases.png_bomb(), "decompression_bomb", "decompression bomb"),
        (cases.encode(cases.pattern(20, 20), "PPM"), "unsupported_format", "PPM images are not supported"),
    ],
    ids=["zero-byte", "text-named-jpg", "truncated", "bomb", "ppm"],
)
def test_bad_files_are_rejected_with_a_specific_reason(data, code, words):
    result = normalise_image(data, SETTINGS)
    assert not result.ok
    assert result.code == code
    assert words in result.reason


def test_pixel_limit_is_checked_before_decoding():
    data = cases.encode(cases.pattern(400, 300), "PNG")
    result = normalise_image(data, ImageSettings(max_pixels=100_000))
    assert result.code == "decompression_bomb"
    assert "400x300" in result.reason and "0.1 megapixel limit" in result.reason


def test_truncated_reason_says_how_many_bytes_were_not_processed():
    result = normalise_image(cases.truncated_jpeg(), SETTINGS)
    assert "bytes not processed" in result.reason


def test_same_input_gives_identical_bytes():
    data = cases.marked_photo(1200, 900, 6)
    assert normalise_image(data, SETTINGS).jpeg == normalise_image(data, SETTINGS).jpeg


def test_quality_changes_the_output_size():
    data = cases.encode(cases.pattern(800, 600, seed=3), "PNG")
    low = normalise_image(data, ImageSettings(quality=20)).jpeg
    high = normalise_image(data, ImageSettings(quality=95)).jpeg
    assert len(low) < len(high)


def test_a_jpeg_cut_inside_its_header_is_truncated_with_a_fix():
    buffer = io.BytesIO()
    Image.new("RGB", (640, 480), (120, 30, 200)).save(buffer, "JPEG", quality=90)
    cut = buffer.getvalue()[:300]
    result = normalise_image(cut, ImageSettings())
    assert result.code == "truncated"
    assert result.reason == (
        "truncated file: it ends inside the image header after 300 bytes; "
        "the file is incomplete, download or copy it again"
    )
