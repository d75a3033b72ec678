"""Builders of real image files for the converter tests (bytes, as the files would be on disk).

Shared by the conversion, validation and CLI tests (import ``tests.shared.conversion.image_cases``).
"""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

from PIL import Image

RED, GREEN, BLUE, WHITE = (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255)


def encode(image: Image.Image, fmt: str, **params) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, **params)
    return out.getvalue()


def pattern(width: int, height: int, seed: int = 0) -> Image.Image:
    """An RGB picture unique per ``seed``: a gradient with a seed-dependent tint."""
    import hashlib

    key = hashlib.sha256(str(seed).encode()).digest()
    grey = Image.linear_gradient("L").resize((width, height))
    tint = Image.new("RGB", (width, height), tuple(key[:3]))
    image = Image.blend(Image.merge("RGB", (grey, grey, grey)), tint, 0.5)
    image.paste(tuple(key[3:6]), (0, 0, max(1, width // 3), max(1, height // 3)))  # a seed-coloured block
    return image


def photo_jpeg(seed: int = 0, size: tuple[int, int] = (96, 72), quality: int = 90) -> bytes:
    return encode(pattern(*size, seed=seed), "JPEG", quality=quality)


def marked_photo(width: int, height: int, orientation: int) -> bytes:
    """A JPEG stored ``width`` x ``height`` with a red block in its stored top-left corner (on blue), and
    the EXIF orientation tag set: a viewer shows it rotated."""
    image = Image.new("RGB", (width, height), BLUE)
    image.paste(RED, (0, 0, width // 4, height // 4))
    exif = Image.Exif()
    exif[0x0112] = orientation
    return encode(image, "JPEG", quality=95, exif=exif.tobytes())


def cmyk_jpeg() -> bytes:
    return encode(Image.new("CMYK", (80, 60), (0, 255, 255, 0)), "JPEG", quality=95)  # pure red ink


def grey16_png(value: int = 32768) -> bytes:
    return encode(Image.new("I;16", (64, 48), value), "PNG")


def palette_transparent_png() -> bytes:
    """A P-mode PNG: left half transparent (palette index 0), right half green."""
    image = Image.new("P", (64, 32), 0)
    image.putpalette([0, 0, 0, 0, 255, 0] + [0] * 762)
    image.paste(1, (32, 0, 64, 32))
    return encode(image, "PNG", transparency=0)


def la_png() -> bytes:
    """Grey + alpha: left half fully transparent, right half opaque black."""
    image = Image.new("LA", (64, 32), (0, 0))
    image.paste((0, 255), (32, 0, 64, 32))
    return encode(image, "PNG")


def rgba_png() -> bytes:
    """Left half transparent, right half opaque blue."""
    image = Image.new("RGBA", (64, 32), (255, 0, 0, 0))
    image.paste((0, 0, 255, 255), (32, 0, 64, 32))
    return encode(image, "PNG")


def animated_gif() -> bytes:
    """Three frames: red, green, blue. The converter keeps the first."""
    frames = [Image.new("RGB", (40, 30), colour).convert("P") for colour in (RED, GREEN, BLUE)]
    return encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)


def truncated_jpeg() -> bytes:
    data = photo_jpeg(seed=99, size=(200, 150))
    return data[: len(data) // 2]


def png_bomb(width: int = 100_000, height: int = 100_000) -> bytes:
    """A tiny PNG whose header claims a huge image (a decompression bomb)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def write(root: Path, files: dict[str, bytes]) -> Path:
    """Write ``{relative path: bytes}`` under ``root``; returns ``root``."""
    for relative, data in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return root


def good_set(labels: tuple[str, ...] = ("cat", "dog"), per_label: int = 10, prefix: str = "", start: int = 0) -> dict[str, bytes]:
    """Distinct small JPEGs: ``{prefix}<label>/<n>.jpg``."""
    files = {}
    for li, label in enumerate(labels):
        for n in range(per_label):
            files[f"{prefix}{label}/{n:03d}.jpg"] = photo_jpeg(seed=start + li * 1000 + n)
    return files
