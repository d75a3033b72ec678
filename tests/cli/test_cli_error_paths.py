"""Every way a user commonly gets the storage commands wrong ends in one sentence saying what to do, an exit
code of 2 and no traceback: no settings, broken settings, a stopped stack, an unknown dataset or version,
a dataset pushed but not converted yet. Also the small help and convert/validate wordings."""

from __future__ import annotations

import json
import shutil
import socket
import time
from pathlib import Path

import pytest

from cli.main import build_parser, main


def _error_line(capsys) -> str:
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    return lines[0]


@pytest.fixture
def settings_file(pipeline_env, tmp_path: Path) -> Path:
    path = tmp_path / "local.settings.json"
    path.write_text(json.dumps({"IsEncrypted": False, "Values": pipeline_env.values}))
    return path


def test_no_settings_anywhere_says_to_start_the_local_stack(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # no ./local.settings.json, and the checkout fallback points here too
    monkeypatch.setattr("cli.common.default_app_root", lambda: tmp_path)
    monkeypatch.delenv("AzureWebJobsStorage", raising=False)
    monkeypatch.delenv("AzureWebJobsStorage__blobServiceUri", raising=False)
    for argv in (["status"], ["report", "digits"], ["push", str(tmp_path), "--dataset", "digits"]):
        assert main(argv) == 2
        line = _error_line(capsys)
        assert "no local.settings.json here" in line and "`visiontune local up`" in line, argv


def test_a_named_settings_file_that_is_missing_or_broken_is_named(tmp_path, capsys):
    assert main(["status", "--settings", str(tmp_path / "nope.json")]) == 2
    assert f"no settings file at {tmp_path / 'nope.json'}" in _error_line(capsys)

    broken = tmp_path / "broken.json"
    broken.write_text('{"Values": {')
    assert main(["status", "--settings", str(broken)]) == 2
    assert f"{broken} is not valid JSON (line 1, column" in _error_line(capsys)

    bad_value = tmp_path / "bad_value.json"
    bad_value.write_text(json.dumps({"Values": {"AzureWebJobsStorage": "UseDevelopmentStorage=true",
                                                "VISIONTUNE_EPOCHS": "three"}}))
    assert main(["status", "--settings", str(bad_value)]) == 2
    assert "invalid setting VISIONTUNE_EPOCHS" in _error_line(capsys)


def test_a_stopped_stack_fails_in_seconds_not_after_a_minute_of_retries(tmp_path, capsys):
    with socket.socket() as probe:  # a port on which nothing listens
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    connection = (
        "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=a2V5;"
        f"BlobEndpoint=http://127.0.0.1:{port}/devstoreaccount1;"
    )
    settings = tmp_path / "local.settings.json"
    settings.write_text(json.dumps({"Values": {"AzureWebJobsStorage": connection}}))
    started = time.monotonic()
    assert main(["status", "--settings", str(settings)]) == 2
    assert time.monotonic() - started < 10
    line = _error_line(capsys)
    assert f"cannot reach blob storage at http://127.0.0.1:{port}" in line and "visiontune local up" in line


def test_unknown_dataset_pending_dataset_and_wrong_version(pipeline_env, settings_file, digits_dir, capsys):
    env = pipeline_env
    # nothing pushed at all
    assert main(["status", "cats", "--settings", str(settings_file)]) == 2
    assert "no dataset named 'cats': there are no datasets yet" in _error_line(capsys)

    # pushed, but no functions host has converted it: status says so instead of an empty table
    assert main(["push", str(digits_dir), "--dataset", "waiting", "--settings", str(settings_file)]) == 0
    capsys.readouterr()
    assert main(["status", "waiting", "--settings", str(settings_file)]) == 0
    assert "waiting: pushed, no run yet" in capsys.readouterr().out
    assert main(["status", "--settings", str(settings_file), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["pending"] == ["waiting"]
    assert main(["report", "waiting", "--settings", str(settings_file)]) == 2
    assert "dataset 'waiting' was pushed but has no run yet" in _error_line(capsys)

    # a finished run: an unknown name lists the known ones; a wrong version lists the versions
    run = env.through(digits_dir, "digits", {"max_run_usd": 0.01})
    assert main(["status", "dogs", "--settings", str(settings_file)]) == 2
    assert "no dataset named 'dogs': known datasets are digits, waiting" in _error_line(capsys)
    assert main(["report", "digits", "ffff", "--settings", str(settings_file)]) == 2
    assert f"'ffff' is not one of the runs of 'digits': its versions are {run.version}" in _error_line(capsys)
    # a unique prefix is enough
    assert main(["report", "digits", run.version[:6], "--settings", str(settings_file), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["version"] == run.version


def test_help_texts_print_percent_signs_once():
    parser = build_parser()
    subparsers = next(a for a in parser._actions if a.dest == "command")
    text = " ".join(subparsers.choices["demo"].format_help().split())
    assert "60% of them" in text and "%%" not in text
    for name in ("status", "report"):
        help_text = subparsers.choices[name].format_help()
        assert "DATASET" in help_text and "%%" not in help_text


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


def test_push_an_empty_folder_says_how_to_lay_it_out(tmp_path, settings_file, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["push", str(empty), "--dataset", "x", "--settings", str(settings_file)]) == 2
    assert "holds no files: put the images in one folder per label (<label>/<image>)" in _error_line(capsys)


def test_demo_summary_lines_name_the_test_set_of_each_accuracy(tmp_path):
    from cli.demo import production_line, scheduled_line

    fixture = Path(__file__).parents[1] / "shared" / "reporting" / "fixtures" / "evaluation_regression.json"
    evaluation = json.loads(fixture.read_text())
    (tmp_path / "evaluations").mkdir()
    shutil.copy(fixture, tmp_path / "evaluations" / "20260101T000000Z.json")
    line = scheduled_line(tmp_path)
    metrics = evaluation["production"]["metrics"]
    assert f"answered {metrics['correct']}/{metrics['n']} of version {evaluation['test_set_version']}'s test set" in line
    assert ("a REGRESSION" if evaluation["regression"] else "no regression") in line
    assert line.endswith("20260101T000000Z.html")
    assert scheduled_line(tmp_path / "nowhere") is None

    production = {"model": "m-ft", "deployment": "d1", "version": "abc", "accuracy": 0.9425}
    assert production_line(production) == "production: m-ft as d1 (version abc): 94.3% when promoted, on version abc's test set"


def test_demo_table_formats_numbers_as_the_reports_do():
    from cli.demo import _row
    from shared.evaluation.gate import decide_promotion
    from shared.evaluation.metrics import ScoredExample
    from shared.pipeline.models import Run, RunState
    from shared.reporting.summary import p_value, pct

    labels = ["cat", "dog"]
    candidate = [ScoredExample(f"x{i}", labels[i % 2], labels[i % 2]) for i in range(96)]
    baseline = [ScoredExample(f"x{i}", labels[i % 2], labels[i % 2] if i < 73 else "owl") for i in range(96)]
    decision = decide_promotion(candidate, baseline, baseline_role="base", labels=labels, margin=0.01,
                                p_value_threshold=0.05)
    run = Run(dataset="d", version="v", state=RunState.PROMOTED, scores={"candidate": 1.0, "base": 73 / 96})
    run.decision = decision
    row = _row("v1", 96, run, 12.0)
    # the same strings the report's tiles and the gate's sentence show
    assert row["p_value"] == p_value(decision.p_value) and f"p = {row['p_value']}" in decision.reason
    assert row["baseline"] == pct(73 / 96) == "76.0%" and f"({row['baseline']})" in decision.reason
