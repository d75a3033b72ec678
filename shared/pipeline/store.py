"""``RunStore``: one blob per run (``runs/<dataset>/<version>.json``) with optimistic concurrency.

- ``create`` uses If-None-Match: * (the first writer wins; everyone else gets the stored run).
- ``save`` uses If-Match: <etag> and raises ``ConcurrentUpdateError`` when someone else wrote first.
- ``update`` re-reads and re-applies a mutation on conflict (bounded attempts).
- ``claim`` takes a short lease on a run so overlapping timer ticks / triggers never advance it twice;
  a lease whose holder died simply expires. ``keep_lease`` renews it from a heartbeat thread while a
  long step runs (If-Match); a renewal that finds another writer marks the copy lost, and every later
  save of it (and side write of the store) raises ``ConcurrentUpdateError``.
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
from typing import TYPE_CHECKING, Any

from shared.errors import VisiontuneError
from shared.events import EventPublisher, publish_run_transitions
from shared.layout import RUNS_CONTAINER, dataset_prefix, run_blob, side_prefix
from shared.pipeline.models import Lease, Run, utcnow
from shared.settings import Settings
from shared.storage.clients import container_client
from shared.storage.readers import read_json
from shared.telemetry import note

if TYPE_CHECKING:  # pragma: no cover
    from azure.storage.blob import BlobClient, ContainerClient


log = logging.getLogger(__name__)

_RUN_BLOB_RE = re.compile(r"^(?P<dataset>[^/]+)/(?P<version>[^/]+)\.json$")

# Identifies this process as a lease holder (host + pid + random: two workers never share it).
INSTANCE_ID = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


class ConcurrentUpdateError(VisiontuneError, RuntimeError):
    """The run changed since it was read (ETag mismatch): re-read before writing again."""


class RunStore:
    """Runs and their side blobs in the ``runs`` container."""

    def __init__(self, container: ContainerClient, events: EventPublisher | None = None) -> None:
        self._container = container
        self._events = events  # publishes the state changes a successful write stored (shared.events)
        # Saves and lease renewals of one store take turns, so a renewal never interleaves with a save.
        self._write_lock = threading.RLock()
        self._kept: Run | None = None  # the run whose lease ``keep_lease`` renews right now

    @classmethod
    def from_settings(cls, settings: Settings) -> RunStore:
        return cls(container_client(settings, RUNS_CONTAINER), EventPublisher(settings))

    def _blob(self, name: str) -> BlobClient:
        return self._container.get_blob_client(name)

    # --- runs -------------------------------------------------------------------------------------
    def get(self, dataset: str, version: str) -> Run | None:
        """The stored run, or None."""
        from azure.core.exceptions import ResourceNotFoundError

        try:
            downloader = self._container.get_blob_client(run_blob(dataset, version)).download_blob()
            data = downloader.readall()
        except ResourceNotFoundError:
            return None
        run = Run.model_validate_json(data)
        run._etag = downloader.properties.etag
        run._stored_transitions = len(run.transitions)
        return run

    def create(self, run: Run) -> tuple[Run, bool]:
        """Store ``run`` unless one exists for its dataset version. Returns (stored run, created)."""
        from azure.core.exceptions import ResourceExistsError

        try:
            result = self._blob(run_blob(run.dataset, run.version)).upload_blob(
                _dump(run), overwrite=False, metadata=_metadata(run)
            )
        except ResourceExistsError:
            existing = self.get(run.dataset, run.version)
            if existing is None:  # deleted in between: try once more
                return self.create(run)
            return existing, False
        run._etag = result["etag"]
        self._announce(run)
        return run, True

    def save(self, run: Run) -> Run:
        """Write ``run`` if nobody else has since it was read; updates ``run.etag``."""
        from azure.core import MatchConditions
        from azure.core.exceptions import ResourceExistsError, ResourceModifiedError, ResourceNotFoundError

        if run.etag is None:
            raise ValueError(f"{run.key}: save() needs a run that was read or created (no ETag)")
        with self._write_lock:
            if run._lease_lost:
                raise ConcurrentUpdateError(f"{run.key}: its lease was lost to another worker")
            run.updated_at = utcnow()
            try:
                result = self._blob(run_blob(run.dataset, run.version)).upload_blob(
                    _dump(run),
                    overwrite=True,
                    metadata=_metadata(run),
                    etag=run.etag,
                    match_condition=MatchConditions.IfNotModified,
                )
            except (ResourceModifiedError, ResourceExistsError, ResourceNotFoundError) as error:
                raise ConcurrentUpdateError(f"{run.key} changed since it was read") from error
            run._etag = result["etag"]
        self._announce(run)
        return run

    def _announce(self, run: Run) -> None:
        """Publish the state changes that this write stored (after it succeeded; never raises)."""
        since, run._stored_transitions = run._stored_transitions, len(run.transitions)
        if since < len(run.transitions):
            publish_run_transitions(self._events, run, since)

    def update(self, dataset: str, version: str, mutate: Callable[[Run], Any], *, attempts: int = 10) -> Run:
        """Read, apply ``mutate(run)`` and save, re-reading and re-applying on conflict."""
        for _ in range(attempts):
            run = self.get(dataset, version)
            if run is None:
                raise KeyError(f"no run {dataset}/{version}")
            mutate(run)
            try:
                return self.save(run)
            except ConcurrentUpdateError:
                continue
        raise ConcurrentUpdateError(f"{dataset}/{version}: still conflicting after {attempts} attempts")

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

    # --- leases -----------------------------------------------------------------------------------
    def claim(self, dataset: str, version: str, *, seconds: float, owner: str = INSTANCE_ID) -> Run | None:
        """Take the run's lease for ``seconds`` (If-Match). None when another live holder has it or
        someone else wrote first. The returned run carries the new ETag: save it to keep the claim."""
        run = self.get(dataset, version)
        if run is None:
            return None
        now = utcnow()
        if run.lease is not None and run.lease.owner != owner and run.lease.until > now:
            # Per run and tick: a count on the invocation's summary, the detail only at DEBUG.
            log.debug("%s is leased by %s until %s; skipping", run.key, run.lease.owner, run.lease.until)
            note(runs_leased_elsewhere=1)
            return None
        run.lease = Lease(owner=owner, until=now + timedelta(seconds=seconds))
        try:
            return self.save(run)
        except ConcurrentUpdateError:
            return None

    def renew(self, run: Run, *, seconds: float) -> bool:
        """Extend the lease ``run`` holds to now + ``seconds``: the stored document as ``run`` last saved it
        (If-Match its ETag), with only the lease's expiry changed; ``run`` gets the new ETag and expiry.
        False when someone else wrote first: ``run`` is then marked lost and never saved again."""
        from azure.core import MatchConditions
        from azure.core.exceptions import ResourceExistsError, ResourceModifiedError, ResourceNotFoundError

        with self._write_lock:
            if run._lease_lost or run.lease is None or run.etag is None:
                return not run._lease_lost
            blob = self._blob(run_blob(run.dataset, run.version))
            until = utcnow() + timedelta(seconds=seconds)
            try:
                stored = Run.model_validate_json(
                    blob.download_blob(etag=run.etag, match_condition=MatchConditions.IfNotModified).readall()
                )
                stored.lease = Lease(owner=run.lease.owner, until=until)
                result = blob.upload_blob(
                    _dump(stored),
                    overwrite=True,
                    metadata=_metadata(stored),
                    etag=run.etag,
                    match_condition=MatchConditions.IfNotModified,
                )
            except (ResourceModifiedError, ResourceExistsError, ResourceNotFoundError):
                run._lease_lost = True
                return False
            run._etag = result["etag"]
            run.lease = Lease(owner=run.lease.owner, until=until)
            return True

    @contextmanager
    def keep_lease(self, run: Run, *, seconds: float, every: float) -> Iterator[Run]:
        """Renew ``run``'s lease every ``every`` seconds from a heartbeat thread while the body runs.

        A renewal that fails for a transient reason is tried again at the next beat (the ETag still guards
        every write); one that loses the ETag race stops the heartbeat and marks ``run`` lost, so the
        body's next save or side write raises ``ConcurrentUpdateError`` instead of overwriting another
        worker's work. Records of the heartbeat carry the caller's telemetry dimensions."""
        stop = threading.Event()

        def beat() -> None:
            while not stop.wait(every):
                try:
                    if not self.renew(run, seconds=seconds):
                        log.warning("%s: another worker took the run over; this worker stops", run.key)
                        return
                except Exception as error:  # noqa: BLE001 - transient: the next beat tries again
                    log.warning("%s: renewing its lease failed (trying again): %s", run.key, error)

        heartbeat = threading.Thread(
            target=contextvars.copy_context().run, args=(beat,), name=f"lease-{run.key}", daemon=True
        )
        previous, self._kept = self._kept, run
        heartbeat.start()
        try:
            yield run
        finally:
            stop.set()
            heartbeat.join()
            self._kept = previous

    def _refuse_if_lease_lost(self, name: str) -> None:
        if self._kept is not None and self._kept._lease_lost:
            raise ConcurrentUpdateError(f"{self._kept.key}: its lease was lost; {name} was not written")

    def release(self, run: Run) -> Run:
        """Drop the lease (best effort: a conflict means someone else already moved on)."""
        run.lease = None
        try:
            return self.save(run)
        except ConcurrentUpdateError:
            return run

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

    # --- arbitrary documents (scheduled evaluations) ----------------------------------------------
    def read_document(self, name: str) -> tuple[Any | None, str | None]:
        """(JSON, etag) of any blob in the runs container, or (None, None)."""
        from azure.core.exceptions import ResourceNotFoundError

        try:
            downloader = self._container.get_blob_client(name).download_blob()
            return json.loads(downloader.readall()), downloader.properties.etag
        except ResourceNotFoundError:
            return None, None

    def write_document(
        self, name: str, data: Any, *, etag: str | None = None, create_only: bool = False
    ) -> str:
        """Write a JSON blob with If-Match ``etag`` (or If-None-Match * when ``create_only``); returns the new
        ETag. Raises ``ConcurrentUpdateError`` when the condition fails."""
        from azure.core import MatchConditions
        from azure.core.exceptions import ResourceExistsError, ResourceModifiedError

        self._refuse_if_lease_lost(name)
        kwargs: dict[str, Any] = {"overwrite": not create_only}
        if etag is not None:
            kwargs.update(etag=etag, match_condition=MatchConditions.IfNotModified)
        try:
            result = self._blob(name).upload_blob(json.dumps(data, indent=1, default=str).encode(), **kwargs)
        except (ResourceExistsError, ResourceModifiedError) as error:
            raise ConcurrentUpdateError(f"{name} changed since it was read") from error
        return str(result["etag"])

    def list_documents(self, prefix: str) -> builtins.list[str]:
        return sorted(b.name for b in self._container.list_blobs(name_starts_with=prefix))


def _metadata(run: Run) -> dict[str, str]:
    """Blob metadata that lets a listing skip settled runs (ended, cleaned up, report written)."""
    settled = run.terminal and run.report_written_for == run.state.value
    return {"state": run.state.value, "settled": "1" if settled else "0"}


def _dump(run: Run) -> bytes:
    return run.model_dump_json().encode()
