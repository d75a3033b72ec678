"""Pass two of the conversion: the examples above Azure's per-file limit are rejected."""

from __future__ import annotations

from shared.conversion import FolderSource, decisions
from tests.fixtures.conversion import convert_to_folder
from tests.shared.conversion import image_cases as cases


def test_examples_above_the_per_file_limit_are_rejected(tmp_path, monkeypatch):
    monkeypatch.setattr(decisions, "MAX_EXAMPLES_PER_FILE", 12)  # Azure's 50,000, scaled down
    root = cases.write(tmp_path / "src", cases.good_set(per_label=10))
    result = convert_to_folder(FolderSource(root), tmp_path / "out", split=(1, 0, 0))
    assert result.manifest["splits"]["train"]["examples"] == 12
    assert [r["code"] for r in result.rejected] == ["too_many_examples"] * 8
    assert "50,000" not in result.rejected[0]["reason"] and "12 examples" in result.rejected[0]["reason"]
