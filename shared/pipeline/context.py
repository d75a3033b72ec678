"""The services one pipeline call works with (storage containers, run store, Azure OpenAI clients),
built lazily from the settings so a call that only reads runs never builds an OpenAI client."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from shared.aoai.clients import openai_client
from shared.aoai.deployments import Deployments
from shared.events import EventPublisher
from shared.layout import (
    DATASETS_CONTAINER,
    MANIFEST_NAME,
    REPORTS_CONTAINER,
    RUNS_CONTAINER,
    TRAINING_CONTAINER,
    production_blob,
    training_prefix,
)
from shared.pipeline.documents import Manifest, ProductionRecord
from shared.pipeline.store import RunStore
from shared.pipeline.stored import (
    ConcurrentUpdateError,
    parse_document,
    read_model,
    update_document,
    write_model,
)
from shared.settings import Settings
from shared.storage.clients import container_client
from shared.storage.readers import read_bytes

if TYPE_CHECKING:  # pragma: no cover
    from azure.storage.blob import ContainerClient


# A run's lease (and a scheduled evaluation's): short, so a worker killed mid-step (kill -9, an instance
# recycled) delays its work by at most this long; the holder renews it every RUN_LEASE_RENEW_SECONDS
# while a step runs (``RunStore.keep_lease``), so a long step (an evaluation chunk, an upload, the
# classic baseline) keeps it. Three renewals in a row may fail (storage timeouts) before the lease lapses.
RUN_LEASE_SECONDS = 120.0
RUN_LEASE_RENEW_SECONDS = 30.0

log = logging.getLogger(__name__)


class Pipeline:
    """Storage and Azure OpenAI access for one call into the pipeline."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    # --- storage ------------------------------------------------------------------------------------
    def container(self, name: str) -> ContainerClient:
        return container_client(self.settings, name)

    @functools.cached_property
    def datasets(self) -> ContainerClient:
        return self.container(DATASETS_CONTAINER)

    @functools.cached_property
    def training(self) -> ContainerClient:
        return self.container(TRAINING_CONTAINER)

    @functools.cached_property
    def reports(self) -> ContainerClient:
        return self.container(REPORTS_CONTAINER)

    @functools.cached_property
    def store(self) -> RunStore:
        return RunStore(self.container(RUNS_CONTAINER), EventPublisher(self.settings))

    # --- Azure OpenAI -------------------------------------------------------------------------------
    @functools.cached_property
    def openai(self) -> Any:
        return openai_client(self.settings)

    @functools.cached_property
    def deployments(self) -> Deployments:
        return Deployments(self.settings)

    # --- documents ----------------------------------------------------------------------------------
    def manifest(self, dataset: str, version: str) -> Manifest | None:
        """The published ``manifest.json`` of ``dataset``/``version``, or None (``DocumentError`` when malformed)."""

        name = training_prefix(dataset, version) + MANIFEST_NAME
        data = read_bytes(self.training, name)
        return None if data is None else parse_document(Manifest, data, f"{TRAINING_CONTAINER}/{name}")

    def production(self, dataset: str) -> ProductionRecord | None:
        """``production.json`` of ``dataset`` (carrying its ETag), or None before the first promotion."""

        return read_model(self.reports, production_blob(dataset), ProductionRecord)

    def update_production(
        self, dataset: str, mutate: Callable[[ProductionRecord | None], ProductionRecord | None]
    ) -> ProductionRecord | None:
        """Read-modify-write ``production.json`` under its ETag (``stored.update_document``): ``mutate``
        gets the stored record (None before the first promotion) and returns the one to write, or None
        to write nothing. Returns the record as written (or as read when nothing was written)."""

        return update_document(
            lambda: self.production(dataset),
            mutate,
            lambda record: self.write_production(dataset, record),
            what=f"{REPORTS_CONTAINER}/{production_blob(dataset)}",
        )

    def record_deleted_deployments(self, dataset: str, deployments: list[str], *, early: str | None = None) -> None:
        """Record in production.json that the retired ``deployments`` are deleted (``early``: why before
        their time). Best effort: a deletion is idempotent, and one not recorded is deleted again later."""

        try:
            self.update_production(
                dataset, lambda record: record if record is not None and record.mark_deleted(deployments, early=early) else None
            )
        except ConcurrentUpdateError as error:
            log.warning("%s: the deletion of %s is not recorded yet: %s", dataset, ", ".join(deployments), error)

    def write_production(self, dataset: str, record: ProductionRecord) -> ProductionRecord:
        """Write production.json If-Match the record's ETag (If-None-Match * when it has none); raises
        ``ConcurrentUpdateError`` when the condition fails. Changes go through ``update_production``."""

        return write_model(self.reports, production_blob(dataset), record, indent=2, content_type="application/json")

