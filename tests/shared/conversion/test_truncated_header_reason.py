"""A file cut off inside its header is reported as truncated (with its size), not as a vague header error."""

import io

from PIL import Image

from shared.conversion.images import ImageSettings, normalise_image


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
