"""Every way a user commonly gets the storage commands wrong ends in one sentence saying what to do, an exit
code of 2 and no traceback (``cli.common``: the settings, the storage check, the dataset and version
lookups): no settings, broken settings, a stopped stack, an unknown dataset or version, a dataset pushed
but not converted yet."""

from __future__ import annotations

import json
import socket
import time

from cli.main import main


def _error_line(capsys) -> str:
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    return lines[0]


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
