"""A classic image classifier to put beside the fine-tuned model: hand-made features a CPU computes in a
few milliseconds with no downloaded weights, and a linear classifier.

Features of one image (``FEATURE_DIMS`` floats), all from a 64x64 RGB thumbnail:

- HOG (Dalal & Triggs): gradient orientations in 8x8-pixel cells, 9 unsigned bins, L2-Hys normalised over
  overlapping 2x2-cell blocks: shape and texture, robust to lighting (1,764 values);
- a 16x16 grey thumbnail: coarse layout (256 values);
- a joint RGB histogram, 4 bins per channel: colour, which HOG ignores (64 values).

Why these and not raw pixels alone: pixels are not robust to small shifts and lighting, so a pixel-only
baseline would understate what a classic model does on photos; HOG + colour is the textbook pre-CNN
recipe and still needs no weights. HOG is computed with numpy here (a few lines) rather than pulling in
scikit-image for one function. The classifier is scikit-learn's multinomial logistic regression on
standardised features (fixed regularisation, a bounded number of L-BFGS iterations).

numpy, Pillow and scikit-learn are imported lazily (cold start of the function app).
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import warnings
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from shared.aoai.scoring import read_test_items
from shared.errors import VisiontuneError

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

THUMB_SIDE = 64
CELL = 8
ORIENTATIONS = 9
BLOCK = 2
GREY_SIDE = 16
COLOUR_BINS = 4
_CELLS = THUMB_SIDE // CELL
HOG_DIMS = (_CELLS - BLOCK + 1) ** 2 * BLOCK * BLOCK * ORIENTATIONS
FEATURE_DIMS = HOG_DIMS + GREY_SIDE * GREY_SIDE + COLOUR_BINS**3
# Bytes per training image while fitting: the float32 feature row, the float64 standardised copy the
# solver works on, and about as much again for the solver's own copies (measured, with margin).
BYTES_PER_FEATURE_WHILE_FITTING = 4 + 8 + 8
MAX_ITERATIONS = 300
REGULARISATION_C = 1.0

FEATURES_DESCRIPTION = (
    f"HOG ({ORIENTATIONS} orientations, {CELL}x{CELL} cells, {BLOCK}x{BLOCK} blocks on a {THUMB_SIDE}x{THUMB_SIDE} "
    f"thumbnail) + {GREY_SIDE}x{GREY_SIDE} grey pixels + {COLOUR_BINS}x{COLOUR_BINS}x{COLOUR_BINS} RGB histogram"
)
MODEL_NAME = "HOG + colour, logistic regression"
CLASSIFIER_DESCRIPTION = "multinomial logistic regression (scikit-learn, L-BFGS, standardised features)"


class ClassicDataError(VisiontuneError, ValueError):
    """A line of a split file that holds no usable image or label."""


# --- reading the converted splits --------------------------------------------------------------------
def image_url_of(messages: Sequence[dict[str, Any]]) -> str:
    """The (last) image URL in a chat example's messages."""
    url = None
    for message in messages:
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, list):
            for part in content:
                if isinstance(part, dict) and part.get("type") == "image_url":
                    url = (part.get("image_url") or {}).get("url")
    if not url:
        raise ClassicDataError("the example has no image_url part")
    return str(url)


def decode_data_url(url: str) -> bytes:
    """The bytes of a ``data:image/...;base64,`` URL (the converter writes only these)."""
    head, sep, payload = url.partition(",")
    if not sep or not head.startswith("data:") or ";base64" not in head:
        raise ClassicDataError(f"not a base64 data URL: {url[:40]}...")
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError) as error:
        raise ClassicDataError(f"the image data URL is not valid base64: {error}") from error


def iter_split(lines: Iterable[bytes | str]) -> Iterator[tuple[str, str, str]]:
    """``(custom_id, label, image data URL)`` of each example of a split file (chat fine-tuning JSONL), read
    line by line. ``custom_id`` is ``t-NNNNNN`` by position among the non-blank lines: the same ids the
    evaluation gives the test split (``shared.aoai.scoring.read_test_items``)."""
    number = 0
    for line_number, raw in enumerate(lines, start=1):
        text = raw.decode("utf-8-sig") if isinstance(raw, bytes) else raw
        if not text.strip():
            continue
        try:
            [item] = read_test_items([text])
            url = image_url_of(item.messages)
        except (ValueError, json.JSONDecodeError) as error:
            raise ClassicDataError(f"line {line_number}: {error}") from error
        yield f"t-{number:06d}", item.truth, url
        number += 1


# --- features -----------------------------------------------------------------------------------------
def _hog(grey: np.ndarray) -> np.ndarray:
    import numpy as np

    gy, gx = np.gradient(grey)
    magnitude = np.hypot(gx, gy)
    angle = np.mod(np.degrees(np.arctan2(gy, gx)), 180.0)
    bins = np.minimum((angle * (ORIENTATIONS / 180.0)).astype(np.int64), ORIENTATIONS - 1)
    # (cell_y, y_in_cell, cell_x, x_in_cell) -> per-cell orientation histograms
    onehot = np.zeros((THUMB_SIDE, THUMB_SIDE, ORIENTATIONS), dtype=np.float32)
    np.put_along_axis(onehot, bins[..., None], magnitude[..., None].astype(np.float32), axis=2)
    cells = onehot.reshape(_CELLS, CELL, _CELLS, CELL, ORIENTATIONS).sum(axis=(1, 3))
    windows = np.lib.stride_tricks.sliding_window_view(cells, (BLOCK, BLOCK), axis=(0, 1))
    blocks = windows.transpose(0, 1, 3, 4, 2).reshape(-1, BLOCK * BLOCK * ORIENTATIONS)
    blocks = blocks / np.sqrt(np.sum(blocks**2, axis=1, keepdims=True) + 1e-6)
    blocks = np.minimum(blocks, 0.2)  # L2-Hys: clip, then normalise again
    blocks = blocks / np.sqrt(np.sum(blocks**2, axis=1, keepdims=True) + 1e-6)
    features: np.ndarray = blocks.ravel()
    return features


def image_features(data: bytes) -> np.ndarray:
    """The ``FEATURE_DIMS`` float32 features of one encoded image (any format Pillow reads)."""
    import numpy as np
    from PIL import Image

    with Image.open(io.BytesIO(data)) as image:
        image.draft("RGB", (THUMB_SIDE * 2, THUMB_SIDE * 2))  # JPEG: decode at a reduced scale
        rgb = image.convert("RGB").resize((THUMB_SIDE, THUMB_SIDE), Image.Resampling.BILINEAR)
    pixels = np.asarray(rgb, dtype=np.float32) / 255.0
    grey = pixels @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    factor = THUMB_SIDE // GREY_SIDE
    thumb = grey.reshape(GREY_SIDE, factor, GREY_SIDE, factor).mean(axis=(1, 3)).ravel()
    quantised = np.minimum((pixels * COLOUR_BINS).astype(np.int64), COLOUR_BINS - 1)
    codes = (quantised[..., 0] * COLOUR_BINS + quantised[..., 1]) * COLOUR_BINS + quantised[..., 2]
    colour = np.bincount(codes.ravel(), minlength=COLOUR_BINS**3).astype(np.float32) / codes.size
    return np.concatenate([_hog(grey), thumb, colour]).astype(np.float32)


def training_bytes(examples: int) -> int:
    """About how much memory fitting on ``examples`` images takes (features and solver copies)."""
    return examples * FEATURE_DIMS * BYTES_PER_FEATURE_WHILE_FITTING


# --- the classifier -----------------------------------------------------------------------------------
@dataclass
class ClassicModel:
    """A fitted standardiser + logistic regression; ``predict`` gives label strings."""

    pipeline: Any  # sklearn Pipeline
    labels: list[str]
    iterations: int
    converged: bool

    def predict(self, features: np.ndarray) -> list[str]:
        import numpy as np

        rows = np.atleast_2d(features)
        return [str(p) for p in self.pipeline.predict(rows)]


def fit_classic(features: np.ndarray, labels: Sequence[str], *, seed: int = 0) -> ClassicModel:
    """Fit the classifier on ``features`` (one row per image) and their ``labels``. Needs at least two
    distinct labels (``ValueError`` otherwise)."""
    import numpy as np
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    distinct = sorted(set(labels))
    if len(distinct) < 2:
        raise ValueError(f"a classifier needs at least 2 labels in the training split, got {len(distinct)}")
    model = make_pipeline(
        StandardScaler(),
        LogisticRegression(C=REGULARISATION_C, max_iter=MAX_ITERATIONS, random_state=seed),
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        model.fit(np.asarray(features, dtype=np.float64), np.asarray(list(labels)))
    converged = not any(issubclass(w.category, ConvergenceWarning) for w in caught)
    iterations = int(np.max(model[-1].n_iter_))
    return ClassicModel(pipeline=model, labels=distinct, iterations=iterations, converged=converged)
