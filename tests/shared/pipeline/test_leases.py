"""Short run leases renewed while a step runs (issue 13 item 5), on Azurite: a worker killed mid-step
delays its run by at most the short lease; a long step keeps its lease so a second worker does not take
the run; a renewal that loses the ETag race stops the worker from writing over the new holder's work."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest

from shared.pipeline import advance
from shared.pipeline.context import RUN_LEASE_SECONDS, Pipeline
from shared.pipeline.models import Run, RunState, utcnow


@pytest.fixture
def leased(pipeline_env, monkeypatch):
    """A converted run and a pipeline whose leases last 1 s, renewed every 0.25 s."""
    monkeypatch.setattr(advance, "RUN_LEASE_SECONDS", 1.0)
    monkeypatch.setattr(advance, "RUN_LEASE_RENEW_SECONDS", 0.25)
    store = pipeline_env.store()
    store.create(Run(dataset="digits", version="v1"))
    return Pipeline(pipeline_env.settings), store


def _holding_step(seconds: float, calls: list[str]):
    """A CONVERTED handler that works ``seconds`` (side writes on the way), then waits on something remote."""

    def step(pipeline, settings, run, *, deadline, wait_for_files):
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            pipeline.store.write_side(run.dataset, run.version, "progress.json", {"at": time.time()})
            time.sleep(0.1)
        run.note("slow step done")
        calls.append(run.lease.owner)
        return False

    return step


def test_a_run_lease_is_short():
    assert 60 <= RUN_LEASE_SECONDS <= 120  # a killed worker delays its run by at most ~2 minutes


def test_a_killed_worker_delays_its_run_by_at_most_the_lease(leased, monkeypatch):
    pipeline, store = leased
    calls: list[str] = []
    monkeypatch.setitem(advance.HANDLERS, RunState.CONVERTED, _holding_step(0, calls))
    # the killed worker: took the lease with the pipeline's lease length, never released it
    dead = store.claim("digits", "v1", seconds=advance.RUN_LEASE_SECONDS, owner="killed-worker")
    assert dead.lease.until - utcnow() <= timedelta(seconds=advance.RUN_LEASE_SECONDS)
    taken_at = time.monotonic()
    assert advance.advance_run(pipeline, "digits", "v1", deadline=time.monotonic() + 5) is None
    while advance.advance_run(pipeline, "digits", "v1", deadline=time.monotonic() + 5) is None:
        assert time.monotonic() - taken_at < advance.RUN_LEASE_SECONDS + 2, "the dead lease never lapsed"
        time.sleep(0.1)
    assert calls and time.monotonic() - taken_at >= advance.RUN_LEASE_SECONDS - 0.2
    saved = store.get("digits", "v1")
    assert saved.lease is None and saved.transitions[-1].detail == "slow step done"


def test_a_long_step_keeps_its_lease(leased, monkeypatch):
    pipeline, store = leased
    calls: list[str] = []
    monkeypatch.setitem(advance.HANDLERS, RunState.CONVERTED, _holding_step(3.5, calls))  # 3.5 leases
    result: list[Run | None] = []
    worker = threading.Thread(
        target=lambda: result.append(advance.advance_run(pipeline, "digits", "v1", deadline=time.monotonic() + 30))
    )
    worker.start()
    stolen = []
    time.sleep(0.3)
    while worker.is_alive():
        claimed = store.claim("digits", "v1", seconds=1.0, owner="second-worker")
        if claimed is not None:  # after the step (its last save) the run is free to take: give it back
            if store.get("digits", "v1").transitions[-1].detail != "slow step done":
                stolen.append(claimed.lease)
            store.release(claimed)
        time.sleep(0.1)
    worker.join()
    assert stolen == []  # while the step ran (after it, the run is free to take)
    assert result[0] is not None and len(calls) == 1
    saved = store.get("digits", "v1")
    assert saved.lease is None and saved.transitions[-1].detail == "slow step done"


def test_a_worker_that_lost_its_lease_writes_nothing_more(leased, monkeypatch):
    pipeline, store = leased
    calls: list[str] = []
    monkeypatch.setitem(advance.HANDLERS, RunState.CONVERTED, _holding_step(2.0, calls))
    result: list[Run | None] = []
    worker = threading.Thread(
        target=lambda: result.append(advance.advance_run(pipeline, "digits", "v1", deadline=time.monotonic() + 30))
    )
    worker.start()
    time.sleep(0.5)
    # another writer changes the run under the worker (e.g. its lease had lapsed during a storage outage)
    store.update("digits", "v1", lambda run: run.note("taken over"))
    # Until its next renewal the worker cannot know (its side writes may still land): the new holder's
    # side write comes after two renewal periods, and nothing of the old worker may follow it.
    time.sleep(2 * advance.RUN_LEASE_RENEW_SECONDS)
    store.write_side("digits", "v1", "progress.json", {"owner": "second-worker"})
    worker.join()
    assert result == [None]  # it stepped aside
    saved = store.get("digits", "v1")
    assert saved.transitions[-1].detail == "taken over"
    assert store.read_side("digits", "v1", "progress.json") == {"owner": "second-worker"}
    assert calls == []  # the step stopped at its first write after the renewal failed
