"""The version, ``manifest.json`` and ``rejected.json`` of a decided conversion."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import dataclass
from typing import Any

from shared.conversion.estimate import estimate, split_tokens
from shared.conversion.examples import IMAGE_DETAIL
from shared.conversion.images import DRAFT_TOLERANCE
from shared.conversion.options import (
    CONVERTER_FORMAT,
    FEW_EXAMPLES_PER_LABEL,
    FILE_LIMIT_BYTES,
    NEAR_LIMIT,
    QUOTA_BYTES,
    ConvertOptions,
)
from shared.conversion.records import Prepared, Record
from shared.conversion.small_rgb import BACKGROUND
from shared.layout import SPLITS
from shared.pipeline.documents import Manifest


def source_digest(records: list[Record]) -> str:
    digest = hashlib.sha256()
    for record in sorted(records, key=lambda r: r.path):
        digest.update(f"{record.path}\t{record.size}\t{record.sha256 or '-'}\n".encode())
    return digest.hexdigest()


def canonical_json(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def split_summary(members: list[Record], labels: list[str], label_tokens: Any, written: int) -> dict[str, Any]:
    """The manifest's entry for one split whose JSONL file holds ``written`` bytes."""
    per_label = Counter(r.label for r in members)
    text_tokens, image_tokens = split_tokens(per_label, label_tokens)
    return {
        "examples": len(members),
        "per_label": {label: per_label.get(label, 0) for label in labels},
        "files": [r.path for r in members],
        "bytes": written,
        "text_tokens": text_tokens,
        "image_tokens": image_tokens,
    }


@dataclass(frozen=True)
class Identity:
    """What a conversion is known by once every file is processed, before any JSONL is written: its version
    (a digest of the source files and the converter's settings), the settings, the source digest and
    ``rejected.json``'s entries."""

    version: str
    converter_settings: dict[str, Any]
    source_digest: str
    rejected: list[dict[str, str]]


def identify(prepared: Prepared, options: ConvertOptions) -> Identity:
    """The ``Identity`` of a conversion whose records are all processed (each has its sha256 or its code)."""
    records = prepared.records
    converter_settings = {
            "name": "visiontune",
            "format": CONVERTER_FORMAT,
            "max_side": options.max_side,
            "quality": options.quality,
            "max_pixels": options.max_pixels,
            "max_file_bytes": options.max_file_bytes,
            "min_side": options.min_side,
            "max_aspect_ratio": options.max_aspect_ratio,
            "memory_budget": options.memory_budget,
            "draft_tolerance": DRAFT_TOLERANCE,
            "split": "given" if prepared.splits_given else list(options.split),
            "seed": options.seed,
            "prompt_template": options.prompt,
            "model": options.model,
            "epochs": options.epochs,
            "price_per_1m_training_tokens": options.price_per_1m_training_tokens,
        }
    digest = source_digest(records)
    version = hashlib.sha256(canonical_json({"source": digest, "converter": converter_settings})).hexdigest()[:16]
    # A rejected record always has its reason with its code.
    image_rejects = [{"path": r.path, "code": r.code, "reason": r.reason or ""} for r in records if r.code]
    rejected = sorted(prepared.layout_rejects + image_rejects, key=lambda item: item["path"])
    return Identity(version, converter_settings, digest, rejected)


def describe(
    prepared: Prepared,
    options: ConvertOptions,
    labels: list[str],
    prompt: str,
    splits_manifest: dict[str, Any],
    identity: Identity | None = None,
) -> tuple[str, dict[str, Any], list[dict[str, str]]]:
    """The version, ``manifest.json`` and ``rejected.json`` of a decided conversion (``identity``: its
    ``identify``, when already known)."""
    identity = identity or identify(prepared, options)
    version, converter_settings, digest, rejected = (
        identity.version, identity.converter_settings, identity.source_digest, identity.rejected
    )  # fmt: skip
    splits_given = prepared.splits_given
    train = splits_manifest["train"]
    manifest: dict[str, Any] = Manifest.model_validate({
        "version": version,
        "labels": labels,
        "prompt": prompt,
        "image": {
            "format": "jpeg",
            "detail": IMAGE_DETAIL,
            "max_side": options.max_side,
            "quality": options.quality,
            "draft_tolerance": DRAFT_TOLERANCE,
            "background": "#{:02x}{:02x}{:02x}".format(*BACKGROUND),
            "max_pixels": options.max_pixels,
        },
        "split": {
            "given": splits_given,
            "method": "folders" if splits_given else "hash of the relative path",
            "ratios": None if splits_given else list(options.split),
            "seed": options.seed,
        },
        "splits": splits_manifest,
        "examples": sum(s["examples"] for s in splits_manifest.values()),
        "rejected": len(rejected),
        "rejected_by_code": dict(sorted(Counter(r["code"] for r in rejected).items())),
        "ignored": prepared.ignored,
        "warnings": manifest_warnings(splits_manifest, labels),
        "estimate": estimate(
            train["text_tokens"],
            train["image_tokens"],
            epochs=options.epochs,
            price_per_1m=options.price_per_1m_training_tokens,
            model=options.model,
        ),
        "source": {
            "files": prepared.source_files,
            "bytes": prepared.source_bytes,
            "digest": digest,
        },
        "converter": {**converter_settings, "pillow": pillow_version()},
    }).model_dump(mode="json")  # checked against the one model every reader uses; same bytes
    return version, manifest, rejected


def manifest_warnings(splits: dict[str, Any], labels: list[str]) -> list[str]:
    warnings: list[str] = []
    shrink = "lower --quality or --max-side, or train on fewer images"
    total = 0
    for split in SPLITS:
        size = splits[split]["bytes"]
        total += size
        if size >= FILE_LIMIT_BYTES:
            warnings.append(
                f"{split}.jsonl is {size / 2**20:.0f} MiB, above the 512 MiB Files API limit: upload it with the "
                f"Uploads API, or {shrink}"
            )
        elif size >= NEAR_LIMIT * FILE_LIMIT_BYTES:
            warnings.append(f"{split}.jsonl is {size / 2**20:.0f} MiB, near the 512 MiB Files API limit: {shrink}")
    if total >= NEAR_LIMIT * QUOTA_BYTES:
        warnings.append(
            f"the JSONL files total {total / 2**20:.0f} MiB, near the resource's 1 GiB fine-tuning file quota: "
            f"{shrink}, and delete old training files"
        )
    if splits["validation"]["examples"] == 0:
        warnings.append("validation.jsonl is empty: the job will run without a validation file")
    if splits["test"]["examples"] == 0:
        warnings.append("test.jsonl is empty: the model cannot be evaluated on held-out images")
    few = [label for label in labels if splits["train"]["per_label"][label] < FEW_EXAMPLES_PER_LABEL]
    if few:
        warnings.append(
            f"{len(few)} label(s) have fewer than {FEW_EXAMPLES_PER_LABEL} training examples "
            f"({', '.join(few[:10])}{', ...' if len(few) > 10 else ''}): hundreds per label are better"
        )
    for split in ("validation", "test"):
        if splits[split]["examples"]:
            missing = [label for label in labels if not splits[split]["per_label"][label]]
            if missing:
                warnings.append(
                    f"{len(missing)} label(s) have no {split} examples ({', '.join(missing[:10])}"
                    f"{', ...' if len(missing) > 10 else ''})"
                )
    return warnings


def pillow_version() -> str:
    import PIL

    return PIL.__version__
