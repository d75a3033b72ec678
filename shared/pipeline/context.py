"""The services one pipeline call works with (storage containers, run store, Azure OpenAI clients),
built lazily from the settings so a call that only reads runs never builds an OpenAI client."""

from __future__ import annotations

import functools
import json
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
from shared.pipeline.store import ConcurrentUpdateError, RunStore
from shared.settings import Settings
from shared.storage.clients import container_client
from shared.storage.readers import read_json

if TYPE_CHECKING:  # pragma: no cover
    from azure.storage.blob import ContainerClient


# A run's lease: short, so a worker killed mid-step (kill -9, an instance recycled) delays its run by at
# most this long; the holder renews it every RUN_LEASE_RENEW_SECONDS while a step runs
# (``RunStore.keep_lease``), so a long step (an evaluation chunk, an upload, the classic baseline) keeps
# it. Three renewals in a row may fail (storage timeouts) before the lease lapses.
RUN_LEASE_SECONDS = 120.0
RUN_LEASE_RENEW_SECONDS = 30.0

# How long one call may hold a scheduled evaluation beyond its evaluation budget (one slow request with
# retries). Scheduled evaluations are not renewed: their lease covers the whole budgeted step.
LEASE_MARGIN_SECONDS = 600.0


def lease_seconds(settings: Settings) -> float:
    """How long a worker leases a scheduled evaluation: one evaluation budget plus a margin."""
    return settings.eval_tick_seconds + LEASE_MARGIN_SECONDS


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
    def manifest(self, dataset: str, version: str) -> dict[str, Any] | None:
        return read_json(self.training, training_prefix(dataset, version) + MANIFEST_NAME)

    def production(self, dataset: str) -> tuple[dict[str, Any] | None, str | None]:
        """(production.json, its ETag) of ``dataset``, or (None, None) before the first promotion."""
        from azure.core.exceptions import ResourceNotFoundError

        try:
            downloader = self.reports.get_blob_client(production_blob(dataset)).download_blob()
            return json.loads(downloader.readall()), downloader.properties.etag
        except ResourceNotFoundError:
            return None, None

    def write_production(self, dataset: str, record: dict[str, Any], etag: str | None) -> None:
        """Write production.json with If-Match ``etag`` (If-None-Match * when None)."""
        from azure.core import MatchConditions
        from azure.core.exceptions import ResourceExistsError, ResourceModifiedError
        from azure.storage.blob import ContentSettings

        blob = self.reports.get_blob_client(production_blob(dataset))
        kwargs: dict[str, Any] = {"content_settings": ContentSettings(content_type="application/json")}
        if etag is None:
            kwargs["overwrite"] = False
        else:
            kwargs.update(overwrite=True, etag=etag, match_condition=MatchConditions.IfNotModified)
        try:
            blob.upload_blob(json.dumps(record, indent=2, default=str).encode(), **kwargs)
        except (ResourceExistsError, ResourceModifiedError) as error:
            raise ConcurrentUpdateError(f"{dataset}/production.json changed since it was read") from error
