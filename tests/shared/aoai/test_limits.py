"""The pure planning around Azure OpenAI's documented limits (shared/aoai/limits.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from shared.aoai.limits import (
    MB,
    BatchLineTooLargeError,
    Expendable,
    RemoteFile,
    is_fine_tuned_model,
    plan_deployment_slot,
    plan_fine_tune_files,
    split_batch_lines,
)


# --- batch files ------------------------------------------------------------------------------
def test_split_batch_lines_respects_both_limits_and_keeps_order() -> None:
    sizes = [10] * 25
    assert split_batch_lines(sizes, max_bytes=1000, max_requests=10) == [range(0, 10), range(10, 20), range(20, 25)]
    assert split_batch_lines(sizes, max_bytes=45, max_requests=100) == [
        range(0, 4), range(4, 8), range(8, 12), range(12, 16), range(16, 20), range(20, 24), range(24, 25)
    ]  # fmt: skip
    parts = split_batch_lines([30, 30, 40, 10, 90, 5], max_bytes=100, max_requests=3)
    assert parts == [range(0, 3), range(3, 5), range(5, 6)]
    assert [i for part in parts for i in part] == list(range(6))


def test_split_batch_lines_one_file_when_everything_fits_and_none_when_empty() -> None:
    assert split_batch_lines([5, 5, 5], max_bytes=15, max_requests=3) == [range(0, 3)]
    assert split_batch_lines([], max_bytes=15, max_requests=3) == []


def test_a_line_larger_than_a_whole_file_is_refused() -> None:
    with pytest.raises(BatchLineTooLargeError, match="request 1 is 101 bytes"):
        split_batch_lines([10, 101], max_bytes=100, max_requests=5)


# --- fine-tuning file quota ------------------------------------------------------------------
def test_files_that_fit_need_no_deletion() -> None:
    plan = plan_fine_tune_files(
        {"train": 300 * MB, "validation": 30 * MB}, [RemoteFile("f1", "old", 400 * MB, expendable=True)]
    )
    assert plan.fits and plan.delete == () and plan.needed_bytes == 330 * MB and plan.used_bytes == 400 * MB


def test_expendable_files_are_deleted_largest_first_only_as_many_as_needed() -> None:
    existing = [
        RemoteFile("small", "a", 100 * MB, expendable=True),
        RemoteFile("big", "b", 400 * MB, expendable=True),
        RemoteFile("foreign", "c", 300 * MB),
    ]
    plan = plan_fine_tune_files({"train": 500 * MB}, existing)
    assert plan.fits and plan.delete == ("big",)  # 800 + 500 - 1024 = 276 MB over: one big file frees it


def test_a_file_already_uploaded_by_this_run_is_not_counted_twice() -> None:
    plan = plan_fine_tune_files({"train": 500 * MB}, [RemoteFile("f", "train", 500 * MB), RemoteFile("g", "x", 600 * MB)])
    assert plan.fits and plan.delete == ()


def test_when_deleting_is_not_enough_the_problem_says_how_much_to_cut_and_how() -> None:
    existing = [RemoteFile("mine", "a", 100 * MB, expendable=True), RemoteFile("theirs", "b", 700 * MB)]
    plan = plan_fine_tune_files({"train": 400 * MB}, existing)
    assert not plan.fits and plan.delete == ()
    assert plan.cut_bytes == 76 * MB  # 700 (kept) + 400 - 1024
    assert "cut at least 76.0 MB (19% of the data)" in plan.problem
    assert "--quality" in plan.problem and "--max-side" in plan.problem and "fewer images" in plan.problem


def test_a_file_over_the_per_file_limit_is_refused_before_anything_else() -> None:
    plan = plan_fine_tune_files({"train": 612 * MB}, [], max_file_bytes=512 * MB)
    assert not plan.fits and plan.cut_bytes == 100 * MB
    assert "over Azure OpenAI's limit of 512.0 MB per fine-tuning file" in plan.problem
    assert "cut at least 100.0 MB" in plan.problem


def test_the_file_count_limit_counts_too() -> None:
    existing = [RemoteFile(f"f{i}", f"n{i}", 1, expendable=i < 2) for i in range(5)]
    plan = plan_fine_tune_files({"train": 1, "validation": 1}, existing, max_files=6)
    assert plan.fits and len(plan.delete) == 1
    plan = plan_fine_tune_files({"train": 1, "validation": 1}, existing, max_files=4)
    assert not plan.fits and "allows 4" in plan.problem


# --- fine-tuned deployment slots ------------------------------------------------------------
NOW = datetime(2026, 1, 1, tzinfo=UTC)
FT = "gpt-4.1-2025-04-14.ft-abc"


def test_fine_tuned_models_are_recognised() -> None:
    assert is_fine_tuned_model(FT) and is_fine_tuned_model("ftchkpt-123") and is_fine_tuned_model("ft:gpt-4o:x")
    assert not is_fine_tuned_model("gpt-4.1-2025-04-14") and not is_fine_tuned_model(None)


def test_a_slot_is_free_below_the_limit_and_base_deployments_do_not_count() -> None:
    deployments = [("base", "gpt-4.1-2025-04-14"), ("batch", "gpt-4.1-2025-04-14"), ("a", FT), ("b", FT)]
    plan = plan_deployment_slot("new", deployments, [], limit=3)
    assert plan.free and plan.used == 2 and plan.limit == 3


def test_a_deployment_that_is_already_there_holds_its_own_slot() -> None:
    assert plan_deployment_slot("a", [("a", FT), ("b", FT)], [], limit=2).free


def test_at_the_limit_the_oldest_expendable_one_that_exists_is_retired_first() -> None:
    deployments = [("a", FT), ("b", FT), ("c", FT)]
    expendable = [
        Expendable("b", "ds1", NOW - timedelta(hours=1)),
        Expendable("gone", "ds2", NOW - timedelta(hours=9)),  # no longer on the resource
        Expendable("c", "ds3", NOW - timedelta(hours=3)),
    ]
    plan = plan_deployment_slot("new", deployments, expendable, limit=3)
    assert not plan.free and plan.retire == expendable[2]


def test_at_the_limit_with_nothing_expendable_the_run_waits() -> None:
    plan = plan_deployment_slot("new", [("a", FT), ("b", FT)], [], limit=2)
    assert not plan.free and plan.retire is None and plan.holders == ("a", "b")


# --- job fields the service bounds -----------------------------------------------------------
@pytest.mark.parametrize("seed", ["-1", str(2**31)])
def test_a_seed_outside_the_spec_range_is_refused_by_the_settings_never_sent(seed: str) -> None:
    from pydantic import ValidationError

    from shared.settings import Settings

    with pytest.raises(ValidationError, match="VISIONTUNE_SEED"):
        Settings.model_validate({"VISIONTUNE_SEED": seed})
    assert Settings.model_validate({"VISIONTUNE_SEED": str(2**31 - 1)}).seed == 2**31 - 1


def test_every_suffix_the_pipeline_makes_fits_the_strictest_documented_limit() -> None:
    from shared.aoai.finetune import SUFFIX_RE, make_suffix

    for dataset in ("digits", "a" * 200, "Stanford Dogs (120 breeds)", "ünïcødé", "x"):
        assert SUFFIX_RE.match(make_suffix(dataset)) and len(make_suffix(dataset)) <= 18
