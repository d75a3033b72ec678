"""The bundled digits exported as an ImageFolder tree."""

from __future__ import annotations

import hashlib

from PIL import Image

from local.sample_data import export_digits


def tree(root):
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in root.rglob("*.png")
    }


def test_full_export_has_all_1797_real_digits(tmp_path):
    root = export_digits(tmp_path / "digits")
    files = tree(root)
    assert len(files) == 1797
    assert sorted({path.split("/")[0] for path in files}) == [str(d) for d in range(10)]
    image = Image.open(root / "0" / "0000.png")
    assert image.size == (64, 64) and image.mode == "L"
    assert image.getpixel((0, 0)) > 200 and image.getextrema()[0] < 60  # white paper, dark ink


def test_subsets_are_deterministic_and_nested(tmp_path):
    v1 = tree(export_digits(tmp_path / "v1", fraction=0.6, size=32, label_prefix="digit-"))
    v1_again = tree(export_digits(tmp_path / "v1b", fraction=0.6, size=32, label_prefix="digit-"))
    v2 = tree(export_digits(tmp_path / "v2", size=32, label_prefix="digit-"))
    assert v1 == v1_again
    assert set(v1.items()) < set(v2.items())  # same names, same bytes, fewer files
    assert 0.59 < len(v1) / len(v2) < 0.62
    limited = tree(export_digits(tmp_path / "few", limit_per_label=5, labels=(3, 7)))
    assert sorted({p.split("/")[0] for p in limited}) == ["3", "7"] and len(limited) == 10


def test_digits_convert_into_valid_training_files(tmp_path):
    from shared.conversion import ConvertOptions, FolderSink, FolderSource, convert_dataset
    from shared.validation import validate_file

    root = export_digits(tmp_path / "digits", limit_per_label=15)
    result = convert_dataset(FolderSource(root), FolderSink(tmp_path / "out"), ConvertOptions(workers=1))
    assert result.manifest["labels"] == [str(d) for d in range(10)]
    assert result.manifest["examples"] == 150 and result.rejected == []
    assert validate_file(tmp_path / "out" / "train.jsonl").ok
