"""``visiontune convert`` and ``visiontune validate`` as a user runs them."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from cli import convert as convert_cli
from cli.main import main
from tests.shared.conversion import image_cases as cases

REPO = Path(__file__).resolve().parents[2]


def visiontune(*argv: str) -> int:
    """Run the convert/validate subcommands exactly as ``cli.main`` does."""
    parser = argparse.ArgumentParser(prog="visiontune")
    convert_cli.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args([str(a) for a in argv])
    return int(args.handler(args) or 0)


@pytest.fixture
def dataset(tmp_path) -> Path:
    files = cases.good_set(("cat", "dog", "bird"), per_label=10)
    files["dog/broken.jpg"] = cases.truncated_jpeg()
    files["cat/.DS_Store"] = b"junk"
    return cases.write(tmp_path / "pets", files)


def test_convert_then_validate_succeeds_and_prints_a_summary(tmp_path, dataset, capsys):
    out = tmp_path / "out"
    assert visiontune("convert", dataset, out, "--workers", "2", "--epochs", "3", "--price", "10") == 0
    printed = capsys.readouterr().out
    manifest = json.loads((out / "manifest.json").read_text("utf-8"))
    assert manifest["version"] in printed
    assert "rejected 1 file(s): 1 truncated" in printed
    assert manifest["estimate"]["epochs"] == 3 and manifest["estimate"]["price_per_1m"] == 10.0
    assert visiontune("validate", out / "train.jsonl") == 0
    assert "OK - " in capsys.readouterr().out


def test_convert_options_reach_the_manifest(tmp_path, dataset):
    out = tmp_path / "out"
    code = visiontune(
        "convert",
        dataset,
        out,
        "--quiet",
        "--max-side",
        "64",
        "--quality",
        "60",
        "--split",
        "70/15/15",
        "--seed",
        "7",
        "--prompt",
        "Pick one:\n{categories}",
        "--workers",
        "1",
    )
    assert code == 0
    manifest = json.loads((out / "manifest.json").read_text("utf-8"))
    assert manifest["image"]["max_side"] == 64 and manifest["image"]["quality"] == 60
    assert manifest["split"] == {
        "given": False,
        "method": "hash of the relative path",
        "ratios": [0.7, 0.15, 0.15],
        "seed": 7,
    }
    assert manifest["prompt"] == "Pick one:\n- bird\n- cat\n- dog"


def test_json_summary(tmp_path, dataset, capsys):
    assert visiontune("convert", dataset, tmp_path / "out", "--json", "--workers", "1") == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["labels"] == ["bird", "cat", "dog"]
    assert summary["rejected"] == {"truncated": 1}
    assert sum(summary["examples"].values()) == 30


def test_zip_source(tmp_path, dataset):
    archive = tmp_path / "pets.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for path in dataset.rglob("*"):
            if path.is_file():
                zf.write(path, path.relative_to(dataset.parent).as_posix())  # one top folder: pets/
    assert visiontune("convert", archive, tmp_path / "out", "--quiet", "--workers", "1") == 0
    assert json.loads((tmp_path / "out" / "manifest.json").read_text())["labels"] == ["bird", "cat", "dog"]


@pytest.mark.parametrize(
    ("argv_tail", "message"),
    [
        (["--split", "50/50"], "split must look like 80/10/10"),
        (["--quality", "0"], "quality must be 1..95"),
    ],
)
def test_bad_options_exit_non_zero_with_a_message(tmp_path, dataset, capsys, argv_tail, message):
    assert visiontune("convert", dataset, tmp_path / "out", "--quiet", *argv_tail) == 2
    assert message in capsys.readouterr().err


def test_dataset_level_error_exits_non_zero_and_writes_nothing(tmp_path, capsys):
    src = cases.write(tmp_path / "one", cases.good_set(("cat",), per_label=12))
    assert visiontune("convert", src, tmp_path / "out", "--quiet", "--workers", "1") == 2
    err = capsys.readouterr().err
    assert "at least 2 labels are needed" in err
    assert not (tmp_path / "out").exists()


def test_missing_source(tmp_path, capsys):
    assert visiontune("convert", tmp_path / "nope", tmp_path / "out") == 2
    assert "no such folder or .zip" in capsys.readouterr().err


def test_validate_reports_counts_per_error_type_and_exits_non_zero(tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"messages": [{"role": "user", "content": "hi"}]}\nnot json\n', encoding="utf-8")
    assert visiontune("validate", bad) == 1
    printed = capsys.readouterr().out
    assert "example_missing_assistant_message: 1" in printed
    assert "invalid_json: 1" in printed
    assert "too_few_examples: 1" in printed


def test_the_console_module_runs_convert_in_a_fresh_process(tmp_path, dataset):
    # A real process, as `visiontune convert` runs it: worker processes, exit code, files.
    script = (
        "import sys, argparse\n"
        "from cli import convert\n"
        "p = argparse.ArgumentParser(); convert.register(p.add_subparsers(dest='c'))\n"
        "a = p.parse_args(sys.argv[1:]); sys.exit(a.handler(a))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, "convert", str(dataset), str(tmp_path / "out"), "--workers", "2"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "out" / "manifest.json").is_file()


def test_convert_with_a_cache_reuses_images_and_writes_the_same_bytes(tmp_path, dataset, capsys):
    cache = tmp_path / "cache"
    assert visiontune("convert", dataset, tmp_path / "plain", "--workers", "1", "--quiet") == 0
    assert (
        visiontune("convert", dataset, tmp_path / "first", "--workers", "1", "--cache", cache, "--json") == 0
    )
    first = json.loads(capsys.readouterr().out)
    (dataset / "bird" / "new.jpg").write_bytes(cases.photo_jpeg(seed=4242))
    assert visiontune("convert", dataset, tmp_path / "second", "--workers", "1", "--cache", cache) == 0
    printed = " ".join(capsys.readouterr().out.split())
    assert "1 images converted, 30 reused from the cache" in printed
    assert first["stats"]["images_converted"] == 30 and first["stats"]["images_reused"] == 0
    for name in ("train.jsonl", "validation.jsonl", "test.jsonl", "rejected.json", "manifest.json"):
        assert (tmp_path / "first" / name).read_bytes() == (tmp_path / "plain" / name).read_bytes()
    assert sorted(p.name for p in (cache / "packs").iterdir()) == sorted(
        p.stem + ".pack" for p in (cache / "index").iterdir()
    )


def test_convert_refuses_a_cache_keep_below_one(tmp_path, dataset, capsys):
    assert (
        visiontune("convert", dataset, tmp_path / "out", "--cache", tmp_path / "c", "--cache-keep", "0") == 2
    )
    assert "--cache-keep must be >= 1" in capsys.readouterr().err


def _clear_visiontune_environment(monkeypatch) -> None:
    import os

    for name in list(os.environ):
        if name.startswith("VISIONTUNE_"):
            monkeypatch.delenv(name)


def test_convert_defaults_are_the_pipelines(monkeypatch):
    """No option given: the options the pipeline's intake would use with the same settings (seed 42, ...)."""
    from shared.pipeline.intake import convert_options
    from shared.pipeline.overrides import RunOverrides
    from shared.settings import Settings

    _clear_visiontune_environment(monkeypatch)
    parser = argparse.ArgumentParser(prog="visiontune")
    convert_cli.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["convert", "src", "out"])
    options = convert_cli.convert_options(args)
    assert options == convert_options(Settings(), RunOverrides()).validated()
    assert options.seed == Settings.model_fields["seed"].default == 42
    monkeypatch.setenv("VISIONTUNE_SEED", "7")
    monkeypatch.setenv("VISIONTUNE_MAX_SIDE", "256")
    options = convert_cli.convert_options(args)
    assert (options.seed, options.max_side) == (7, 256)  # the environment, as the function app reads it
    args = parser.parse_args(["convert", "src", "out", "--seed", "3", "--epochs", "4"])
    assert (convert_cli.convert_options(args).seed, convert_cli.convert_options(args).epochs) == (3, 4)


def test_the_same_folder_gets_the_same_version_locally_and_in_the_pipeline(
    pipeline_env, digits_dir, tmp_path, monkeypatch
):
    """``visiontune convert`` with the function app's settings in the environment converts a folder to the
    version the pipeline's intake (on the local stack) publishes for the same folder."""
    env = pipeline_env
    _clear_visiontune_environment(monkeypatch)
    for name, value in env.values.items():
        monkeypatch.setenv(name, value)
    out = tmp_path / "out"
    assert visiontune("convert", digits_dir, out, "--quiet") == 0
    local_version = json.loads((out / "manifest.json").read_text("utf-8"))["version"]
    result = env.drop(digits_dir, "digits")
    assert result is not None and result.version == local_version
    published = env.service.get_container_client("training").download_blob(
        f"digits/{local_version}/manifest.json"
    )
    assert json.loads(published.readall())["split"]["seed"] == env.settings.seed == 42


def test_validate_on_a_folder_and_convert_on_a_missing_folder(tmp_path, capsys):
    assert main(["validate", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert f"{tmp_path} is a folder: pass the .jsonl files in it" in err
    assert main(["convert", str(tmp_path / "nope"), str(tmp_path / "out")]) == 2
    assert f"no such folder or .zip: {tmp_path / 'nope'}" in capsys.readouterr().err


def test_validate_says_whole_file_without_the_word_lines(tmp_path, capsys):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    assert main(["validate", str(empty)]) == 1
    out = capsys.readouterr().out
    assert "too_few_examples: 1" in out and "; whole file)" in out and "lines whole file" not in out
