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
        (
            layout.TRAINING_MANIFEST_PATH,
            "training/d/0123abcd/manifest.json",
            {"dataset": "d", "version": "0123abcd"},
        ),
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


def test_every_blob_path_of_a_dataset_comes_from_the_layout():
    from shared.layout import (
        dataset_archive_blob,
        dataset_prefix,
        evaluation_stem,
        intake_receipt_blob,
        run_blob,
        scheduled_prefix,
        side_prefix,
    )

    assert dataset_prefix("dogs") == "dogs/" and dataset_archive_blob("dogs") == "dogs.zip"
    assert side_prefix(run_blob("dogs", "v1")) == "dogs/v1.d/"
    assert scheduled_prefix("dogs") == "dogs/_scheduled/"
    assert (
        side_prefix(scheduled_prefix("dogs") + "20260302T030000Z.json")
        == "dogs/_scheduled/20260302T030000Z.d/"
    )
    assert intake_receipt_blob("dogs", "abc") == "dogs/_intake/abc.json"
    from datetime import datetime, timedelta, timezone

    at = datetime(2026, 3, 2, 4, 0, tzinfo=timezone(timedelta(hours=1)))
    assert evaluation_stem(at) == "20260302T030000Z"
