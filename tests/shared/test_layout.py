"""Blob paths and trigger patterns."""

from __future__ import annotations

import pytest

from shared import layout


@pytest.mark.parametrize(
    ("pattern", "path", "expected"),
    [
        (layout.DATASET_READY_PATH, "datasets/dogs/_READY", {"dataset": "dogs"}),
        (layout.DATASET_READY_PATH, "datasets/dogs/train/_READY", None),
        (layout.DATASET_READY_PATH, "datasets/dogs/_READY.txt", None),
        (layout.DATASET_ARCHIVE_PATH, "datasets/dogs-v2.zip", {"dataset": "dogs-v2"}),
        (layout.DATASET_ARCHIVE_PATH, "datasets/dogs/images.zip", None),
        (layout.TRAINING_MANIFEST_PATH, "training/d/0123abcd/manifest.json", {"dataset": "d", "version": "0123abcd"}),
        (layout.TRAINING_MANIFEST_PATH, "training/d/0123abcd/rejected.json", None),
    ],
)
def test_match_blob_path(pattern: str, path: str, expected: dict[str, str] | None) -> None:
    assert layout.match_blob_path(pattern, path) == expected


@pytest.mark.parametrize("name", ["dogs", "Stanford_Dogs-2025.v1", "a"])
def test_valid_dataset_names(name: str) -> None:
    assert layout.validate_dataset_name(name) == name


@pytest.mark.parametrize("name", ["", "-dogs", "a/b", "dögs", "x" * 64, "_READY"])
def test_invalid_dataset_names_say_why(name: str) -> None:
    with pytest.raises(ValueError, match="invalid dataset name"):
        layout.validate_dataset_name(name)
