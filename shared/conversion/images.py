"""One source file in, one upright RGB JPEG of at most ``max_side`` pixels out (or a precise rejection).

Pure functions of the bytes and the settings, so they run unchanged in worker processes.

Speed: for JPEGs the decoder is put in draft mode *before* anything that forces a full decode, so a
12 MP photo is decoded at 1/4 or 1/8 scale by libjpeg's DCT scaling (the entropy decoding that remains
is the floor). The draft may stop up to ``DRAFT_TOLERANCE`` short of ``max_side`` (a 4032x3024 photo
comes out 504x378 instead of 512x384): that skips a resample that costs as much as the decode saves,
and a low-detail image is billed 85 tokens either way. EXIF orientation and mode conversion are
applied to the small image.
"""

from __future__ import annotations

import functools
import io
import struct
import warnings
from dataclasses import dataclass

DRAFT_TOLERANCE = 0.02
# Pillow's MAX_IMAGE_PIXELS (~89.5 MP, 268 MB as RGB). Larger images are refused before decoding.
# JPEGs may have twice as many: they are decoded at 1/4 or 1/8 scale (108 MP phone modes exist).
DEFAULT_MAX_PIXELS = 89_478_485
DEFAULT_MAX_FILE_BYTES = 100 * 1024 * 1024
# Shapes that make poor examples: a side under 8 px holds almost nothing, and past 20:1 the shrink to
# max_side leaves a sliver (a 512 px long side gives a short side under 26 px). Both are settings.
DEFAULT_MIN_SIDE = 8
DEFAULT_MAX_ASPECT_RATIO = 20.0
# Input formats we decode (Pillow names). MPO is what many phones write (a JPEG with extra frames).
SUPPORTED_FORMATS = frozenset({"JPEG", "MPO", "PNG", "GIF", "WEBP", "BMP", "TIFF"})
_JPEG_FORMATS = frozenset({"JPEG", "MPO"})
BACKGROUND = (255, 255, 255)  # transparent pixels are flattened onto white
_ORIENTATION_TAG = 0x0112


@dataclass(frozen=True)
class ImageSettings:
    """How images are normalised. Part of the dataset version."""

    max_side: int = 512
    quality: int = 85
    max_pixels: int = DEFAULT_MAX_PIXELS
    min_side: int = DEFAULT_MIN_SIDE
    max_aspect_ratio: float = DEFAULT_MAX_ASPECT_RATIO


@dataclass(frozen=True)
class ImageResult:
    """A converted image (``jpeg`` set) or a rejection (``code`` and ``reason`` set)."""

    jpeg: bytes | None = None
    width: int = 0
    height: int = 0
    source_format: str = ""
    source_mode: str = ""
    source_size: tuple[int, int] = (0, 0)
    code: str | None = None
    reason: str | None = None

    @property
    def ok(self) -> bool:
        return self.jpeg is not None


def reject(code: str, reason: str) -> ImageResult:
    return ImageResult(code=code, reason=reason)


def _describe_start(data: bytes) -> str:
    head = data[:16]
    printable = sum(32 <= b < 127 or b in (9, 10, 13) for b in head)
    if head and printable == len(head):
        return f"it starts with text {head.decode('ascii', 'replace')!r}"
    return f"it starts with bytes {head[:8].hex(' ')}"


def normalise_image(data: bytes, settings: ImageSettings) -> ImageResult:
    """Decode ``data`` (any supported format), orient it upright, flatten alpha onto white, convert to
    RGB, shrink so the longer side is at most ``max_side`` (never enlarge) and encode it as JPEG.

    Never raises for bad input: every failure becomes a rejection with a stable ``code`` (``empty``,
    ``not_an_image``, ``unsupported_format``, ``decompression_bomb``, ``truncated``, ``corrupt``,
    ``too_small``, ``extreme_aspect_ratio``) and a reason a person can act on. Every pixel is decoded
    before the image is used, so damage the header does not show is still found.
    """
    from PIL import Image, UnidentifiedImageError

    if not data:
        return reject("empty", "empty file (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        return reject("not_an_image", f"not an image file that Pillow recognises: {_describe_start(data)}")
    except Image.DecompressionBombError as exc:
        return reject("decompression_bomb", f"decompression bomb guard: {exc}")
    except (OSError, SyntaxError, ValueError, EOFError, struct.error) as exc:
        if "truncated" in str(exc).lower():  # cut off so early that even the header is incomplete
            return reject(
                "truncated",
                f"truncated file: it ends inside the image header after {len(data):,} bytes; "
                "the file is incomplete, download or copy it again",
            )
        return reject("corrupt", f"unreadable image header: {exc}")

    fmt = image.format or "?"
    if fmt not in SUPPORTED_FORMATS:
        return reject(
            "unsupported_format",
            f"{fmt} images are not supported; save it as JPEG, PNG or WEBP "
            f"(supported: {', '.join(sorted(SUPPORTED_FORMATS))})",
        )
    width, height = image.size
    if width < 1 or height < 1:
        return reject("corrupt", f"{fmt} header gives an empty size {width}x{height}")
    limit = settings.max_pixels * (2 if fmt in _JPEG_FORMATS else 1)
    if width * height > limit:
        return reject(
            "decompression_bomb",
            f"{fmt} of {width}x{height} = {width * height / 1e6:.1f} megapixels exceeds the "
            f"{limit / 1e6:.1f} megapixel limit for {fmt} (decompression bomb guard); save a smaller copy",
        )
    source_mode = image.mode
    shape_problem = _shape_problem(width, height, settings)
    if shape_problem is not None:
        return reject(*shape_problem)

    try:
        if fmt in _JPEG_FORMATS:
            _draft_jpeg(image, settings.max_side)
        # Decode every pixel BEFORE anything else reads the file: a PNG's getexif() loads the image
        # itself, and a second load() after a swallowed error returns the partial pixels silently.
        image.load()
        orientation = _orientation(image)
        image = _to_rgb_small(image, settings.max_side)
    except Image.DecompressionBombError as exc:
        return reject("decompression_bomb", f"decompression bomb guard: {exc}")
    except OSError as exc:
        message = str(exc)
        if "truncated" in message:
            return reject("truncated", f"truncated {fmt}: {message}; the file is incomplete, download or copy it again")
        if "broken data stream" in message:
            return reject(
                "corrupt",
                f"damaged {fmt} pixel data ({message}): its header reads but the image does not decode; "
                "export or copy it again",
            )
        return reject("corrupt", f"corrupt {fmt}: {message}")
    except (SyntaxError, ValueError, EOFError, IndexError, TypeError, MemoryError, struct.error) as exc:
        return reject("corrupt", f"corrupt {fmt}: {type(exc).__name__}: {exc}")

    transpose = _transpose_for(orientation)
    if transpose is not None:
        image = image.transpose(transpose)
    out = io.BytesIO()
    image.save(out, "JPEG", quality=settings.quality)  # optimize=True: ~4% smaller, ~3% slower
    return ImageResult(
        jpeg=out.getvalue(),
        width=image.width,
        height=image.height,
        source_format=fmt,
        source_mode=source_mode,
        source_size=(width, height),
    )


def _orientation(image) -> int:
    """The EXIF orientation (1 when absent or unreadable: a broken EXIF block must not lose a good image)."""
    try:
        return int(image.getexif().get(_ORIENTATION_TAG, 1) or 1)
    except Exception:
        return 1


def _shape_problem(width: int, height: int, settings: ImageSettings) -> tuple[str, str] | None:
    """(code, reason) when the image is too small or too elongated to be a useful example, else None."""
    if min(width, height) < settings.min_side:
        return (
            "too_small",
            f"{width}x{height} pixels: a side is under the {settings.min_side}-pixel minimum "
            "(VISIONTUNE_MIN_SIDE); use a larger image",
        )
    ratio = max(width, height) / min(width, height)
    if ratio > settings.max_aspect_ratio:
        return (
            "extreme_aspect_ratio",
            f"{width}x{height} pixels: aspect ratio {ratio:.1f}:1 is beyond the {settings.max_aspect_ratio:g}:1 "
            "limit (VISIONTUNE_MAX_ASPECT_RATIO); crop it to the part that shows the label",
        )
    return None


@functools.cache
def _transpose_for(orientation: int):
    """The ``Image.Transpose`` that makes an image with this EXIF orientation upright (None: none)."""
    from PIL import Image

    t = Image.Transpose
    return {
        2: t.FLIP_LEFT_RIGHT,
        3: t.ROTATE_180,
        4: t.FLIP_TOP_BOTTOM,
        5: t.TRANSPOSE,
        6: t.ROTATE_270,
        7: t.TRANSVERSE,
        8: t.ROTATE_90,
    }.get(orientation)


def draft_scale(size: tuple[int, int], max_side: int) -> int:
    """The JPEG DCT scale (1, 2, 4 or 8) to decode at: the largest whose longer side is still at least
    ``max_side * (1 - DRAFT_TOLERANCE)`` (1 when the image is already small enough)."""
    longest = max(size)
    wanted = max_side * (1 - DRAFT_TOLERANCE)
    for scale in (8, 4, 2):
        if (longest + scale - 1) // scale >= wanted:
            return scale
    return 1


def _draft_jpeg(image, max_side: int) -> None:
    scale = draft_scale(image.size, max_side)
    if scale > 1:
        width, height = image.size
        # Pillow picks the largest scale s with width // s >= w and height // s >= h.
        image.draft("RGB", (max(1, width // scale), max(1, height // scale)))
    else:
        image.draft("RGB", None)  # still lets libjpeg convert YCbCr -> RGB itself


def _to_rgb_small(image, max_side: int):
    """Any mode -> RGB, at most ``max_side`` on the longer side (integer pre-reduction, then bicubic)."""
    from PIL import Image

    mode = image.mode
    if mode in ("I;16", "I;16L", "I;16B", "I;16N"):
        # 16-bit grey: scale 0..65535 to 0..255 (Pillow's direct conversion would clip at 255).
        image = image.convert("I").point(lambda v: v * (1 / 257)).convert("L")
    elif mode in ("I", "F"):
        low, high = image.getextrema()
        span = (high - low) or 1
        image = image.convert("F").point(lambda v: (v - low) * (255 / span)).convert("L")
    elif mode == "CMYK":
        image = _cmyk_to_rgb(image)
    elif mode == "1":
        image = image.convert("L")

    has_alpha = image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (
        image.mode in ("P", "L", "RGB") and "transparency" in image.info
    )
    if has_alpha:
        image = image.convert("RGBA")
    elif image.mode not in ("RGB", "L"):
        image = image.convert("RGB")

    if max(image.size) > max_side:
        image.thumbnail((max_side, max_side), Image.Resampling.BICUBIC, reducing_gap=1.5)

    if image.mode == "RGBA":
        flat = Image.new("RGB", image.size, BACKGROUND)
        flat.paste(image, mask=image.getchannel("A"))
        image = flat
    elif image.mode != "RGB":
        image = image.convert("RGB")
    return image


def _cmyk_to_rgb(image):
    """CMYK -> RGB through the file's ICC profile when it has one (print CMYK looks wrong otherwise)."""
    profile = image.info.get("icc_profile")
    if profile:
        try:
            from PIL import ImageCms

            source = ImageCms.ImageCmsProfile(io.BytesIO(profile))
            srgb = ImageCms.createProfile("sRGB")
            return ImageCms.profileToProfile(image, source, srgb, outputMode="RGB")
        except Exception:  # a broken profile: fall back to Pillow's plain conversion
            pass
    return image.convert("RGB")
