"""The classic baseline in real runs on the local stack (Azurite + emulator): trained on the version's
train.jsonl, scored on its test.jsonl, reported beside the three models, never in the gate; a baseline
that raises leaves the run promoting and the report saying why it is missing."""

from __future__ import annotations

import pytest
from markupsafe import escape

from shared.pipeline import classic as classic_step
from tests.fixtures.pipeline import PROMOTED_PATH


def _files(env, dataset: str, version: str) -> dict[str, str]:
    reports = env.service.get_container_client("reports")
    return {
        name: reports.download_blob(f"{dataset}/{version}/report.{name}").readall().decode()
        for name in ("md", "html")
    }


def test_the_classic_baseline_is_reported_beside_the_models_and_stays_out_of_the_gate(pipeline_env, digits_dir):
    env = pipeline_env
    run = env.through(digits_dir, "digits")
    assert run.state.value == "promoted", env.timeline(run)
    assert env.state_path(run) == PROMOTED_PATH
    assert run.classic is not None and run.classic.status == "scored" and run.classic.attempts == 1
    assert run.decision.baseline_role == "base" and "classic" not in run.scores

    report = env.report("digits", run.version)
    classic, baseline = report["classic"], report["classic_baseline"]
    test_examples = run.splits["test"]["examples"]
    assert classic["role"] == "classic" and classic["method"] == "cpu"
    assert classic["metrics"]["n"] == test_examples == baseline["test_examples"]
    assert baseline["train_examples"] == run.splits["train"]["examples"]
    assert classic["metrics"]["accuracy"] > 0.5, "digits are easy for HOG + logistic regression"
    assert len(classic["metrics"]["latency_ms"]["samples"]) == test_examples
    assert 0 < baseline["latency_ms_per_image"] < 1000
    price = env.settings.price_flex_per_gb_second * env.settings.instance_memory_mb / 1024
    # Amounts are stored to 1e-8 USD and seconds to 1e-4 s: on a fast machine the total is a few 1e-5 USD, so
    # the stored rounding, not a relative error, bounds the difference.
    expected_usd = (baseline["train_seconds"] + baseline["score_seconds"]) * price
    assert baseline["total_usd"] == pytest.approx(expected_usd, rel=1e-4, abs=2e-8)
    assert report["cost"]["classic_usd"] == baseline["total_usd"]

    verdict = baseline["verdict"]
    candidate = report["candidate"]["metrics"]["accuracy"]
    assert verdict["points"] == pytest.approx(candidate - classic["metrics"]["accuracy"])
    assert verdict["hosting_usd_per_month"] == pytest.approx(env.settings.price_hosting_per_hour * 730)
    files = _files(env, "digits", run.version)
    assert verdict["sentence"] in files["md"] and "## Classic baseline" in files["md"]
    assert "| Classic (cpu) |" in files["md"]
    assert 'id="classic-verdict"' in files["html"] and str(escape(verdict["sentence"])) in files["html"]


def test_a_classic_baseline_that_raises_never_fails_the_run(pipeline_env, digits_dir, monkeypatch):
    def exploding(*_, **__):
        raise RuntimeError("the solver exploded")

    monkeypatch.setattr(classic_step, "fit_classic", exploding)  # where the step bound it at import
    env = pipeline_env
    run = env.through(digits_dir, "digits")
    assert run.state.value == "promoted", env.timeline(run)
    assert run.classic.status == "failed" and run.classic.reason == "RuntimeError: the solver exploded"
    assert env.production("digits")["version"] == run.version

    report = env.report("digits", run.version)
    assert report["classic"] is None and report["outcome"] == "promoted"
    assert report["classic_baseline"]["status"] == "failed"
    assert report["classic_baseline"]["reason"] == "RuntimeError: the solver exploded"
    files = _files(env, "digits", run.version)
    missing = "The classic baseline failed: RuntimeError: the solver exploded."
    assert missing in files["md"] and str(escape(missing)) in files["html"]
    assert "| Classic" not in files["md"], "no column for a baseline that is missing"
