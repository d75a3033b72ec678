"""An over-budget run restarts the way its message says: drop the ``_READY`` marker again with a higher
budget (or after the settings' budget was raised). The budget is not part of the version, so the drop
finds the ``over_budget`` run: it is checked again and, when it fits, continued exactly once however
often the marker's trigger fires; when it still does not fit it stays over budget with a new report."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

from shared.pipeline.intake import accept_dataset

PAST_UPLOAD = {
    "training", "trained", "deploying", "deployed", "evaluating", "evaluated", "promoted", "rejected"
}


def _put_marker(env, dataset: str, marker: dict) -> bytes:
    body = json.dumps(marker).encode()
    env.service.get_container_client("datasets").upload_blob(f"{dataset}/_READY", body, overwrite=True)
    return body


def _redrops(run) -> list:
    return [t for t in run.transitions if "dropped again" in t.detail]


def test_a_redropped_marker_with_a_higher_budget_continues_the_run_once(pipeline_env, digits_dir):
    env = pipeline_env
    stopped = env.through(digits_dir, "digits", {"max_run_usd": 0.01})
    assert stopped.state.value == "over_budget", env.timeline(stopped)
    assert "drop the _READY marker again" in stopped.failure.message

    body = _put_marker(env, "digits", {"max_run_usd": 100})
    # the marker's trigger fires 10 times, concurrently (replays, several instances)
    with ThreadPoolExecutor(10) as pool:
        results = list(
            pool.map(
                lambda _: accept_dataset(env.settings, "digits", archive=False, marker_body=body), range(10)
            )
        )
    assert {r.version for r in results} == {stopped.version}
    reopened = env.run("digits", stopped.version)
    assert reopened.state.value == "converted", env.timeline(reopened)
    [redrop] = _redrops(reopened)
    assert redrop.state == "converted" and "$100.00" in redrop.detail and "continuing" in redrop.detail
    assert reopened.failure is None and reopened.overrides == {"max_run_usd": 100}
    assert env.report("digits", stopped.version)["outcome"] == "in_progress"

    run = env.drive_run("digits", stopped.version, PAST_UPLOAD)
    for _ in range(10):  # later replays find the run moved on
        accept_dataset(env.settings, "digits", archive=False, marker_body=body)
    env.advance()
    run = env.run("digits", stopped.version)
    assert run.state.value in PAST_UPLOAD, env.timeline(run)
    assert len(_redrops(run)) == 1, env.timeline(run)
    assert env.admin.stats().count("fine_tuning_jobs_create") == 1 and len(env.jobs()) == 1
    assert sum(t.detail.startswith("within budget") for t in run.transitions) == 1, env.timeline(run)


def test_raising_the_settings_budget_and_redropping_the_same_marker_continues(pipeline_env, digits_dir):
    env = pipeline_env
    tight = env.with_settings(max_run_usd=0.01)
    stopped = env.through(digits_dir, "digits", settings=tight)
    assert stopped.state.value == "over_budget", env.timeline(stopped)

    # the same (empty) marker again, under the old budget: nothing changes, nothing is added
    accept_dataset(tight, "digits", archive=False, marker_body=b"")
    same = env.run("digits", stopped.version)
    assert same.state.value == "over_budget" and len(same.transitions) == len(stopped.transitions)

    accept_dataset(env.settings, "digits", archive=False, marker_body=b"")  # VISIONTUNE_MAX_RUN_USD raised
    run = env.drive_run("digits", stopped.version, PAST_UPLOAD)
    assert len(_redrops(run)) == 1 and env.admin.stats().count("fine_tuning_jobs_create") == 1


def test_a_redrop_still_over_budget_stays_over_budget_with_an_updated_report(pipeline_env, digits_dir):
    env = pipeline_env
    stopped = env.through(digits_dir, "digits", {"max_run_usd": 0.01})
    assert stopped.state.value == "over_budget", env.timeline(stopped)

    body = _put_marker(env, "digits", {"max_run_usd": 0.02})
    for _ in range(3):
        accept_dataset(env.settings, "digits", archive=False, marker_body=body)
    run = env.run("digits", stopped.version)
    assert run.state.value == "over_budget", env.timeline(run)
    [redrop] = _redrops(run)
    assert redrop.state == "over_budget" and "over the budget of $0.02" in redrop.detail
    assert "over the budget of $0.02" in run.failure.message and run.overrides == {"max_run_usd": 0.02}
    report = env.report("digits", stopped.version)
    assert report["outcome"] == "over_budget" and report["cost"]["budget_usd"] == 0.02
    assert "over the budget of $0.02" in report["failure"]["message"]
    assert run.report_written_for == "over_budget"
    env.advance()
    assert env.admin.stats().count("files_create") == 0 and env.files() == []
