"""Fixtures for the ``visiontune`` commands that read a local.settings.json."""

from __future__ import annotations

import json
from pathlib import Path

import pytest


@pytest.fixture
def settings_file(pipeline_env, tmp_path: Path) -> Path:
    """A local.settings.json holding the test pipeline's settings, as ``visiontune local up`` writes it."""
    path = tmp_path / "local.settings.json"
    path.write_text(json.dumps({"IsEncrypted": False, "Values": pipeline_env.values}))
    return path
