"""What a path means in the ImageFolder layout, and which split an image goes to.

Two layouts are accepted: ``<label>/<image>`` (no split given) and
``{train,validation,test}/<label>/<image>`` (splits given). Files in sub-folders of a label folder
belong to that label, as in torchvision's ``ImageFolder``.

Without given splits, an image's split is decided by a hash of its relative path (and the seed) alone,
so adding images never moves old ones between splits.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass

from shared.errors import VisiontuneError
from shared.layout import SPLITS


@dataclass(frozen=True)
class Placement:
    """Where a file sits in the layout: its label and, if the layout gives one, its split."""

    label: str
    split: str | None


class LayoutError(VisiontuneError, ValueError):
    """A path that does not fit the dataset's layout; the message says why."""


def detect_split_layout(paths: Iterable[str]) -> bool:
    """True if the dataset gives its splits: some top-level folder named train/validation/test holds
    label folders."""
    for path in paths:
        parts = path.split("/")
        if len(parts) >= 3 and parts[0] in SPLITS:
            return True
    return False


def ambiguous_layout(paths: Iterable[str]) -> str | None:
    """Why a dataset that looks split (a ``train/``, ``validation/`` or ``test/`` folder holding folders)
    is ambiguous, or None: other top-level folders next to the split folders hold images directly, as label
    folders do (``cat/``, ``dog/`` and a label that happens to be called ``train/`` with a sub-folder).
    Deeper stray folders (``extra/cat/1.jpg``) are not label-shaped; their files are rejected one by one."""
    split_folders: set[str] = set()
    other_folders: dict[str, int] = {}
    for path in paths:
        parts = path.split("/")
        if len(parts) >= 3 and parts[0] in SPLITS:
            split_folders.add(parts[0])
        elif len(parts) == 2 and parts[0] not in SPLITS:  # <folder>/<image>: a label folder's shape
            other_folders[parts[0]] = other_folders.get(parts[0], 0) + 1
    if not split_folders or not other_folders:
        return None
    others = sorted(other_folders)
    shown = ", ".join(f"{name}/ ({other_folders[name]} file(s))" for name in others[:10])
    more = f" and {len(others) - 10} more" if len(others) > 10 else ""
    splits = ", ".join(f"{name}/" for name in sorted(split_folders, key=SPLITS.index))
    return (
        f"ambiguous layout: {splits} hold sub-folders, which means <split>/<label>/<image>, but "
        f"{shown}{more} sit next to them as if they were label folders <label>/<image>. Nothing was "
        "converted. Either move every label folder into train/ (and validation/, test/), or, if "
        f"{sorted(split_folders, key=SPLITS.index)[0]} is a label, rename that folder "
        "(e.g. 'train_'), so the layout is one or the other."
    )


def place(path: str, splits_given: bool) -> Placement:
    """The label (NFC-normalised folder name) and given split of ``path``; ``LayoutError`` if the
    path does not fit the layout."""
    parts = path.split("/")
    if any(part in ("", ".", "..") for part in parts):
        raise LayoutError("unsafe or empty path component")
    if splits_given:
        if parts[0] not in SPLITS:
            raise LayoutError(
                "the dataset gives its splits (train/, validation/, test/ folders), so every image must be "
                f"in <split>/<label>/; this file is under {parts[0]!r}"
            )
        if len(parts) < 3:
            raise LayoutError(f"directly in {parts[0]}/, not in a label folder <split>/<label>/")
        return Placement(_label(parts[1]), parts[0])
    if len(parts) < 2:
        raise LayoutError("at the top level, not in a label folder <label>/")
    return Placement(_label(parts[0]), None)


def _label(folder: str) -> str:
    label = unicodedata.normalize("NFC", folder).strip()
    if not label:
        raise LayoutError("the label folder name is blank")
    return label


_RATIO_RE = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*[/:,]\s*([0-9]*\.?[0-9]+)\s*[/:,]\s*([0-9]*\.?[0-9]+)\s*$")


def parse_split_ratios(text: str) -> tuple[float, float, float]:
    """``"80/10/10"`` (or ``0.8/0.1/0.1``, ``70:15:15``) -> fractions summing to 1; ``ValueError`` if
    malformed, negative, or the training share is zero."""
    found = _RATIO_RE.match(text)
    if not found:
        raise ValueError(f"split must look like 80/10/10 (train/validation/test), got {text!r}")
    return normalise_ratios(tuple(float(v) for v in found.groups()))  # type: ignore[arg-type]


def normalise_ratios(ratios: tuple[float, float, float]) -> tuple[float, float, float]:
    """Scale three non-negative shares to fractions summing to 1 (rounded to 6 places)."""
    if len(ratios) != 3 or any(r < 0 for r in ratios):
        raise ValueError(f"split needs three non-negative shares, got {ratios!r}")
    total = sum(ratios)
    if total <= 0 or ratios[0] <= 0:
        raise ValueError(f"the training share of the split must be positive, got {ratios!r}")
    train, validation, _ = (round(r / total, 6) for r in ratios)
    return (train, validation, round(1 - train - validation, 6))


def _unit_hash(*parts: str) -> float:
    digest = hashlib.sha256("\x1f".join(parts).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def hash_split(path: str, ratios: tuple[float, float, float], seed: int) -> str:
    """The split of ``path`` from a hash of (seed, path) alone: stable when other files come and go."""
    u = _unit_hash("split", str(seed), path)
    if u < ratios[0]:
        return "train"
    if u < ratios[0] + ratios[1]:
        return "validation"
    return "test"


def line_order_key(path: str, seed: int) -> tuple[float, str]:
    """Sort key that shuffles examples deterministically (labels interleaved, not in folder blocks)."""
    return (_unit_hash("order", str(seed), path), path)
