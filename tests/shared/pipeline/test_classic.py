"""The classic baseline's pipeline step (budget, attempts, adopting a result written before a crash, errors
that never escape) and its verdict line. The step against the real local stack is in
``test_classic_baseline.py``."""

from __future__ import annotations

import time
from typing import Any

import pytest

from shared.pipeline import classic
from shared.pipeline.classic import advance_classic, classic_verdict, memory_problem, time_budget
from shared.pipeline.models import Run, RunState
from shared.pipeline.store import ConcurrentUpdateError
from shared.settings import Settings


class FakeStore:
    """The run store's side-blob calls, in memory; ``save`` counts the saves."""

    def __init__(self) -> None:
        self.documents: dict[str, Any] = {}
        self.saves: list[dict[str, Any]] = []
        self.fail_save = False

    def side_blob_name(self, dataset: str, version: str, name: str) -> str:
        return f"{dataset}/{version}.d/{name}"

    def read_document(self, name: str) -> Any:
        return self.documents.get(name)

    def write_document(self, name: str, data: Any) -> None:
        self.documents[name] = data

    def save(self, run: Run) -> Run:
        if self.fail_save:
            raise ConcurrentUpdateError("taken over")
        self.saves.append(run.classic.model_dump() if run.classic else {})
        return run


class FakePipeline:
    def __init__(self) -> None:
        self.store = FakeStore()


def _run(train: int = 100, test: int = 20) -> Run:
    return Run(dataset="digits", version="v1", state=RunState.EVALUATING, labels=["a", "b"],
               splits={"train": {"examples": train}, "test": {"examples": test}})


RESULT = {"examples": [], "train_seconds": 1.0, "score_seconds": 0.5}


def far() -> float:
    return time.monotonic() + 1000


def test_it_trains_once_and_records_the_attempt_before_the_work(monkeypatch):
    pipeline, run, seen = FakePipeline(), _run(), []

    def train_and_score(p, r, *, seconds):
        seen.append((seconds, [s["attempts"] for s in p.store.saves]))
        return RESULT

    monkeypatch.setattr(classic, "train_and_score", train_and_score)
    settings = Settings(VISIONTUNE_CLASSIC_MAX_SECONDS=30)
    assert advance_classic(pipeline, settings, run, deadline=far()) is True
    assert run.classic.status == "scored" and run.classic.attempts == 1
    assert seen == [(30.0, [1])], "the attempt must be saved before training starts"
    assert pipeline.store.documents["digits/v1.d/classic.json"] == RESULT
    assert advance_classic(pipeline, settings, run, deadline=far()) is False, "a settled baseline does nothing"
    assert len(seen) == 1


def test_a_result_written_before_a_crash_is_adopted_not_recomputed(monkeypatch):
    pipeline, run = FakePipeline(), _run()
    pipeline.store.documents["digits/v1.d/classic.json"] = RESULT
    run.classic = classic.ClassicProgress(attempts=1)
    monkeypatch.setattr(classic, "train_and_score", lambda *a, **k: pytest.fail("must not train again"))
    assert advance_classic(pipeline, Settings(), run, deadline=far())
    assert run.classic.status == "scored" and run.classic.attempts == 1


def test_steps_that_never_finished_are_given_up_after_the_attempt_limit(monkeypatch):
    pipeline, run = FakePipeline(), _run()
    run.classic = classic.ClassicProgress(attempts=classic.MAX_ATTEMPTS)
    monkeypatch.setattr(classic, "train_and_score", lambda *a, **k: pytest.fail("must not train again"))
    advance_classic(pipeline, Settings(), run, deadline=far())
    assert run.classic.status == "skipped"
    assert f"did not finish in {classic.MAX_ATTEMPTS} attempts" in run.classic.reason


def test_it_waits_for_a_tick_with_its_whole_budget_left(monkeypatch):
    pipeline, run = FakePipeline(), _run()
    monkeypatch.setattr(classic, "train_and_score", lambda *a, **k: pytest.fail("not in this tick"))
    settings = Settings(VISIONTUNE_CLASSIC_MAX_SECONDS=60)
    assert advance_classic(pipeline, settings, run, deadline=time.monotonic() + 30) is False
    assert run.classic.status == "pending" and run.classic.attempts == 0 and not pipeline.store.saves


def test_a_fresh_tick_shorter_than_the_budget_runs_it_within_the_deadline(monkeypatch):
    pipeline, run, budgets = FakePipeline(), _run(), []
    monkeypatch.setattr(classic, "train_and_score", lambda p, r, *, seconds: budgets.append(seconds) or RESULT)
    settings = Settings(VISIONTUNE_CLASSIC_MAX_SECONDS=120, VISIONTUNE_EVAL_TICK_SECONDS=20)
    assert advance_classic(pipeline, settings, run, deadline=time.monotonic() + 19.9)
    assert run.classic.status == "scored" and 19 < budgets[0] <= 19.9


def test_the_budget_never_exceeds_a_tick():
    assert time_budget(Settings(VISIONTUNE_CLASSIC_MAX_SECONDS=900, VISIONTUNE_EVAL_TICK_SECONDS=240)) == 240
    assert time_budget(Settings(VISIONTUNE_CLASSIC_MAX_SECONDS=60)) == 60


def test_a_training_split_too_large_for_memory_is_skipped_with_the_reason(monkeypatch):
    pipeline, run = FakePipeline(), _run(train=200_000)
    monkeypatch.setattr(classic, "train_and_score", lambda *a, **k: pytest.fail("must not train"))
    advance_classic(pipeline, Settings(VISIONTUNE_CLASSIC_MAX_MEMORY_MB=512), run, deadline=far())
    assert run.classic.status == "skipped"
    assert "too large for the budget" in run.classic.reason and "200,000 training images" in run.classic.reason
    assert "VISIONTUNE_CLASSIC_MAX_MEMORY_MB" in run.classic.reason
    assert memory_problem(Settings(VISIONTUNE_CLASSIC_MAX_MEMORY_MB=512), 1000) is None


def test_a_slow_dataset_is_skipped_with_the_reason(monkeypatch):
    pipeline, run = FakePipeline(), _run()

    def too_slow(*_, **__):
        raise classic.ClassicBudgetError("features for 120,000 images would take about 900 s")

    monkeypatch.setattr(classic, "train_and_score", too_slow)
    advance_classic(pipeline, Settings(), run, deadline=far())
    assert run.classic.status == "skipped"
    assert run.classic.reason == "the dataset is too large for the budget: features for 120,000 images would take about 900 s"


def test_any_error_settles_as_failed_and_never_escapes(monkeypatch):
    pipeline, run = FakePipeline(), _run()

    def broken(*_, **__):
        raise MemoryError("cannot allocate 3 GB")

    monkeypatch.setattr(classic, "train_and_score", broken)
    assert advance_classic(pipeline, Settings(), run, deadline=far()) is True
    assert run.classic.status == "failed" and run.classic.reason == "MemoryError: cannot allocate 3 GB"


def test_losing_the_run_to_another_worker_is_not_swallowed(monkeypatch):
    pipeline, run = FakePipeline(), _run()
    pipeline.store.fail_save = True
    monkeypatch.setattr(classic, "train_and_score", lambda *a, **k: pytest.fail("must not train"))
    with pytest.raises(ConcurrentUpdateError):
        advance_classic(pipeline, Settings(), run, deadline=far())


def test_the_setting_turns_it_off():
    run = _run()
    advance_classic(FakePipeline(), Settings(VISIONTUNE_CLASSIC_BASELINE="false"), run, deadline=far())
    assert run.classic.status == "disabled" and "VISIONTUNE_CLASSIC_BASELINE=false" in run.classic.reason


# --- the verdict --------------------------------------------------------------------------------------
def test_verdict_when_the_fine_tune_is_better():
    verdict = classic_verdict(0.8267, 0.6167, hosting_usd_per_hour=1.70, classic_usd=0.0123)
    assert verdict.points == pytest.approx(0.21)
    assert verdict.hosting_usd_per_month == pytest.approx(1241.0) and verdict.hours_per_month == 730
    assert verdict.sentence == (
        "The fine-tune buys +21.0 pts of accuracy over the classic baseline (82.7% vs 61.7%) for $1,241 a month "
        "to host ($1.70/h x 730 h); the classic model cost $0.01 to train and score."
    )


def test_verdict_when_the_classic_model_is_better():
    verdict = classic_verdict(0.956, 0.981, hosting_usd_per_hour=2.0, classic_usd=0.0004)
    assert verdict.points == pytest.approx(-0.025)
    assert verdict.sentence == (
        "The fine-tune is 2.5 pts less accurate than the classic baseline (95.6% vs 98.1%) and costs $1,460 a month "
        "to host ($2.00/h x 730 h); the classic model cost $0.00040 to train and score."
    )


def test_verdict_when_they_tie():
    verdict = classic_verdict(0.9, 0.9, hosting_usd_per_hour=1.70, classic_usd=0.0)
    assert verdict.sentence.startswith("The fine-tune buys nothing over the classic baseline (90.0% vs 90.0%)")


def test_sub_cent_costs_keep_two_significant_digits():
    from shared.reporting.formatting import usd_fine

    assert [usd_fine(v) for v in (0.00050194, 4.763e-05, 0.0123, 0.0, None, 12.5)] == [
        "$0.00050", "$0.000048", "$0.01", "$0.00", "—", "$12.50"]


def test_a_run_without_a_baseline_says_why_in_its_report():
    from shared.pipeline.classic import classic_report

    live = _run()
    live.state = RunState.TRAINING
    _, summary = classic_report(FakePipeline(), live, Settings(), ["a", "b"], None)
    assert summary.status == "not_run" and "not reached its evaluation yet (state training)" in summary.reason
    failed = _run()
    failed.fail("training", "the job failed: invalid_training_file")
    _, summary = classic_report(FakePipeline(), failed, Settings(), ["a", "b"], None)
    assert summary.reason == "the run stopped before its evaluation (training: the job failed: invalid_training_file)"
    skipped = _run()
    skipped.classic = classic.ClassicProgress(status="skipped", reason="too large")
    evaluation, summary = classic_report(FakePipeline(), skipped, Settings(), ["a", "b"], None)
    assert evaluation is None and (summary.status, summary.reason) == ("skipped", "too large")
