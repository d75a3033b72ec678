"""RunStore on a real Azurite: create-if-absent, ETag-guarded saves, update retry, leases, listing."""

from __future__ import annotations

import threading

import pytest

from shared.pipeline.models import Run, RunState, TransitionError
from shared.pipeline.overrides import OverridesError, RunOverrides
from shared.pipeline.store import ConcurrentUpdateError, RunStore


@pytest.fixture
def store(blob_service, fresh_container):
    return RunStore(blob_service.get_container_client(fresh_container))


def test_create_is_first_writer_wins(store):
    first, created = store.create(Run(dataset="digits", version="v1", overrides={"epochs": 3}))
    assert created and first.etag
    second, created_again = store.create(Run(dataset="digits", version="v1"))
    assert not created_again
    assert second.overrides == {"epochs": 3}  # the stored run, not the new one


def test_save_refuses_a_stale_copy(store):
    run, _ = store.create(Run(dataset="digits", version="v1"))
    stale = store.get("digits", "v1")
    run.transition(RunState.UPLOADING, "uploading")
    store.save(run)
    stale.transition(RunState.OVER_BUDGET, "would overwrite")
    with pytest.raises(ConcurrentUpdateError):
        store.save(stale)
    assert store.get("digits", "v1").state is RunState.UPLOADING


def test_update_reapplies_on_conflict_and_keeps_every_transition(store):
    store.create(Run(dataset="digits", version="v1"))
    errors = []

    def note(i):
        try:
            store.update("digits", "v1", lambda r: r.note(f"note {i}"), attempts=50)
        except Exception as error:  # pragma: no cover - reported below
            errors.append(error)

    threads = [threading.Thread(target=note, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    details = sorted(t.detail for t in store.get("digits", "v1").transitions)
    assert details == sorted(f"note {i}" for i in range(8))


def test_lease_excludes_a_second_worker_until_it_expires(store):
    store.create(Run(dataset="digits", version="v1"))
    held = store.claim("digits", "v1", seconds=60, owner="worker-a")
    assert held is not None and held.lease.owner == "worker-a"
    assert store.claim("digits", "v1", seconds=60, owner="worker-b") is None
    # the holder may re-claim (a later tick of the same worker)
    assert store.claim("digits", "v1", seconds=60, owner="worker-a") is not None
    store.release(store.get("digits", "v1"))
    assert store.claim("digits", "v1", seconds=60, owner="worker-b") is not None
    # an expired lease (holder died) is taken over
    store.claim("digits", "v1", seconds=0, owner="worker-b")
    assert store.claim("digits", "v1", seconds=60, owner="worker-c") is not None


def test_list_returns_runs_only_oldest_first(store):
    store.create(Run(dataset="digits", version="v1"))
    store.create(Run(dataset="digits", version="v2"))
    store.create(Run(dataset="pets", version="p1"))
    store.write_side("digits", "v1", "eval-candidate.json", {"examples": []})
    assert [r.version for r in store.list("digits")] == ["v1", "v2"]
    assert [r.key for r in store.list()] == ["digits/v1", "digits/v2", "pets/p1"]
    assert store.datasets() == ["digits", "pets"]
    assert store.read_side("digits", "v1", "eval-candidate.json") == {"examples": []}
    assert store.read_side("digits", "v1", "missing.json") is None


def test_state_machine_rejects_skipping_steps():
    run = Run(dataset="d", version="v")
    with pytest.raises(TransitionError, match="converted -> promoted"):
        run.transition(RunState.PROMOTED)
    run.transition(RunState.UPLOADING, "files")
    run.fail("upload", "file-1: invalid JSONL on line 3")
    assert run.state is RunState.FAILED and run.failure.stage == "upload"
    assert [t.state for t in run.transitions] == ["uploading", "failed"]
    with pytest.raises(TransitionError):  # a failed run only reopens at a retry point (shared.pipeline.retry)
        run.transition(RunState.DEPLOYED)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{not json", "not valid JSON"),
        (b"[1, 2]", "must hold a JSON object"),
        (b'{"epoch": 3}', "epoch: Extra inputs are not permitted"),
        (b'{"n_epochs": 0}', "n_epochs: Input should be greater than or equal to 1"),
    ],
)
def test_marker_overrides_errors_are_specific(body, message):
    with pytest.raises(OverridesError, match=message):
        RunOverrides.parse_marker(body)


def test_marker_overrides_apply_to_settings():
    from shared.settings import Settings

    overrides = RunOverrides.parse_marker(b'{"n_epochs": 4, "max_run_usd": 12.5, "prompt": "Which digit?"}')
    applied = overrides.apply(Settings())
    assert (applied.n_epochs, applied.max_run_usd) == (4, 12.5)
    assert RunOverrides.parse_marker(b"  \n").values() == {}


def test_settled_runs_are_skipped_without_being_read(store):
    run, _ = store.create(Run(dataset="digits", version="v1"))
    store.create(Run(dataset="digits", version="v2"))
    run.transition(RunState.UPLOADING)
    run.fail("upload", "boom")
    store.save(run)
    assert [r.version for r in store.list(unsettled_only=True)] == [
        "v1",
        "v2",
    ]  # failed, report not written yet
    run.report_written_for = "failed"
    store.save(run)
    assert [r.version for r in store.list(unsettled_only=True)] == ["v2"]
    assert [r.version for r in store.list()] == ["v1", "v2"]


def test_a_document_stored_under_another_name_is_refused(store):
    from shared.pipeline.stored import DocumentError

    run, _ = store.create(Run(dataset="digits", version="v1"))
    store._container.upload_blob("digits/v2.json", run.model_dump_json().encode())
    with pytest.raises(DocumentError, match="digits/v2.json holds the document of digits/v1.json"):
        store.get("digits", "v2")
