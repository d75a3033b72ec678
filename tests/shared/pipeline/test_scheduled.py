"""Scheduled re-evaluation of production on the local stack: a report per evaluation, a point in the
production history compared on the same test set, and a flagged regression when production breaks."""

from __future__ import annotations

import json

from shared.pipeline.scheduled import evaluate_production


def _evaluations(env, dataset):
    container = env.service.get_container_client("reports")
    names = sorted(b.name for b in container.list_blobs(name_starts_with=f"{dataset}/evaluations/"))
    return [json.loads(container.download_blob(n).readall()) for n in names if n.endswith(".json")], names


def test_production_is_re_evaluated_and_a_broken_production_is_flagged(pipeline_env, digits_dir):
    env = pipeline_env
    run = env.through(digits_dir, "digits")
    assert run.state.value == "promoted", env.timeline(run)
    assert len(evaluate_production(env.settings)) == 1
    env.drive(lambda: len(_evaluations(env, "digits")[0]) == 1)
    reports, names = _evaluations(env, "digits")
    assert {n.rsplit(".", 1)[1] for n in names} == {"json", "md", "html"}
    first = reports[0]
    assert first["test_set_version"] == run.version and not first["regression"]
    assert first["production"]["model"] == run.job.fine_tuned_model
    assert (
        first["production"]["metrics"]["accuracy"] == run.scores["candidate"]
    )  # temperature 0, same test set
    assert first["base"]["method"] == "batch"
    assert first["previous_accuracy"] == run.scores["candidate"] and "same test set" in first["note"]
    history = env.production("digits")["history"]
    assert [p["source"] for p in history] == ["run", "scheduled"]

    # production stops answering: the next scheduled evaluation says so and flags it
    env.admin.inject(route="chat_completions", status=500, retry_after=0.01, count=-1)
    started = evaluate_production(env.settings)
    assert len(started) == 1
    env.drive(lambda: len(_evaluations(env, "digits")[0]) == 2, timeout=120)
    second = _evaluations(env, "digits")[0][-1]
    assert second["regression"] and second["production"] is None
    assert "could not be evaluated" in second["note"] and "500" in second["note"]
    index = json.loads(
        env.service.get_container_client("reports").download_blob("digits/index.json").readall()
    )
    assert index["production_version"] == run.version
