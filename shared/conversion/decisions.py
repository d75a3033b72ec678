"""Pass 2's decisions once every record has its digest or rejection: duplicates, splits, line order,
Azure's per-file cap, and whether the result can train."""

from __future__ import annotations

from collections import Counter, defaultdict

from shared.conversion.options import (
    MAX_EXAMPLES_PER_FILE,
    MIN_LABELS,
    MIN_TRAINING_EXAMPLES,
    ConvertOptions,
    DatasetError,
)
from shared.conversion.records import Prepared, Record
from shared.conversion.splits import hash_split, line_order_key
from shared.layout import SPLITS


def resolve_duplicates(records: list[Record]) -> None:
    """Same bytes twice under one label: keep the first (train before validation before test, then by
    path), report the rest. Same bytes under two labels: report every copy as ambiguous."""
    groups: dict[str, list[Record]] = defaultdict(list)
    for record in records:
        if record.code is None and record.sha256:
            groups[record.sha256].append(record)
    for copies in groups.values():
        if len(copies) < 2:
            continue
        copies.sort(key=lambda r: (SPLITS.index(r.given_split) if r.given_split else 0, r.path))
        labels = sorted({r.label for r in copies})
        if len(labels) > 1:
            where = "; ".join(f"{r.label!r} ({r.path})" for r in copies)
            for record in copies:
                record.code = "ambiguous_label"
                record.reason = (
                    f"the same image (identical bytes) is filed under {len(labels)} labels: {where}; "
                    "not used for training - keep it under one label only"
                )
        else:
            for record in copies[1:]:
                record.code = "duplicate"
                record.reason = f"exact duplicate (identical bytes) of {copies[0].path}, which is used instead"


def decide(prepared: Prepared, options: ConvertOptions) -> tuple[dict[str, list[Record]], list[str]]:
    """Pass 2's decisions once every record has its digest or rejection: duplicates, splits, line order,
    Azure's per-file cap. Returns the members of each split in line order and the labels.
    ``DatasetError`` when the result cannot train."""
    records = prepared.records
    resolve_duplicates(records)
    for record in records:
        if record.code is None:
            record.split = record.given_split or hash_split(record.path, options.split, options.seed)
    by_split: dict[str, list[Record]] = {s: [] for s in SPLITS}
    for record in records:
        if record.code is None:
            by_split[record.split].append(record)  # type: ignore[index]
    for split, members in by_split.items():
        members.sort(key=lambda r: line_order_key(r.path, options.seed))
        for record in members[MAX_EXAMPLES_PER_FILE:]:
            record.code = "too_many_examples"
            record.reason = (
                f"the {split} split already holds {MAX_EXAMPLES_PER_FILE:,} examples, Azure's limit per file"
            )
        del members[MAX_EXAMPLES_PER_FILE:]

    labels = sorted({r.label for members in by_split.values() for r in members})
    check_trainable(records, by_split, prepared.found_labels, labels)
    return by_split, labels


def check_trainable(
    records: list[Record], by_split: dict[str, list[Record]], found_labels: list[str], labels: list[str]
) -> None:
    train_counts = Counter(r.label for r in by_split["train"])
    problems = []
    for label in found_labels:
        if train_counts.get(label):
            continue
        mine = [r for r in records if r.label == label]
        kept = Counter(r.split for r in mine if r.code is None)
        rejected = Counter(r.code for r in mine if r.code)
        detail = []
        if kept:
            detail.append(", ".join(f"{n} in {s}" for s, n in sorted(kept.items())))
        if rejected:
            detail.append("rejected: " + ", ".join(f"{n} {c}" for c, n in sorted(rejected.items())))
        problems.append(f"{label!r} ({'; '.join(detail) or 'no files'})")
    if problems:
        raise DatasetError(
            "every label needs training examples; none for " + ", ".join(problems)
            + ". Add more images to these labels (see rejected files), or give the splits explicitly "
            "with train/<label>/ folders."
        )
    if len(labels) < MIN_LABELS:
        raise DatasetError(f"only {len(labels)} label(s) have usable images; at least {MIN_LABELS} are needed")
    if sum(train_counts.values()) < MIN_TRAINING_EXAMPLES:
        raise DatasetError(
            f"only {sum(train_counts.values())} usable training example(s); at least {MIN_TRAINING_EXAMPLES} "
            "are needed (hundreds per label are better): add images or fix the rejected ones"
        )
