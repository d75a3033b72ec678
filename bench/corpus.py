"""The benchmarks' generated corpora: small JPEGs, 4032x3024 EXIF-rotated phone photos, 1920x1080
PNG screenshots, each kind as label folders of near-duplicate variants."""

from __future__ import annotations

import io
import os
import struct
import zlib
from pathlib import Path

KINDS = ("small", "phone", "png")


def phone_photo(seed: int) -> bytes:
    """A 4032x3024 JPEG of about 2.5 MB with EXIF orientation 6 (shown as portrait), like a phone's:
    smooth shapes, luminance texture and sensor-like fine noise (most of the bytes, gone at 1/8 scale)."""
    import numpy as np
    from PIL import Image, ImageChops, ImageDraw, ImageFilter

    rng = np.random.default_rng(seed)
    base = Image.fromarray(rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)).resize((1008, 756), Image.BICUBIC)
    draw = ImageDraw.Draw(base)
    for _ in range(60):
        x, y = int(rng.integers(-100, 1008)), int(rng.integers(-100, 756))
        box = (x, y, x + int(rng.integers(20, 400)), y + int(rng.integers(20, 300)))
        colour = tuple(int(v) for v in rng.integers(0, 256, 3))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)(box, fill=colour)
    scene = base.filter(ImageFilter.GaussianBlur(1.5)).resize((4032, 3024), Image.BICUBIC)
    texture = Image.effect_noise((1008, 756), 14).resize((4032, 3024), Image.BICUBIC)
    luminance = ImageChops.add(texture, Image.effect_noise((4032, 3024), 4), offset=-128)
    image = ImageChops.add(scene, Image.merge("RGB", (luminance, luminance, luminance)), offset=-128)
    exif = Image.Exif()
    exif[0x0112] = 6
    exif[0x010F] = "BenchPhone"  # Make
    out = io.BytesIO()
    image.save(out, "JPEG", quality=86, exif=exif.tobytes())
    return out.getvalue()


def small_photo(seed: int) -> bytes:
    import numpy as np
    from PIL import Image, ImageChops

    rng = np.random.default_rng(seed)
    scene = Image.fromarray(rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)).resize((500, 375), Image.BICUBIC)
    image = ImageChops.add(scene, Image.effect_noise((500, 375), 4).convert("RGB"), offset=-128)
    out = io.BytesIO()
    image.save(out, "JPEG", quality=90)
    return out.getvalue()


def _screenshot_png(seed: int) -> bytes:
    import numpy as np
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(seed)
    image = Image.fromarray(rng.integers(0, 256, (9, 16, 3), dtype=np.uint8)).resize((1920, 1080), Image.BILINEAR)
    draw = ImageDraw.Draw(image)
    for _ in range(60):
        x, y = int(rng.integers(0, 1800)), int(rng.integers(0, 1000))
        box = (x, y, x + int(rng.integers(20, 300)), y + int(rng.integers(10, 80)))
        draw.rectangle(box, fill=tuple(int(v) for v in rng.integers(0, 256, 3)))
        draw.text((x + 4, y + 4), f"window {seed}-{x}-{y}", fill=(0, 0, 0))
    out = io.BytesIO()
    image.save(out, "PNG", compress_level=6)
    return out.getvalue()


def _variant(data: bytes, n: int) -> bytes:
    """The same picture with different bytes: a JPEG comment (COM) segment after the first segment, or a
    PNG text chunk. Decoding cost is unchanged; the converter's duplicate check sees a new file."""
    tag = f"bench copy {n}".encode()
    if data[:2] == b"\xff\xd8":
        first_len = int.from_bytes(data[4:6], "big")
        cut = 4 + first_len
        segment = b"\xff\xfe" + (len(tag) + 2).to_bytes(2, "big") + tag
        return data[:cut] + segment + data[cut:]

    body = b"Comment\0" + tag
    chunk = struct.pack(">I", len(body)) + b"tEXt" + body + struct.pack(">I", zlib.crc32(b"tEXt" + body) & 0xFFFFFFFF)
    return data[:33] + chunk + data[33:]  # after the signature and IHDR


def build_kind(root: Path, kind: str, count: int, distinct: int, seed: int = 0) -> list[Path]:
    """``count`` files of one kind under ``root/<a|b>/``, from ``distinct`` generated pictures."""
    make = {"small": small_photo, "phone": phone_photo, "png": _screenshot_png}[kind]
    suffix = ".png" if kind == "png" else ".jpg"
    bases = [make(seed * 1000 + i) for i in range(min(distinct, count))]
    paths = []
    for n in range(count):
        path = root / ("a" if n % 2 == 0 else "b") / f"{kind}-{n:05d}{suffix}"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(_variant(bases[n % len(bases)], n))
        paths.append(path)
    return paths


# ---------------------------------------------------------------------------------------- measurements


def link_first_jpegs(source: Path, target: Path, count: int) -> None:
    """Hard-link the first ``count`` JPEGs under ``source`` (by file name) into ``target``, in the same
    label folders: a smaller corpus over the same files, no copy."""
    for path in sorted(source.rglob("*.jpg"), key=lambda p: p.name)[:count]:
        link = target / path.relative_to(source)
        link.parent.mkdir(parents=True, exist_ok=True)
        os.link(path, link)
