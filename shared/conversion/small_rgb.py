"""Any decoded image to a small RGB image: mode conversion (16-bit and float grey scaled, CMYK through
its ICC profile, transparency flattened onto white), an integer box reduction done band by band, then
bicubic down to ``max_side``.

Band by band, a large image is never copied whole in a wider mode (a 9400x9400 palette PNG would take
265 MB as RGB): each band of rows is converted and reduced by the same factor before the next one.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import TYPE_CHECKING, cast

if TYPE_CHECKING:
    from PIL import Image

_Convert = Callable[["Image.Image"], "Image.Image"]

BACKGROUND = (255, 255, 255)  # transparent pixels are flattened onto white
# Rows converted at a time when a large decoded image is turned into small RGB (bounded extra memory).
_BAND_BYTES = 8 * 1024 * 1024


def to_rgb_small(image: Image.Image, max_side: int) -> Image.Image:
    """Any mode -> RGB, at most ``max_side`` on the longer side (integer pre-reduction, then bicubic).

    A large image is converted in bands of rows, each reduced by the same integer factor as it is
    converted, so the full-size image is never copied in a wider mode (a 9400x9400 palette PNG would take
    265 MB as RGB, a 16-bit RGBA PNG its size again per conversion). Box reduction of row bands aligned to
    the factor gives the same pixels as reducing the whole image."""
    from PIL import Image

    factor = _reduce_factor(image.size, max_side)
    convert = _mode_converter(image)
    if factor > 1:
        image = _banded(image, convert, factor)
    else:
        image = convert(image)
    if max(image.size) > max_side:
        image.thumbnail((max_side, max_side), Image.Resampling.BICUBIC, reducing_gap=1.5)
    if image.mode == "RGBA":
        flat = Image.new("RGB", image.size, BACKGROUND)
        flat.paste(image, mask=image.getchannel("A"))
        image = flat
    elif image.mode != "RGB":
        image = image.convert("RGB")
    return image


def _reduce_factor(size: tuple[int, int], max_side: int) -> int:
    """The integer box reduction Pillow's ``thumbnail(reducing_gap=1.5)`` would apply first."""
    return max(1, int(max(size) // (max_side * 1.5)))


def _mode_converter(image: Image.Image) -> _Convert:
    """A function taking (a band of) ``image`` to RGBA (when it has transparency), RGB or L."""
    mode = image.mode
    steps: list[_Convert] = []
    if mode in ("I;16", "I;16L", "I;16B", "I;16N"):
        # 16-bit grey: scale 0..65535 to 0..255 (Pillow's direct conversion would clip at 255).
        steps.append(lambda im: im.convert("I").point(lambda v: v * (1 / 257)).convert("L"))
    elif mode in ("I", "F"):
        # of the whole image, so every band is scaled alike; one band (I, F): (min, max)
        low, high = cast("tuple[float, float]", image.getextrema())
        span = (high - low) or 1
        steps.append(lambda im: im.convert("F").point(lambda v: (v - low) * (255 / span)).convert("L"))
    elif mode == "CMYK":
        steps.append(_cmyk_to_rgb)
    elif mode == "1":
        steps.append(lambda im: im.convert("L"))

    has_alpha = mode in ("RGBA", "LA", "PA", "RGBa", "La") or (
        mode in ("P", "L", "RGB") and "transparency" in image.info
    )
    converted_mode = "L" if steps and mode != "CMYK" else ("RGB" if mode == "CMYK" else mode)
    if has_alpha:
        steps.append(lambda im: im if im.mode == "RGBA" else im.convert("RGBA"))
    elif converted_mode not in ("RGB", "L"):
        steps.append(lambda im: im.convert("RGB"))

    def convert(im: Image.Image) -> Image.Image:
        for step in steps:
            im = step(im)
        return im

    return convert


def _banded(image: Image.Image, convert: _Convert, factor: int) -> Image.Image:
    """``convert`` then ``reduce(factor)`` applied band by band; returns the reduced image."""
    from PIL import Image

    width, height = image.size
    row_bytes = max(1, width * 4)
    rows = max(factor, (_BAND_BYTES // row_bytes) // factor * factor)
    canvas = None
    for top in range(0, height, rows):
        band = convert(image.crop((0, top, width, min(height, top + rows)))).reduce(factor)
        if canvas is None:
            canvas = Image.new(band.mode, ((width + factor - 1) // factor, (height + factor - 1) // factor))
        canvas.paste(band, (0, top // factor))
    if canvas is None:
        raise ValueError(f"image of {width}x{height} has no rows")
    return canvas


def _cmyk_to_rgb(image: Image.Image) -> Image.Image:
    """CMYK -> RGB through the file's ICC profile when it has one (print CMYK looks wrong otherwise)."""
    profile = image.info.get("icc_profile")
    if profile:
        try:
            from PIL import ImageCms

            source = ImageCms.ImageCmsProfile(io.BytesIO(profile))
            srgb = ImageCms.createProfile("sRGB")
            converted = ImageCms.profileToProfile(image, source, srgb, outputMode="RGB")
            if converted is not None:  # None only with inPlace=True
                return converted
        except Exception:  # a broken profile: fall back to Pillow's plain conversion
            pass
    return image.convert("RGB")
