"""``shared.pipeline.stored`` on Azurite: the one ETag read-modify-write loop (re-applied on a lost race,
If-None-Match for a new document, bounded), and typed reads that name a malformed blob."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime

import pytest

from shared.pipeline.documents import IntakeReceipt, ProductionRecord
from shared.pipeline.stored import (
    ConcurrentUpdateError,
    DocumentError,
    read_model,
    update_document,
    write_model,
)
from shared.reporting.schema import ProductionHistoryPoint
from tests.shared.pipeline.test_documents import TODAYS_PRODUCTION

NAME = "digits/production.json"


@pytest.fixture
def container(blob_service, fresh_container):
    return blob_service.get_container_client(fresh_container)


def _update(container, mutate, **kwargs):
    return update_document(
        lambda: read_model(container, NAME, ProductionRecord),
        mutate,
        lambda record: write_model(container, NAME, record, indent=2),
        what=NAME,
        **kwargs,
    )


def _point(i: int) -> ProductionHistoryPoint:
    return ProductionHistoryPoint(
        at=datetime(2026, 11, 30, tzinfo=UTC), version="v", model="m", accuracy=i / 100, source="scheduled"
    )


def test_concurrent_updates_of_a_stored_document_of_todays_shape_all_land(container):
    container.upload_blob(NAME, json.dumps(TODAYS_PRODUCTION, indent=2, default=str).encode())
    errors: list[Exception] = []

    def add(i: int) -> None:
        def append(record):
            record.history.append(_point(i))
            return record

        try:
            _update(container, append, attempts=50)
        except Exception as error:  # pragma: no cover - reported below
            errors.append(error)

    threads = [threading.Thread(target=add, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    stored = read_model(container, NAME, ProductionRecord)
    assert stored is not None and stored.retired[0].retired_early == "a deployment slot was needed"
    assert sorted(p.accuracy for p in stored.history[2:]) == [i / 100 for i in range(8)]


def test_a_new_document_is_created_once_and_a_second_creator_sees_it(container):
    def first(record):
        assert record is None
        return ProductionRecord.model_validate({**TODAYS_PRODUCTION, "history": []})

    created = _update(container, first)
    assert created is not None and created.etag
    seen = []

    def second(record):
        seen.append(record)
        return None if record is not None else ProductionRecord.model_validate(TODAYS_PRODUCTION)

    # a creator that read "no document" before the first one wrote: If-None-Match * fails, it reads again
    reads = []

    def read():
        reads.append(1)
        return None if len(reads) == 1 else read_model(container, NAME, ProductionRecord)

    result = update_document(
        read,
        second,
        lambda record: write_model(container, NAME, record),
        what=NAME,
    )
    assert seen[0] is None and seen[1] is not None and result == seen[1]
    assert read_model(container, NAME, ProductionRecord).history == []  # the first creator's document stands


def test_the_loop_gives_up_after_its_attempts_naming_the_document():
    writes = []

    def always_conflicts(document):
        writes.append(document)
        raise ConcurrentUpdateError("changed")

    with pytest.raises(ConcurrentUpdateError, match="runs/x.json: still conflicting after 3 attempts"):
        update_document(
            lambda: None,
            lambda _: IntakeReceipt(version="v", at=datetime(2026, 11, 30, tzinfo=UTC)),
            always_conflicts,
            what="runs/x.json",
            attempts=3,
        )
    assert len(writes) == 3 and all(w.etag is None for w in writes)


def test_nothing_to_write_returns_the_document_as_read(container):
    assert _update(container, lambda record: None) is None
    container.upload_blob(NAME, json.dumps(TODAYS_PRODUCTION).encode())
    before = container.get_blob_client(NAME).get_blob_properties().etag
    assert _update(container, lambda record: None).version == TODAYS_PRODUCTION["version"]
    assert container.get_blob_client(NAME).get_blob_properties().etag == before


def test_a_malformed_stored_document_names_its_blob(container):
    container.upload_blob(NAME, b'{"dataset": "digits"}')
    with pytest.raises(DocumentError, match=r"^digits/production.json is not a valid ProductionRecord: version"):
        read_model(container, NAME, ProductionRecord)


def test_a_stale_write_is_refused(container):
    container.upload_blob(NAME, json.dumps(TODAYS_PRODUCTION).encode())
    one = read_model(container, NAME, ProductionRecord)
    two = read_model(container, NAME, ProductionRecord)
    one.reason = "first"
    write_model(container, NAME, one)
    two.reason = "second"
    with pytest.raises(ConcurrentUpdateError, match="changed since it was read"):
        write_model(container, NAME, two)
    assert read_model(container, NAME, ProductionRecord).reason == "first"
