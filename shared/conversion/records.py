"""A source's listing placed before any file is read: one ``Record`` per candidate image."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from shared.conversion.images import ImageResult
from shared.conversion.options import MIN_LABELS, MIN_TRAINING_EXAMPLES, ConvertOptions, DatasetError
from shared.conversion.sources import DatasetSource, SourceEntry, ignored_reason
from shared.conversion.splits import LayoutError, ambiguous_layout, detect_split_layout, place
from shared.layout import READY_MARKER


@dataclass
class Record:
    index: int
    path: str
    label: str
    given_split: str | None
    size: int
    sha256: str = ""
    code: str | None = None
    reason: str | None = None
    offset: int = 0
    length: int = 0
    split: str | None = None
    etag: str | None = None
    in_cache: bool = False  # its JPEG is in the image cache and not yet in the spill file (``offset`` unset)


def unreadable(error: Exception) -> ImageResult:
    """The rejection of a file whose read failed with ``error`` (a reader's message never holds credentials)."""
    return ImageResult(code="unreadable", reason=f"cannot read the file: {type(error).__name__}: {error}")


def too_large(size: int, max_bytes: int) -> ImageResult:
    return ImageResult(
        code="too_large",
        reason=f"file is {size / 1e6:.1f} MB, above the {max_bytes / 1e6:.0f} MB limit per source image; "
        "save a smaller copy",
    )


@dataclass
class Prepared:
    """A source's listing, placed and checked before any file is read: one ``Record`` per candidate
    image (``index`` = its position), the labels found, and what the listing alone rejects or ignores."""

    records: list[Record]
    found_labels: list[str]
    splits_given: bool
    layout_rejects: list[dict[str, str]]
    ignored: list[str]
    source_files: int
    source_bytes: int

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Prepared:
        return cls(**{**data, "records": [Record(**r) for r in data["records"]]})


def prepare_records(source: DatasetSource, options: ConvertOptions) -> Prepared:
    """List ``source`` and place each entry (label, given split); ``DatasetError`` when the listing alone
    shows the dataset cannot train (ambiguous layout, too few labels or files)."""
    entries: dict[str, SourceEntry] = {}
    layout_rejects: list[dict[str, str]] = []
    unusable: list[SourceEntry] = []  # entries the source already refused; never read
    for entry in source.entries():
        if entry.problem is not None:
            unusable.append(entry)
            layout_rejects.append({"path": entry.path, "code": entry.problem[0], "reason": entry.problem[1]})
        elif entry.path in entries:  # a source that lists one name twice: report the second
            unusable.append(entry)
            layout_rejects.append(
                {"path": entry.path, "code": "duplicate_name", "reason": "listed twice by the source; the first is used"}
            )
        else:
            entries[entry.path] = entry
    ordered = [entries[p] for p in sorted(entries)]

    ignored: list[str] = []
    candidates: list[SourceEntry] = []
    for entry in ordered:
        if ignored_reason(entry.path) is not None or entry.path == READY_MARKER:
            ignored.append(entry.path)
        else:
            candidates.append(entry)
    splits_given = detect_split_layout(e.path for e in candidates)
    ambiguity = ambiguous_layout(e.path for e in candidates) if splits_given else None
    if ambiguity is not None:
        raise DatasetError(ambiguity)

    records: list[Record] = []
    for entry in candidates:
        try:
            placement = place(entry.path, splits_given)
        except LayoutError as exc:
            layout_rejects.append({"path": entry.path, "code": "outside_layout", "reason": str(exc)})
            continue
        record = Record(len(records), entry.path, placement.label, placement.split, entry.size, etag=entry.etag)
        if entry.size > options.max_file_bytes:
            refused = too_large(entry.size, options.max_file_bytes)
            record.code, record.reason = refused.code, refused.reason
        records.append(record)

    layout_hint = (
        "expected <split>/<label>/<image> with split in train, validation, test"
        if splits_given
        else "expected <label>/<image> (or train/, validation/, test/ folders holding label folders)"
    )
    found_labels = sorted({r.label for r in records})
    if len(found_labels) < MIN_LABELS:
        raise DatasetError(
            f"found {len(found_labels)} label folder(s) ({', '.join(found_labels) or 'none'}) with files; "
            f"at least {MIN_LABELS} labels are needed ({layout_hint})"
        )
    if len(records) < MIN_TRAINING_EXAMPLES:
        raise DatasetError(
            f"found only {len(records)} image file(s); at least {MIN_TRAINING_EXAMPLES} training examples "
            f"are needed, and hundreds per label are better ({layout_hint})"
        )
    return Prepared(
        records=records,
        found_labels=found_labels,
        splits_given=splits_given,
        layout_rejects=layout_rejects,
        ignored=ignored,
        source_files=len(ordered) + len(unusable),
        source_bytes=sum(e.size for e in ordered) + sum(e.size for e in unusable),
    )
