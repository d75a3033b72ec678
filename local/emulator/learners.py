"""The models behind the emulator's answers: real (small) image classifiers.

* Fine-tuning fits multinomial logistic regression by mini-batch SGD (numpy) on simple image features:
  a 16x16 grayscale thumbnail plus an 8-bin-per-channel colour histogram, standardised. One model is kept
  per epoch (the checkpoints); the per-step losses and accuracies are the learner's own, so
  ``results.csv`` shows real training curves.
* The base model is a deliberately weaker stand-in: nearest centroid on 4x4 grayscale thumbnails of a
  few examples per label taken from every training file the resource has processed, restricted to the
  labels listed in the prompt; random (seeded) labels when it knows none of them; and for ~7% of images
  (deterministic per image) an answer that is no label at all.

Everything is deterministic for a seed. numpy / scikit-learn / Pillow are imported lazily.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import math
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    from PIL import Image

ALLOWED_IMAGE_FORMATS = ("JPEG", "PNG", "WEBP")
ALLOWED_IMAGE_MODES = ("RGB", "RGBA")
MAX_IMAGE_BYTES = 10 * 1024 * 1024
FEATURE_SIDE = 16
THUMB_SIDE = 4
HISTOGRAM_BINS = 8
OFF_LABEL_RATE = 0.07
OFF_LABEL_ANSWERS = (
    "I cannot tell from this image.",
    "The image is too small and blurry for me to be sure what it shows.",
    "This appears to be a low-resolution picture of a simple shape.",
    "I'm not able to determine the category of this image.",
)

_DATA_URL_RE = re.compile(r"^data:(?P<mime>[\w/+.-]+)?(?P<params>(;[\w-]+=[^;,]*)*)(?P<b64>;base64)?,(?P<data>.*)$", re.S)


class TrainingStopped(Exception):
    """Training was abandoned (the job was cancelled)."""


class ImageError(ValueError):
    """An image that the service would refuse, with the reason."""


def decode_image_url(url: object) -> bytes:
    """The bytes of a ``data:image/...;base64,...`` URL. Other URLs cannot be fetched offline."""
    if not isinstance(url, str) or not url:
        raise ImageError("image_url.url must be a non-empty string")
    if url.startswith(("http://", "https://")):
        raise ImageError(
            "the emulator cannot download image URLs (no network); send the image as a base64 data URL"
        )
    match = _DATA_URL_RE.match(url)
    if not match or not match.group("b64"):
        raise ImageError("image_url.url must be an https URL or a base64 data URL (data:image/jpeg;base64,...)")
    try:
        return base64.b64decode(match.group("data"), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ImageError(f"the image data URL is not valid base64: {exc}") from None


def open_image(raw: bytes, *, strict: bool = True) -> Image.Image:
    """Open image bytes; with ``strict`` enforce Azure's fine-tuning rules (format, mode, size)."""
    from PIL import Image, UnidentifiedImageError

    if len(raw) > MAX_IMAGE_BYTES:
        raise ImageError(f"image is {len(raw)} bytes; the limit is 10 MB")
    try:
        image = Image.open(io.BytesIO(raw))
        image.load()
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise ImageError(f"the image could not be decoded: {exc}") from None
    if strict:
        if image.format not in ALLOWED_IMAGE_FORMATS:
            raise ImageError(f"image format {image.format} is not supported; use JPEG, PNG or WEBP")
        if image.mode not in ALLOWED_IMAGE_MODES:
            raise ImageError(f"image mode {image.mode} is not supported; images must be RGB or RGBA")
    return image


def _rgb(image: Image.Image) -> Image.Image:
    from PIL import Image

    if image.mode == "RGBA":
        background = Image.new("RGB", image.size, (255, 255, 255))
        background.paste(image, mask=image.getchannel("A"))
        return background
    return image.convert("RGB") if image.mode != "RGB" else image


def image_features(image: Image.Image) -> np.ndarray:
    """Fine-tuning features: 16x16 grayscale (0..1) + normalised 8-bin RGB histograms (280 floats)."""
    import numpy as np
    from PIL import Image

    rgb = _rgb(image)
    gray = np.asarray(rgb.convert("L").resize((FEATURE_SIDE, FEATURE_SIDE), Image.Resampling.BILINEAR), dtype=np.float32)
    small = np.asarray(rgb.resize((64, 64), Image.Resampling.BILINEAR))
    histograms = [
        np.histogram(small[..., channel], bins=HISTOGRAM_BINS, range=(0, 256))[0] for channel in range(3)
    ]
    histogram = np.concatenate(histograms).astype(np.float32) / float(64 * 64)
    return np.concatenate([gray.ravel() / 255.0, histogram])


def thumbnail_features(image: Image.Image) -> np.ndarray:
    """The base model's view of an image: a 4x4 grayscale thumbnail (16 floats, 0..1)."""
    import numpy as np
    from PIL import Image

    gray = _rgb(image).convert("L").resize((THUMB_SIDE, THUMB_SIDE), Image.Resampling.BILINEAR)
    return np.asarray(gray, dtype=np.float32).ravel() / 255.0


def image_digest(raw: bytes) -> int:
    """A stable 64-bit number for an image (drives the per-image deterministic choices)."""
    return int.from_bytes(hashlib.sha256(raw).digest()[:8], "big")


# --------------------------------------------------------------------------------------------------
# Fine-tuning
# --------------------------------------------------------------------------------------------------
@dataclass
class TrainingResult:
    """What one training run produced: a model per epoch and the per-step metric rows."""

    epoch_models: list[Any]
    rows: list[dict[str, float | int | None]]
    epoch_metrics: list[dict[str, float]] = field(default_factory=list)
    classes: list[str] = field(default_factory=list)


def auto_epochs(n_examples: int) -> int:
    """OpenAI's documented 'auto' rule: 3 epochs, more for tiny sets, fewer for huge ones."""
    if n_examples * 3 < 100:
        return min(25, math.ceil(100 / max(1, n_examples)))
    if n_examples * 3 > 25_000:
        return max(1, 25_000 // n_examples)
    return 3


def auto_batch_size(n_examples: int) -> int:
    """About 0.2% of the examples, between 1 and 256."""
    return max(1, min(256, round(n_examples * 0.002)))


def _softmax(logits: np.ndarray) -> np.ndarray:
    import numpy as np

    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    probabilities: np.ndarray = exp / exp.sum(axis=1, keepdims=True)
    return probabilities


def train_classifier(
    features: np.ndarray,
    labels: list[str],
    *,
    n_epochs: int,
    batch_size: int,
    learning_rate_multiplier: float,
    seed: int,
    validation_features: np.ndarray | None = None,
    validation_labels: list[str] | None = None,
    should_stop: Any = None,
) -> TrainingResult:
    """Multinomial logistic regression trained by mini-batch SGD with momentum (numpy), ``n_epochs`` passes.

    One model per epoch (the checkpoints) and one metrics row per step (a batch of ``batch_size``):
    the batch's loss/accuracy, a validation batch's, and the full validation set's at each epoch end.
    Validation examples whose label never occurs in training count as errors (the model cannot say them).
    ``should_stop()`` is checked between epochs (cancellation).
    """
    import numpy as np

    classes = sorted(set(labels))
    index = {label: i for i, label in enumerate(classes)}
    targets = np.array([index[label] for label in labels])
    features = np.asarray(features, dtype=np.float64)
    mean = features.mean(axis=0)
    scale = features.std(axis=0)
    scale[scale < 1e-6] = 1.0
    scaled = (features - mean) / scale
    has_validation = validation_features is not None and bool(validation_labels)
    if has_validation:
        val_scaled = (np.asarray(validation_features, dtype=np.float64) - mean) / scale
        val_targets = np.array([index.get(label, -1) for label in validation_labels or ()])
    rng = np.random.default_rng(seed)
    n_features, n_classes = scaled.shape[1], len(classes)
    weights = rng.normal(0.0, 0.01, size=(n_features, n_classes))
    bias = np.zeros(n_classes)
    velocity_w = np.zeros_like(weights)
    velocity_b = np.zeros_like(bias)
    learning_rate = 0.05 * learning_rate_multiplier
    weight_decay = 1e-4
    one_hot = np.eye(n_classes)

    def metrics_on(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
        probabilities = _softmax(x @ weights + bias)
        known = y >= 0
        picked = probabilities[np.arange(len(y)), np.where(known, y, 0)]
        losses = np.where(known, -np.log(np.clip(picked, 1e-12, 1.0)), np.log(1e12))
        accuracy = float(np.mean((probabilities.argmax(axis=1) == y) & known))
        return float(losses.mean()), accuracy

    rows: list[dict[str, float | int | None]] = []
    epoch_models: list[Any] = []
    epoch_metrics: list[dict[str, float]] = []
    step = 0
    for _epoch in range(n_epochs):
        if should_stop is not None and should_stop():
            raise TrainingStopped()
        order = rng.permutation(len(targets))
        batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
        for number, batch in enumerate(batches):
            x, y = scaled[batch], targets[batch]
            probabilities = _softmax(x @ weights + bias)
            picked = probabilities[np.arange(len(y)), y]
            train_loss = float(-np.mean(np.log(np.clip(picked, 1e-12, 1.0))))
            train_accuracy = float(np.mean(probabilities.argmax(axis=1) == y))
            error = (probabilities - one_hot[y]) / len(y)
            velocity_w = 0.9 * velocity_w - learning_rate * (x.T @ error + weight_decay * weights)
            velocity_b = 0.9 * velocity_b - learning_rate * error.sum(axis=0)
            weights = weights + velocity_w
            bias = bias + velocity_b
            step += 1
            row: dict[str, float | int | None] = {
                "step": step,
                "train_loss": train_loss,
                "train_mean_token_accuracy": train_accuracy,
                "valid_loss": None,
                "validation_mean_token_accuracy": None,
                "full_valid_loss": None,
                "full_valid_mean_token_accuracy": None,
            }
            if has_validation:
                sample = rng.choice(len(val_targets), size=min(batch_size, len(val_targets)), replace=False)
                row["valid_loss"], row["validation_mean_token_accuracy"] = metrics_on(
                    val_scaled[sample], val_targets[sample]
                )
                if number == len(batches) - 1:
                    row["full_valid_loss"], row["full_valid_mean_token_accuracy"] = metrics_on(
                        val_scaled, val_targets
                    )
            rows.append(row)
        full_loss, full_accuracy = metrics_on(scaled, targets)
        summary = {"full_train_loss": full_loss, "full_train_mean_token_accuracy": full_accuracy}
        if has_validation:
            summary["full_valid_loss"], summary["full_valid_mean_token_accuracy"] = metrics_on(
                val_scaled, val_targets
            )
        epoch_metrics.append(summary)
        epoch_models.append(
            {"mean": mean.copy(), "scale": scale.copy(), "weights": weights.copy(), "bias": bias.copy(), "classes": classes}
        )
    return TrainingResult(epoch_models=epoch_models, rows=rows, epoch_metrics=epoch_metrics, classes=classes)


def _sample_with_temperature(
    scores: np.ndarray, temperature: float, seed_material: int
) -> int:
    """Argmax at temperature 0; otherwise a draw from softmax(scores / temperature), mixed with a uniform
    share of 5% x temperature^2 (a language model at high temperature wanders off its best answer)."""
    import numpy as np

    if temperature <= 0:
        return int(np.argmax(scores))
    logits = scores / max(temperature, 1e-6)
    logits = logits - logits.max()
    probabilities = np.exp(logits)
    probabilities /= probabilities.sum()
    wander = min(0.5, 0.05 * temperature**2)
    probabilities = (1 - wander) * probabilities + wander / len(scores)
    return int(np.random.default_rng(seed_material).choice(len(scores), p=probabilities))


def predict_fine_tuned(model: dict[str, Any], features: np.ndarray, *, temperature: float, nonce: int) -> str:
    """The label a fine-tuned model answers for one image."""
    scores = ((features.reshape(1, -1) - model["mean"]) / model["scale"] @ model["weights"] + model["bias"])[0]
    label: str = model["classes"][_sample_with_temperature(scores, temperature, nonce)]
    return label


# --------------------------------------------------------------------------------------------------
# The base model
# --------------------------------------------------------------------------------------------------
def parse_categories(system_prompt: str) -> list[str]:
    """Labels listed after a line 'Categories:' as lines starting with '- ' (in order, no duplicates)."""
    labels: list[str] = []
    in_list = False
    for line in system_prompt.splitlines():
        stripped = line.strip()
        if stripped.lower().rstrip(":") == "categories" and stripped.endswith(":"):
            in_list = True
            continue
        if in_list:
            if stripped.startswith("- "):
                label = stripped[2:].strip()
                if label and label not in labels:
                    labels.append(label)
            elif stripped:
                break  # the list ends at the first other non-blank line
    return labels


def base_answer(
    centroids: dict[str, np.ndarray],
    labels: list[str],
    thumbnail: np.ndarray | None,
    *,
    digest: int,
    seed: int,
    temperature: float,
    nonce: int,
) -> str:
    """The base model's answer for one image, given the labels the prompt lists."""
    import numpy as np

    rng = np.random.default_rng([digest % (2**63), seed])
    if rng.random() < OFF_LABEL_RATE or not labels:
        return OFF_LABEL_ANSWERS[int(rng.integers(len(OFF_LABEL_ANSWERS)))]
    known = [label for label in labels if label in centroids]
    if thumbnail is None or not known:
        return labels[int(rng.integers(len(labels)))]
    distances = np.array([float(np.sum((centroids[label] - thumbnail) ** 2)) for label in known])
    return known[_sample_with_temperature(-distances * 20.0, temperature, nonce)]


# --------------------------------------------------------------------------------------------------
# Log probabilities (chat completions with ``logprobs: true``)
# --------------------------------------------------------------------------------------------------
def fine_tuned_distribution(model: dict[str, Any], features: np.ndarray) -> dict[str, float]:
    """The fine-tuned model's probability of each label for one image (softmax of its scores)."""
    scores = ((features.reshape(1, -1) - model["mean"]) / model["scale"] @ model["weights"] + model["bias"])
    probabilities = _softmax(scores)[0]
    return {label: float(p) for label, p in zip(model["classes"], probabilities, strict=True)}


def base_distribution(
    centroids: dict[str, np.ndarray], labels: list[str], thumbnail: np.ndarray | None
) -> dict[str, float]:
    """The base model's probability of each listed label (its off-label share kept aside)."""
    import numpy as np

    known = [label for label in labels if label in centroids]
    if thumbnail is None or not known:
        return {label: (1 - OFF_LABEL_RATE) / len(labels) for label in labels} if labels else {}
    distances = np.array([float(np.sum((centroids[label] - thumbnail) ** 2)) for label in known])
    if not np.all(np.isfinite(distances)):  # a base model that has seen no example of some label
        return {label: (1 - OFF_LABEL_RATE) / len(labels) for label in labels}
    logits = -distances * 20.0
    probabilities = np.exp(logits - logits.max())
    probabilities /= probabilities.sum()
    return {label: float((1 - OFF_LABEL_RATE) * p) for label, p in zip(known, probabilities, strict=True)}
