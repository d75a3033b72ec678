"""``visiontune push`` against the local stack, reading a local.settings.json."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

from cli.main import main
from tests.cli.test_common import _error_line


def push(source: Path, dataset: str, settings_file: Path, *options: str) -> int:
    """``visiontune push SOURCE --dataset DATASET --settings SETTINGS_FILE [options]``; the exit code."""
    return main(["push", str(source), "--dataset", dataset, "--settings", str(settings_file), *options])


def _blobs(env, prefix):
    container = env.service.get_container_client("datasets")
    return {b.name: b for b in container.list_blobs(name_starts_with=prefix)}


def test_push_uploads_then_writes_the_marker_and_mirrors_on_the_next_push(
    pipeline_env, settings_file, digits_dir, tmp_path, capsys
):
    env = pipeline_env
    rc = push(digits_dir, "pets", settings_file, "--set", "n_epochs=3", "--set", "prompt=Which digit is it?", "--json")
    assert rc == 0
    result = json.loads(capsys.readouterr().out)
    files = sorted(p for p in digits_dir.rglob("*") if p.is_file())
    assert result["uploaded"] == len(files) and result["unchanged"] == 0
    blobs = _blobs(env, "pets/")
    assert len(blobs) == len(files) + 1
    marker = env.service.get_container_client("datasets").download_blob("pets/_READY").readall()
    assert json.loads(marker) == {"n_epochs": 3, "prompt": "Which digit is it?"}
    # the marker is written after every file
    assert blobs["pets/_READY"].last_modified >= max(
        b.last_modified for n, b in blobs.items() if n != "pets/_READY"
    )

    # a second push of a copy with one file gone and one changed: only the change goes up
    copy = tmp_path / "copy"
    for path in files:
        target = copy / path.relative_to(digits_dir)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(path.read_bytes())
    removed = copy / files[0].relative_to(digits_dir)
    removed.unlink()
    changed = copy / files[1].relative_to(digits_dir)
    changed.write_bytes(changed.read_bytes() + b"\0")
    assert push(copy, "pets", settings_file, "--json") == 0
    second = json.loads(capsys.readouterr().out)
    assert (second["uploaded"], second["unchanged"], second["deleted"]) == (1, len(files) - 2, 1)
    assert f"pets/{files[0].relative_to(digits_dir).as_posix()}" not in _blobs(env, "pets/")
    assert env.service.get_container_client("datasets").download_blob("pets/_READY").readall() == b""


def test_push_refuses_bad_overrides_and_names_before_uploading(
    pipeline_env, settings_file, digits_dir, capsys
):
    assert push(digits_dir, "pets", settings_file, "--set", "epoch=3") == 2
    assert "epoch: Extra inputs are not permitted" in capsys.readouterr().err
    assert push(digits_dir, "bad/name", settings_file) == 2
    assert "invalid dataset name" in capsys.readouterr().err
    assert _blobs(pipeline_env, "") == {}


def test_push_a_zip_uploads_the_archive(pipeline_env, settings_file, digits_dir, tmp_path, capsys):
    archive = tmp_path / "digits.zip"
    with zipfile.ZipFile(archive, "w") as handle:
        for path in digits_dir.rglob("*.png"):
            handle.write(path, f"digits/{path.relative_to(digits_dir).as_posix()}")
    assert push(archive, "zipped", settings_file) == 0
    assert "datasets/zipped.zip" in capsys.readouterr().out
    blob = pipeline_env.service.get_container_client("datasets").download_blob("zipped.zip").readall()
    assert blob == archive.read_bytes()
    assert push(archive, "zipped", settings_file, "--set", "n_epochs=2") == 2
    assert "--set needs a folder" in capsys.readouterr().err


def test_push_an_empty_folder_says_how_to_lay_it_out(tmp_path, settings_file, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert push(empty, "x", settings_file) == 2
    assert "holds no files: put the images in one folder per label (<label>/<image>)" in _error_line(capsys)
