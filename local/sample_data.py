"""A real labelled image set with no download: scikit-learn's bundled handwritten digits.

``sklearn.datasets.load_digits`` ships 1,797 real 8x8 scans of handwritten digits (10 classes) inside
the package. ``export_digits`` writes them as an ImageFolder tree of PNGs for the demo and the tests.
"""

from __future__ import annotations

import math
from pathlib import Path


def export_digits(
    out_dir: Path,
    *,
    size: int = 64,
    limit_per_label: int | None = None,
    fraction: float | None = None,
    label_prefix: str = "",
    labels: tuple[int, ...] | None = None,
) -> Path:
    """Write the digits as ``out_dir/<label_prefix><digit>/<index>.png`` and return ``out_dir``.

    Images are dark ink on white, upscaled from 8x8 to ``size`` x ``size`` (bicubic), greyscale PNG.
    ``<index>`` is the image's position in scikit-learn's dataset (zero-padded), so a file keeps its
    name in every export. Subsets are deterministic and nested: each label keeps its first images in
    dataset order, ``limit_per_label`` of them and/or ``fraction`` (0-1] of them (rounded up), so a
    smaller export ("v1") is always contained in a larger one ("v2"). ``labels`` restricts the digits.
    """
    import numpy as np
    from PIL import Image
    from sklearn.datasets import load_digits

    if size < 8:
        raise ValueError(f"size must be at least 8 pixels, got {size}")
    if fraction is not None and not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    if limit_per_label is not None and limit_per_label < 1:
        raise ValueError(f"limit_per_label must be at least 1, got {limit_per_label}")

    digits = load_digits()
    out_dir = Path(out_dir)
    wanted = set(range(10) if labels is None else labels)
    for digit in sorted(wanted):
        indices = [int(i) for i in np.flatnonzero(digits.target == digit)]
        keep = len(indices)
        if fraction is not None:
            keep = min(keep, math.ceil(len(indices) * fraction))
        if limit_per_label is not None:
            keep = min(keep, limit_per_label)
        folder = out_dir / f"{label_prefix}{digit}"
        folder.mkdir(parents=True, exist_ok=True)
        for index in indices[:keep]:
            # 0..16 ink density -> 255 (paper) .. 0 (ink)
            pixels = (255 - np.rint(digits.images[index] * (255 / 16))).astype(np.uint8)
            image = Image.fromarray(pixels, mode="L").resize((size, size), Image.Resampling.BICUBIC)
            image.save(folder / f"{index:04d}.png", optimize=True)
    return out_dir
