"""Events: the journal in Azurite, announcements from RunStore writes, and Event Grid failures that never
reach the caller."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from shared.events import (
    PENDING_PREFIX,
    EventPublisher,
    cloud_event,
    journal_blob,
    read_events,
)
from shared.layout import REPORTS_CONTAINER, RUNS_CONTAINER
from shared.pipeline.models import Run, RunState
from shared.pipeline.store import RunStore
from shared.settings import Settings


@pytest.fixture
def settings(azurite_connection_string: str, blob_service) -> Settings:
    from shared.storage.clients import ensure_containers

    ensure_containers(blob_service)
    for blob in blob_service.get_container_client(REPORTS_CONTAINER).list_blobs(name_starts_with="_events/"):
        blob_service.get_container_client(REPORTS_CONTAINER).delete_blob(blob.name)
    return Settings(AzureWebJobsStorage=azurite_connection_string)


def _types(settings: Settings, dataset: str | None = None) -> list[str]:
    return [e["type"] for e in read_events(settings, dataset=dataset)]


def test_cloud_event_is_cloudevents_1_0_with_a_stable_id() -> None:
    at = datetime(2026, 11, 30, 1, 2, 3, tzinfo=UTC)
    event = cloud_event("run.promoted", "dogs/abc", {"dataset": "dogs"}, at=at, key="dogs/abc/promoted")
    assert {"specversion", "id", "source", "type", "subject", "time", "datacontenttype", "data"} <= set(event)
    assert event["specversion"] == "1.0" and event["type"] == "visiontune.run.promoted"
    assert event["id"] == cloud_event("run.promoted", "x", {}, at=at, key="dogs/abc/promoted")["id"]
    assert journal_blob(at) == "_events/2026-11-30.jsonl"
    from azure.core.messaging import CloudEvent

    parsed = CloudEvent.from_dict(dict(event))  # what EventGridPublisherClient sends
    assert parsed.type == "visiontune.run.promoted" and parsed.subject == "dogs/abc"


def test_run_store_writes_announce_each_state_change_once(settings: Settings, unique_name) -> None:
    dataset = unique_name("ds")
    store = RunStore.from_settings(settings)
    run = Run(dataset=dataset, version="v1")
    from shared.pipeline.models import Transition, utcnow

    run.transitions.append(Transition(state="converted", at=utcnow(), detail="10 examples"))
    stored, created = store.create(run)
    assert created
    assert _types(settings, dataset) == ["visiontune.run.converted"]
    assert store.create(Run(dataset=dataset, version="v1"))[1] is False  # a replay announces nothing
    assert _types(settings, dataset) == ["visiontune.run.converted"]

    run = store.get(dataset, "v1")
    run.transition(RunState.UPLOADING, "uploading")  # not announced
    run.transition(RunState.TRAINING, "job ftjob-1")
    store.save(run)
    run.note("job running")  # same state: nothing new
    store.save(run)
    assert _types(settings, dataset) == ["visiontune.run.converted", "visiontune.run.training_started"]

    stale = store.get(dataset, "v1")
    run.fail("training", "the job failed: bad data")
    store.save(run)
    stale.transition(RunState.CANCELLED, "cancelled")
    from shared.pipeline.store import ConcurrentUpdateError

    with pytest.raises(ConcurrentUpdateError):  # the losing writer announces nothing
        store.save(stale)
    events = list(read_events(settings, dataset=dataset))
    assert [e["type"] for e in events][-1] == "visiontune.run.failed"
    assert events[-1]["data"]["failure"]["message"] == "the job failed: bad data"
    assert events[-1]["subject"] == f"{dataset}/v1"


def test_a_failing_event_grid_never_fails_the_write_and_the_event_is_kept(settings: Settings, unique_name, blob_service) -> None:
    broken = settings.model_copy(update={"events_topic_endpoint": "https://127.0.0.1:9/api/events"})
    publisher = EventPublisher(broken)
    store = RunStore(blob_service.get_container_client(RUNS_CONTAINER), publisher)
    dataset = unique_name("ds")
    from shared.pipeline.models import Transition, utcnow

    run = Run(dataset=dataset, version="v1")
    run.transitions.append(Transition(state="converted", at=utcnow(), detail="x"))
    _, created = store.create(run)  # Event Grid unreachable: the write still succeeds
    assert created
    assert _types(settings, dataset) == ["visiontune.run.converted"]
    reports = blob_service.get_container_client(REPORTS_CONTAINER)
    pending = [b.name for b in reports.list_blobs(name_starts_with=PENDING_PREFIX)]
    assert len(pending) == 1

    sent: list[dict] = []
    publisher._send = lambda events: sent.extend(events)  # the topic is back
    assert publisher.flush_pending() == 1
    assert sent[0]["type"] == "visiontune.run.converted" and sent[0]["data"]["dataset"] == dataset
    assert not list(reports.list_blobs(name_starts_with=PENDING_PREFIX))


def test_the_journal_is_one_append_blob_per_day(settings: Settings, blob_service) -> None:
    publisher = EventPublisher(settings)
    at = datetime.now(UTC)
    for n in range(3):
        publisher.publish(cloud_event("run.rejected", f"d/v{n}", {"dataset": "d"}, at=at, key=f"k{n}"))
    blob = blob_service.get_container_client(REPORTS_CONTAINER).get_blob_client(journal_blob(at))
    assert blob.get_blob_properties().blob_type == "AppendBlob"
    lines = blob.download_blob().readall().splitlines()
    assert [json.loads(line)["subject"] for line in lines] == ["d/v0", "d/v1", "d/v2"]
