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
from typing import TYPE_CHECKING

from shared.conversion.small_rgb import to_rgb_small

if TYPE_CHECKING:
    from PIL import Image

DRAFT_TOLERANCE = 0.02
# Pillow's MAX_IMAGE_PIXELS (~89.5 MP, 268 MB as RGB). Larger images are refused before decoding.
# JPEGs may have twice as many: they are decoded at 1/4 or 1/8 scale (108 MP phone modes exist).
DEFAULT_MAX_PIXELS = 89_478_485
DEFAULT_MAX_FILE_BYTES = 100 * 1024 * 1024
# Shapes that make poor examples: a side under 8 px holds almost nothing, and past 20:1 the shrink to
# max_side leaves a sliver (a 512 px long side gives a short side under 26 px). Both are settings.
DEFAULT_MIN_SIDE = 8
# A Flex Consumption instance has 2,048 MB (its default instance memory). One image may use a tenth of it
# (file bytes + decoded pixels): two workers at ~80 MB of interpreter each plus their images stay under
# 600 MB, leaving the rest to the host and the main process. ``image_memory_budget`` derives it.
DEFAULT_INSTANCE_MEMORY_MB = 2048
IMAGE_MEMORY_SHARE = 0.1
# Bytes per pixel of Pillow's decoded modes (unknown modes count 4).
_MODE_BYTES = {"1": 1, "L": 1, "P": 1, "LA": 2, "La": 2, "PA": 2, "I;16": 2, "I;16L": 2, "I;16B": 2, "I;16N": 2,
               "RGB": 3, "YCbCr": 3, "LAB": 3, "HSV": 3, "RGBA": 4, "RGBa": 4, "RGBX": 4, "CMYK": 4, "I": 4, "F": 4}


def image_memory_budget(instance_memory_mb: int = DEFAULT_INSTANCE_MEMORY_MB) -> int:
    """Bytes one image may take while it is converted (file + decoded pixels), from the instance's memory."""
    return int(instance_memory_mb * 1024 * 1024 * IMAGE_MEMORY_SHARE)


DEFAULT_IMAGE_MEMORY_BUDGET = image_memory_budget()


def decoded_bytes(size: tuple[int, int], mode: str) -> int:
    """The bytes Pillow allocates for an image of this size and mode once decoded."""
    return size[0] * size[1] * _MODE_BYTES.get(mode, 4)
DEFAULT_MAX_ASPECT_RATIO = 20.0
# Input formats we decode (Pillow names). MPO is what many phones write (a JPEG with extra frames).
SUPPORTED_FORMATS = frozenset({"JPEG", "MPO", "PNG", "GIF", "WEBP", "BMP", "TIFF"})
_JPEG_FORMATS = frozenset({"JPEG", "MPO"})
_ORIENTATION_TAG = 0x0112


@dataclass(frozen=True)
class ImageSettings:
    """How images are normalised. Part of the dataset version."""

    max_side: int = 512
    quality: int = 85
    max_pixels: int = DEFAULT_MAX_PIXELS
    min_side: int = DEFAULT_MIN_SIDE
    max_aspect_ratio: float = DEFAULT_MAX_ASPECT_RATIO
    # Bytes one image may take in memory: its file plus its decoded pixels (see ``decoded_bytes``).
    memory_budget: int = DEFAULT_IMAGE_MEMORY_BUDGET


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


# What a file that is not a supported image looks like, from its first bytes (magic numbers). Only the
# name of the detected type is ever reported, never the bytes: a link to a secret file must not leak it.
_MAGIC: tuple[tuple[int, bytes, str], ...] = (
    (0, b"%PDF", "a PDF document"),
    (0, b"PK\x03\x04", "a zip archive (or an Office document)"),
    (0, b"\x1f\x8b", "a gzip archive"),
    (0, b"Rar!", "a RAR archive"),
    (0, b"7z\xbc\xaf", "a 7-Zip archive"),
    (0, b"\x7fELF", "a Linux program (ELF)"),
    (0, b"MZ", "a Windows program"),
    (0, b"\xd0\xcf\x11\xe0", "an old Microsoft Office document"),
    (0, b"SQLite format 3", "an SQLite database"),
    (4, b"ftypheic", "a HEIC photo (iPhone): export it as JPEG"),
    (4, b"ftypheix", "a HEIC photo (iPhone): export it as JPEG"),
    (4, b"ftypmif1", "a HEIF image: export it as JPEG"),
    (4, b"ftypavif", "an AVIF image: save it as JPEG, PNG or WEBP"),
    (4, b"ftyp", "a video or MP4-family file"),
    (0, b"RIFF", "a RIFF file (video or audio)"),
    (0, b"\x1aE\xdf\xa3", "a Matroska/WebM video"),
    (0, b"ID3", "an MP3 audio file"),
    (0, b"OggS", "an Ogg audio/video file"),
)


def describe_content(data: bytes) -> str:
    """What ``data`` looks like ("a PDF document", "a text file", ...): a detected type, never its bytes."""
    for offset, magic, kind in _MAGIC:
        if data[offset : offset + len(magic)] == magic:
            return kind
    head = data[:4096]
    text: str | None
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as error:
        text = head[: error.start].decode("utf-8") if error.start > len(head) - 4 else None
    if text is not None and all(ch.isprintable() or ch in "\t\r\n" for ch in text):
        start = text.lstrip().lower()
        if start.startswith(("<svg", "<?xml")):
            return "an SVG or XML file (vector images are not supported: export a PNG)"
        if start.startswith(("<!doctype html", "<html")):
            return "an HTML page (a web page saved instead of the image?)"
        if start.startswith(("{", "[")):
            return "a JSON or text file"
        return "a text file"
    return "binary data of an unknown type"


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
            image: Image.Image = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        return reject("not_an_image", f"not an image file that Pillow recognises: it looks like {describe_content(data)}")
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
            _draft_jpeg(image, settings.max_side)  # libjpeg decodes at 1/2, 1/4 or 1/8 scale
        needed = decoded_bytes(image.size, image.mode) + len(data)
        if needed > settings.memory_budget:
            return reject(
                "too_large_to_decode",
                f"{fmt} {image.mode} of {width}x{height} needs {needed / 2**20:.0f} MB to decode, above the "
                f"{settings.memory_budget / 2**20:.0f} MB budget per image (a tenth of the instance memory, "
                "VISIONTUNE_INSTANCE_MEMORY_MB); save a smaller copy (fewer pixels, or 8-bit colour)",
            )
        # Decode every pixel BEFORE anything else reads the file: a PNG's getexif() loads the image
        # itself, and a second load() after a swallowed error returns the partial pixels silently.
        image.load()
        orientation = _orientation(image)
        image = to_rgb_small(image, settings.max_side)
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


def _orientation(image: Image.Image) -> int:
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
def _transpose_for(orientation: int) -> Image.Transpose | None:
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


def _draft_jpeg(image: Image.Image, max_side: int) -> None:
    scale = draft_scale(image.size, max_side)
    if scale > 1:
        width, height = image.size
        # Pillow picks the largest scale s with width // s >= w and height // s >= h.
        image.draft("RGB", (max(1, width // scale), max(1, height // scale)))
    else:
        image.draft("RGB", None)  # still lets libjpeg convert YCbCr -> RGB itself
