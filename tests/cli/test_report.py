"""``visiontune report`` (and ``status``) on a finished run, against the local stack."""

from __future__ import annotations

import json

from cli.main import main


def test_status_and_report_show_a_finished_run(pipeline_env, settings_file, digits_dir, tmp_path, capsys):
    env = pipeline_env
    run = env.through(digits_dir, "digits", {"max_run_usd": 0.01})  # over budget: ends at once, with a report
    assert main(["status", "--settings", str(settings_file), "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    [entry] = status["datasets"]
    assert entry["dataset"] == "digits" and entry["runs"][0]["version"] == run.version
    assert entry["runs"][0]["state"] == "over_budget" and entry["production"] is None

    assert main(["status", "digits", "--settings", str(settings_file)]) == 0
    table = capsys.readouterr().out
    assert run.version in table and "over_budget" in table and "production: none yet" in table

    out = tmp_path / "out"
    assert main(["report", "digits", "--settings", str(settings_file), "--out", str(out)]) == 0
    assert "report.html" in capsys.readouterr().out
    assert {p.name for p in (out / "digits" / run.version).iterdir()} == {
        "report.json",
        "report.md",
        "report.html",
    }
    assert (out / "digits" / "index.html").exists()

    assert main(["report", "digits", run.version, "--settings", str(settings_file), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["outcome"] == "over_budget"
    assert main(["report", "digits", "--settings", str(settings_file)]) == 0
    assert "budget" in capsys.readouterr().out.lower()
    assert main(["report", "nothing-here", "--settings", str(settings_file)]) == 2
    assert "no dataset named 'nothing-here': known datasets are digits" in capsys.readouterr().err
