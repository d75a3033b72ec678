"""The manifest's warnings: files near the Files API limit and the resource's fine-tuning file quota."""

from __future__ import annotations

from shared.conversion import FolderSource, manifest
from tests.fixtures.conversion import convert_to_folder
from tests.shared.conversion import image_cases as cases


def test_files_near_the_upload_limits_are_warned_about(tmp_path, monkeypatch):
    root = cases.write(tmp_path / "src", cases.good_set(per_label=10))
    size = convert_to_folder(FolderSource(root), tmp_path / "probe").manifest["splits"]["train"]["bytes"]
    monkeypatch.setattr(manifest, "FILE_LIMIT_BYTES", int(size / 0.9))  # train.jsonl at 90% of the limit
    monkeypatch.setattr(manifest, "QUOTA_BYTES", int(size / 0.85))
    warnings = convert_to_folder(FolderSource(root), tmp_path / "out").manifest["warnings"]
    assert any(w.startswith("train.jsonl is") and "near the 512 MiB Files API limit" in w and "--quality" in w for w in warnings)
    assert any("near the resource's 1 GiB fine-tuning file quota" in w for w in warnings)
