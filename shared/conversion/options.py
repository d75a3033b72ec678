"""Conversion options and the limits a conversion checks (Azure's per-file and per-resource ones)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from shared.conversion.images import (
    DEFAULT_IMAGE_MEMORY_BUDGET,
    DEFAULT_MAX_ASPECT_RATIO,
    DEFAULT_MAX_FILE_BYTES,
    DEFAULT_MAX_PIXELS,
    DEFAULT_MIN_SIDE,
    ImageSettings,
)
from shared.conversion.splits import normalise_ratios
from shared.errors import VisiontuneError

CONVERTER_FORMAT = 2  # bump when the output of the same input and options changes
MAX_EXAMPLES_PER_FILE = 50_000  # Azure: examples with images per training file
MIN_TRAINING_EXAMPLES = 10
MIN_LABELS = 2
FILE_LIMIT_BYTES = 512 * 1024 * 1024  # Files API upload limit
QUOTA_BYTES = 1024 * 1024 * 1024  # fine-tuning files per resource
NEAR_LIMIT = 0.8  # warn above this share of a limit
FEW_EXAMPLES_PER_LABEL = 10


class DatasetError(VisiontuneError, ValueError):
    """The dataset as a whole cannot be converted (too few examples or labels, a label without training
    examples, ...). The message says what to change."""


@dataclass
class ConvertOptions:
    """Conversion settings. All but ``workers`` are part of the dataset version."""

    max_side: int = 512
    quality: int = 85
    split: tuple[float, float, float] = (0.8, 0.1, 0.1)  # ignored when the dataset gives its splits
    seed: int = 0
    workers: int = 0  # 0 = one per core; 1 = in this process
    prompt: str | None = None  # None = the default classifier prompt; "{categories}" = the label lines
    model: str = "gpt-4.1-2025-04-14"
    epochs: int = 2  # for the estimate
    price_per_1m_training_tokens: float = 25.0
    max_pixels: int = DEFAULT_MAX_PIXELS
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES
    min_side: int = DEFAULT_MIN_SIDE  # images with a shorter side are rejected (too_small)
    max_aspect_ratio: float = DEFAULT_MAX_ASPECT_RATIO  # longer/shorter side above this: rejected
    memory_budget: int = DEFAULT_IMAGE_MEMORY_BUDGET  # bytes per image: file + decoded pixels

    def validated(self) -> ConvertOptions:
        """A copy with the split normalised; ``ValueError`` naming the bad option."""
        if not 16 <= self.max_side <= 2048:
            raise ValueError(f"max_side must be 16..2048 pixels, got {self.max_side}")
        if not 1 <= self.quality <= 95:
            raise ValueError(f"quality must be 1..95, got {self.quality}")
        if self.workers < 0:
            raise ValueError(f"workers must be >= 0 (0 = all cores), got {self.workers}")
        if self.epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {self.epochs}")
        if self.memory_budget < 16 * 2**20:
            raise ValueError(f"memory_budget must be at least 16 MiB, got {self.memory_budget}")
        if self.min_side < 1:
            raise ValueError(f"min_side must be >= 1 pixel, got {self.min_side}")
        if not self.max_aspect_ratio >= 1:  # also refuses NaN
            raise ValueError(f"max_aspect_ratio must be >= 1, got {self.max_aspect_ratio}")
        if self.price_per_1m_training_tokens < 0:
            raise ValueError("price_per_1m_training_tokens must be >= 0")
        ratios = normalise_ratios(tuple(float(r) for r in self.split))  # type: ignore[arg-type]
        return ConvertOptions(**{**asdict(self), "split": ratios})


def image_settings(options: ConvertOptions) -> ImageSettings:
    """The per-image settings of a conversion (what a cached image must have been converted with)."""
    return ImageSettings(
        max_side=options.max_side,
        quality=options.quality,
        max_pixels=options.max_pixels,
        min_side=options.min_side,
        max_aspect_ratio=options.max_aspect_ratio,
        memory_budget=options.memory_budget,
    )
