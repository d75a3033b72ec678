"""The layout and split rules: given split folders, ratios, and the stable hash split."""

from __future__ import annotations

import pytest

from shared.conversion.splits import (
    LayoutError,
    detect_split_layout,
    hash_split,
    parse_split_ratios,
    place,
)


def test_layout_placement():
    assert detect_split_layout(["train/cat/1.jpg", "x/y.jpg"])
    assert not detect_split_layout(["cat/1.jpg", "train/1.jpg"])
    assert place("train/cat/1.jpg", True).split == "train"
    assert place("cat/sub/1.jpg", False).label == "cat"
    for bad, given in [("1.jpg", False), ("other/cat/1.jpg", True), ("train/1.jpg", True), ("cat/../x.jpg", False)]:
        with pytest.raises(LayoutError):
            place(bad, given)


def test_split_ratio_parsing():
    assert parse_split_ratios("80/10/10") == (0.8, 0.1, 0.1)
    assert parse_split_ratios("0.7:0.15:0.15") == (0.7, 0.15, 0.15)
    assert parse_split_ratios("1/1/0") == (0.5, 0.5, 0.0)
    for bad in ("80/20", "0/50/50", "a/b/c", "-1/1/1"):
        with pytest.raises(ValueError):
            parse_split_ratios(bad)


def test_hash_split_follows_the_ratios_and_depends_only_on_path_and_seed():
    paths = [f"label/{n}.jpg" for n in range(4000)]
    splits = [hash_split(p, (0.8, 0.1, 0.1), 0) for p in paths]
    share = splits.count("train") / len(paths)
    assert 0.77 < share < 0.83
    assert 0.08 < splits.count("test") / len(paths) < 0.12
    assert splits == [hash_split(p, (0.8, 0.1, 0.1), 0) for p in paths]
    assert splits != [hash_split(p, (0.8, 0.1, 0.1), 1) for p in paths]
