"""Hostile images for the memory benchmark and tests: small files that decode to very large images.

- ``palette_png``: a paletted PNG of 9400x9400 (about 100 KB; 88 MB decoded, 265 MB as RGB);
- ``rgba16_png``: a 16-bit-per-channel RGBA PNG (about 1 MB at 6000x6000; 144 MB decoded).
"""

from __future__ import annotations

import io
import struct
import zlib


def palette_png(side: int = 9400, seed: int = 0) -> bytes:
    """A paletted PNG of ``side`` x ``side``: a few coloured blocks (``seed`` moves them)."""
    from PIL import Image

    image = Image.new("P", (side, side), 0)
    image.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0, 0, 0, 255] + [0] * (252 * 3))
    margin = side // 90 + seed
    image.paste(1, (margin, margin, side // 2, side // 2))
    image.paste(2, (side // 2, side // 2, side - margin, side - margin))
    image.paste(3, (margin, side // 2 + seed, side // 3, side - margin))
    out = io.BytesIO()
    image.save(out, "PNG", optimize=True)
    return out.getvalue()


def rgba16_png(width: int, height: int, seed: int = 0) -> bytes:
    """A 16-bit RGBA PNG written chunk by chunk (Pillow cannot write one), compressible."""
    import numpy as np

    row = np.stack(
        [
            np.tile(np.arange(64, dtype=">u2") * 1000, width // 64 + 1)[:width],
            np.full(width, 4000 + seed * 997, dtype=">u2"),
            np.full(width, 20000, dtype=">u2"),
            np.full(width, 65535, dtype=">u2"),
        ],
        axis=1,
    ).tobytes()
    compressor = zlib.compressobj(9)
    body = b"".join(compressor.compress(b"\0" + row) for _ in range(height)) + compressor.flush()

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 16, 6, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", body) + chunk(b"IEND", b"")
