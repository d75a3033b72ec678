"""``RunStore``: one blob per run (``runs/<dataset>/<version>.json``) with optimistic concurrency.

- ``create`` uses If-None-Match: * (the first writer wins; everyone else gets the stored run).
- ``save`` uses If-Match: <etag> and raises ``ConcurrentUpdateError`` when someone else wrote first.
- ``update`` re-reads and re-applies a mutation on conflict (bounded attempts).
- ``claim`` takes a short lease on a run so overlapping timer ticks / triggers never advance it twice;
  a lease whose holder died simply expires. ``keep_lease`` renews it from a heartbeat thread while a
  long step runs (If-Match); a renewal that finds another writer marks the copy lost, and every later
  save of it (and side write of the store) raises ``ConcurrentUpdateError``.
- The lease is not the run's alone: ``claim_document`` / ``keep_lease`` / ``release`` take, renew and
  drop the lease of any ``LeasedDocument`` of the container the same way (scheduled evaluations).
- ``read`` / ``write`` / ``update_document``: any typed document of the container under its ETag
  (``shared.pipeline.stored``); ``read_document`` / ``write_document``: untyped side data.
- Side blobs (``runs/<dataset>/<version>.d/<name>``) hold what does not belong in the run document:
  evaluation progress (scored examples) and the like.
"""

from __future__ import annotations

import builtins
import contextvars
import json
import logging
import os
import re
import socket
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import TYPE_CHECKING, Any, TypeVar

from shared.events import EventPublisher, publish_run_transitions
from shared.layout import RUNS_CONTAINER, dataset_prefix, run_blob, side_prefix
from shared.pipeline.models import Run, utcnow
from shared.pipeline.stored import (
    ConcurrentUpdateError,
    D,
    DocumentError,
    Lease,
    LeasedDocument,
    read_model,
    update_document,
    write_model,
)
from shared.settings import Settings
from shared.storage.clients import container_client
from shared.storage.readers import read_json
from shared.telemetry import note

if TYPE_CHECKING:  # pragma: no cover
    from azure.storage.blob import BlobClient, ContainerClient


log = logging.getLogger(__name__)

_RUN_BLOB_RE = re.compile(r"^(?P<dataset>[^/]+)/(?P<version>[^/]+)\.json$")

__all__ = ["INSTANCE_ID", "ConcurrentUpdateError", "RunStore"]

L = TypeVar("L", bound=LeasedDocument)

# Identifies this process as a lease holder (host + pid + random: two workers never share it).
INSTANCE_ID = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


class RunStore:
    """Runs and their side blobs in the ``runs`` container."""

    def __init__(self, container: ContainerClient, events: EventPublisher | None = None) -> None:
        self._container = container
        self._events = events  # publishes the state changes a successful write stored (shared.events)
        # Saves and lease renewals of one store take turns, so a renewal never interleaves with a save.
        self._write_lock = threading.RLock()
        self._kept: LeasedDocument | None = None  # the document whose lease ``keep_lease`` renews right now

    @classmethod
    def from_settings(cls, settings: Settings) -> RunStore:
        return cls(container_client(settings, RUNS_CONTAINER), EventPublisher(settings))

    def _blob(self, name: str) -> BlobClient:
        return self._container.get_blob_client(name)

    # --- runs -------------------------------------------------------------------------------------
    def get(self, dataset: str, version: str) -> Run | None:
        """The stored run, or None."""
        return self.read(run_blob(dataset, version), Run)

    def create(self, run: Run) -> tuple[Run, bool]:
        """Store ``run`` unless one exists for its dataset version. Returns (stored run, created)."""
        run._etag = None
        try:
            self._write(run)
        except ConcurrentUpdateError:
            existing = self.get(run.dataset, run.version)
            if existing is None:  # deleted in between: try once more
                return self.create(run)
            return existing, False
        self._announce(run)
        return run, True

    def save(self, run: Run) -> Run:
        """Write ``run`` if nobody else has since it was read; updates ``run.etag``."""
        if run.etag is None:
            raise ValueError(f"{run.key}: save() needs a run that was read or created (no ETag)")
        run.updated_at = utcnow()
        self.write(run)
        self._announce(run)
        return run

    def _announce(self, run: Run) -> None:
        """Publish the state changes that this write stored (after it succeeded; never raises)."""
        since, run._stored_transitions = run._stored_transitions, len(run.transitions)
        if since < len(run.transitions):
            publish_run_transitions(self._events, run, since)

    def update(self, dataset: str, version: str, mutate: Callable[[Run], Any], *, attempts: int = 10) -> Run:
        """Read, apply ``mutate(run)`` and save, re-reading and re-applying on conflict."""

        def apply(run: Run | None) -> Run:
            if run is None:
                raise KeyError(f"no run {dataset}/{version}")
            mutate(run)
            return run

        updated = update_document(
            lambda: self.get(dataset, version), apply, self.save, what=f"{dataset}/{version}", attempts=attempts
        )
        assert updated is not None  # ``apply`` never returns None
        return updated

    def list(self, dataset: str | None = None, *, unsettled_only: bool = False) -> list[Run]:
        """Every run (of ``dataset``), oldest first. ``unsettled_only`` skips, without reading them, runs
        that are finished with their report written (the blob's ``settled`` metadata says so)."""
        prefix = dataset_prefix(dataset) if dataset else None
        runs = []
        for blob in self._container.list_blobs(name_starts_with=prefix, include=["metadata"]):
            match = _RUN_BLOB_RE.match(blob.name)
            if not match:
                continue
            if unsettled_only and (blob.metadata or {}).get("settled") == "1":
                continue
            run = self.get(match["dataset"], match["version"])
            if run is not None:
                runs.append(run)
        runs.sort(key=lambda r: (r.created_at, r.version))
        return runs

    def datasets(self) -> builtins.list[str]:
        """Every dataset that has at least one run."""
        names = set()
        for blob in self._container.list_blobs():
            match = _RUN_BLOB_RE.match(blob.name)
            if match:
                names.add(match["dataset"])
        return sorted(names)

    # --- leases (runs and every other LeasedDocument) ---------------------------------------------
    def claim(self, dataset: str, version: str, *, seconds: float, owner: str = INSTANCE_ID) -> Run | None:
        """Take the run's lease for ``seconds`` (If-Match). None when another live holder has it or
        someone else wrote first. The returned run carries the new ETag: save it to keep the claim."""
        return self.claim_document(run_blob(dataset, version), Run, seconds=seconds, owner=owner)

    def claim_document(
        self,
        name: str,
        model: type[L],
        *,
        seconds: float,
        owner: str = INSTANCE_ID,
        when: Callable[[L], bool] | None = None,
    ) -> L | None:
        """Take the lease of the document ``name`` for ``seconds`` (If-Match). None when there is none,
        ``when`` (if given) says it needs no work, another live holder has it, or someone else wrote first."""
        document = self.read(name, model)
        if document is None or (when is not None and not when(document)):
            return None
        now = utcnow()
        if document.lease is not None and document.lease.owner != owner and document.lease.until > now:
            # Per document and tick: a count on the invocation's summary, the detail only at DEBUG.
            log.debug("%s is leased by %s until %s; skipping", document.key, document.lease.owner, document.lease.until)
            note(**{"runs_leased_elsewhere" if isinstance(document, Run) else "documents_leased_elsewhere": 1})
            return None
        document.lease = Lease(owner=owner, until=now + timedelta(seconds=seconds))
        try:
            return self._persist(document)
        except ConcurrentUpdateError:
            return None

    def renew(self, document: LeasedDocument, *, seconds: float) -> bool:
        """Extend the lease ``document`` holds to now + ``seconds``: the stored document as it was last
        saved (If-Match its ETag), with only the lease's expiry changed; ``document`` gets the new ETag
        and expiry. False when someone else wrote first: ``document`` is then marked lost, never saved again."""
        from azure.core import MatchConditions
        from azure.core.exceptions import ResourceModifiedError, ResourceNotFoundError

        with self._write_lock:
            if document._lease_lost or document.lease is None or document.etag is None:
                return not document._lease_lost
            name = document.document_name
            until = utcnow() + timedelta(seconds=seconds)
            try:
                data = (
                    self._blob(name)
                    .download_blob(etag=document.etag, match_condition=MatchConditions.IfNotModified)
                    .readall()
                )
                stored = type(document).model_validate_json(data)
                stored._etag = document.etag
                stored.lease = Lease(owner=document.lease.owner, until=until)
                self._write(stored)
            except (ConcurrentUpdateError, ResourceModifiedError, ResourceNotFoundError):
                document._lease_lost = True
                return False
            document._etag = stored.etag
            document.lease = Lease(owner=document.lease.owner, until=until)
            return True

    @contextmanager
    def keep_lease(self, document: L, *, seconds: float, every: float) -> Iterator[L]:
        """Renew ``document``'s lease every ``every`` seconds from a heartbeat thread while the body runs.

        A renewal that fails for a transient reason is tried again at the next beat (the ETag still guards
        every write); one that loses the ETag race stops the heartbeat and marks ``document`` lost, so the
        body's next save or side write raises ``ConcurrentUpdateError`` instead of overwriting another
        worker's work. Records of the heartbeat carry the caller's telemetry dimensions."""
        stop = threading.Event()

        def beat() -> None:
            while not stop.wait(every):
                try:
                    if not self.renew(document, seconds=seconds):
                        log.warning("%s: another worker took it over; this worker stops", document.key)
                        return
                except Exception as error:  # noqa: BLE001 - transient: the next beat tries again
                    log.warning("%s: renewing its lease failed (trying again): %s", document.key, error)

        heartbeat = threading.Thread(
            target=contextvars.copy_context().run, args=(beat,), name=f"lease-{document.key}", daemon=True
        )
        previous, self._kept = self._kept, document
        heartbeat.start()
        try:
            yield document
        finally:
            stop.set()
            heartbeat.join()
            self._kept = previous

    def _refuse_if_lease_lost(self, name: str) -> None:
        if self._kept is not None and self._kept._lease_lost:
            raise ConcurrentUpdateError(f"{self._kept.key}: its lease was lost; {name} was not written")

    def release(self, document: L) -> L:
        """Drop the lease (best effort: a conflict means someone else already moved on)."""
        document.lease = None
        try:
            return self._persist(document)
        except ConcurrentUpdateError:
            return document

    def _persist(self, document: L) -> L:
        """Save a run (``save``: its events, its update time) or write any other document."""
        if isinstance(document, Run):
            self.save(document)
            return document
        return self.write(document)

    # --- side blobs -------------------------------------------------------------------------------
    def side_blob_name(self, dataset: str, version: str, name: str) -> str:
        return side_prefix(run_blob(dataset, version)) + name

    def read_side(self, dataset: str, version: str, name: str) -> Any | None:
        return read_json(self._container, self.side_blob_name(dataset, version, name))

    def write_side(self, dataset: str, version: str, name: str, data: Any) -> None:
        self._refuse_if_lease_lost(name)
        self._container.upload_blob(
            self.side_blob_name(dataset, version, name),
            json.dumps(data, separators=(",", ":")).encode(),
            overwrite=True,
        )

    # --- documents (typed: runs, scheduled evaluations, intake receipts; untyped: side data) ---------
    def read(self, name: str, model: type[D]) -> D | None:
        """The document ``name`` parsed as ``model`` with its ETag, or None (``DocumentError`` when malformed)."""
        document = read_model(self._container, name, model)
        if isinstance(document, LeasedDocument):
            if document.document_name != name:  # its lease and saves would go to another blob
                raise DocumentError(f"{name} holds the document of {document.document_name}")
            document.loaded()
        return document

    def write(self, document: D, name: str | None = None) -> D:
        """Write ``document`` If-Match its ETag (If-None-Match * when it was never stored) to ``name``
        (default: its ``document_name``); refused when it is a copy whose lease was lost, or while the
        document ``keep_lease`` renews was lost. Raises ``ConcurrentUpdateError`` when the condition fails."""
        with self._write_lock:
            if isinstance(document, LeasedDocument) and document._lease_lost:
                raise ConcurrentUpdateError(f"{document.key}: its lease was lost to another worker")
            return self._write(document, name)

    def _write(self, document: D, name: str | None = None) -> D:
        if name is None:
            if not isinstance(document, LeasedDocument):
                raise ValueError(f"a {type(document).__name__} needs the name to write it under")
            name = document.document_name
        self._refuse_if_lease_lost(name)
        metadata = document.document_metadata() if isinstance(document, LeasedDocument) else None
        return write_model(self._container, name, document, metadata=metadata)

    def update_document(self, name: str, model: type[D], mutate: Callable[[D | None], D | None]) -> D | None:
        """``stored.update_document`` on the document ``name`` of this container."""
        return update_document(
            lambda: self.read(name, model), mutate, lambda document: self.write(document, name), what=name
        )

    def read_document(self, name: str) -> Any | None:
        """The JSON of any blob in the runs container (side data that has no model), or None."""

        return read_json(self._container, name)

    def write_document(self, name: str, data: Any) -> None:
        """Write side data (JSON, no model) to ``name`` unconditionally; refused while the document
        ``keep_lease`` renews was lost."""
        self._refuse_if_lease_lost(name)
        self._container.upload_blob(name, json.dumps(data, indent=1, default=str).encode(), overwrite=True)

    def list_documents(self, prefix: str) -> builtins.list[str]:
        return sorted(b.name for b in self._container.list_blobs(name_starts_with=prefix))

