"""Scheduled re-evaluation of production on the local stack: a report per evaluation, a point in the
production history compared on the same test set, and a flagged regression when production breaks.
An evaluation is held under the runs' lease (``RunStore.claim_document`` + ``keep_lease``): a step that
outlives the lease keeps it (renewed) so a second worker cannot take it, a crashed holder's lease lapses
and the evaluation is taken over, and a worker that lost it writes nothing more."""

from __future__ import annotations

import json
import threading
import time

import pytest

from shared.pipeline import scheduled
from shared.pipeline.context import Pipeline
from shared.pipeline.documents import ScheduledEvaluation
from shared.pipeline.models import RoleProgress, utcnow
from shared.pipeline.scheduled import advance_scheduled_evaluation, evaluate_production
from shared.pipeline.stored import ConcurrentUpdateError


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


LEASE = 1.0


@pytest.fixture
def evaluation(pipeline_env, monkeypatch):
    """A stored, unfinished scheduled evaluation and a pipeline whose leases last 1 s, renewed every 0.25 s."""
    monkeypatch.setattr(scheduled, "RUN_LEASE_SECONDS", LEASE)
    monkeypatch.setattr(scheduled, "RUN_LEASE_RENEW_SECONDS", 0.25)
    monkeypatch.setattr(scheduled, "load_test_items", lambda pipeline, dataset, version: [])
    pipeline = Pipeline(pipeline_env.settings)
    roles = {
        role: RoleProgress(role=role, model="m", deployment="d", method="realtime", total=10)
        for role in ("incumbent", "base")
    }
    doc = ScheduledEvaluation(
        id="20261130T000000Z", dataset="digits", created_at=utcnow(), test_set_version="v1",
        production_version="v1", roles=roles,
    )  # fmt: skip
    pipeline.store.write(doc)
    return pipeline, doc.document_name


def _slow_step(seconds: float, calls: list[float]):
    """advance_evaluation that works ``seconds`` (side writes on the way) and scores one example."""

    def step(pipeline, roles, *, prefix, tag, items, deadline):
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            pipeline.store.write_document(prefix + "progress.json", {"at": time.time()})
            time.sleep(0.1)
        roles["base"].scored += 1
        calls.append(seconds)

    return step


def test_a_long_evaluation_keeps_its_lease_and_a_second_worker_cannot_take_it(evaluation, monkeypatch):
    pipeline, name = evaluation
    calls: list[float] = []
    monkeypatch.setattr(scheduled, "advance_evaluation", _slow_step(3.5 * LEASE, calls))
    rival = Pipeline(pipeline.settings).store
    taken, tries, started = [], 0, time.monotonic()
    worker = threading.Thread(target=lambda: taken.append(advance_scheduled_evaluation(pipeline, name)))
    worker.start()
    time.sleep(0.3)
    while worker.is_alive():
        claimed = rival.claim_document(name, ScheduledEvaluation, seconds=LEASE, owner="worker-b")
        tries += 1
        assert claimed is None, f"a second worker took the evaluation after {tries} tries"
        time.sleep(0.2)
    worker.join()
    # the step outlived the 1 s lease three times over while worker-b kept trying
    assert time.monotonic() - started > 3.5 * LEASE and tries >= 3
    saved = taken[0]
    assert saved is not None and calls == [3.5 * LEASE]
    stored = pipeline.store.read(name, ScheduledEvaluation)
    assert stored is not None and stored.lease is None and stored.roles["base"].scored == 1
    assert rival.claim_document(name, ScheduledEvaluation, seconds=LEASE, owner="worker-b") is not None


def test_a_crashed_holders_lease_lapses_and_the_evaluation_is_taken_over(evaluation, monkeypatch):
    pipeline, name = evaluation
    calls: list[float] = []
    monkeypatch.setattr(scheduled, "advance_evaluation", _slow_step(0.0, calls))
    dead = Pipeline(pipeline.settings).store.claim_document(name, ScheduledEvaluation, seconds=LEASE, owner="dead")
    assert dead is not None  # took the lease, then crashed: never renewed, never released
    assert advance_scheduled_evaluation(pipeline, name) is None and calls == []
    time.sleep(LEASE + 0.2)
    saved = advance_scheduled_evaluation(pipeline, name)
    assert saved is not None and calls == [0.0] and saved.lease is None
    assert pipeline.store.read(name, ScheduledEvaluation).roles["base"].scored == 1


def test_a_worker_that_lost_the_lease_writes_nothing_more(evaluation, monkeypatch):
    pipeline, name = evaluation
    other = Pipeline(pipeline.settings).store

    def overtaken(pipeline, roles, *, prefix, tag, items, deadline):
        # another worker writes the document meanwhile (its lease had lapsed during a storage outage)
        stolen = other.read(name, ScheduledEvaluation)
        stolen.errors = 99
        other.write(stolen)
        time.sleep(0.6)  # the next renewal finds the other writer
        roles["base"].scored = 10
        pipeline.store.write_document(prefix + "eval-base.json", {"examples": []})

    monkeypatch.setattr(scheduled, "advance_evaluation", overtaken)
    with pytest.raises(ConcurrentUpdateError, match="lease was lost"):
        advance_scheduled_evaluation(pipeline, name)
    stored = pipeline.store.read(name, ScheduledEvaluation)
    assert stored.errors == 99 and stored.roles["base"].scored == 0
    assert pipeline.store.read_document(name.removesuffix(".json") + ".d/eval-base.json") is None
