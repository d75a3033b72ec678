"""The changes people want to hear about, as CloudEvents 1.0: a journal in storage, and Event Grid.

Events: ``visiontune.run.converted``, ``.training_started``, ``.promoted``, ``.rejected``, ``.failed``,
``.over_budget``, ``.awaiting_approval`` (run state transitions, published by ``RunStore`` after the run
blob was saved, so a replayed or conflicting write never announces anything) and
``visiontune.production.regression`` (the scheduled evaluation).

Where they go:

- **The journal** (always): one append blob per UTC day, ``reports/_events/<YYYY-MM-DD>.jsonl``, one
  CloudEvent (JSON format) per line. Locally this is the only sink (Azurite); ``visiontune events
  [--follow]`` reads it. An append blob rather than a queue: every reader sees every event, in order, as
  often as it likes (a queue hands each message to one consumer and peeks at most 32), and a day's file
  is one download. ``_events`` cannot clash with a dataset (names start with a letter or digit).
- **Event Grid** (when ``VISIONTUNE_EVENTS_TOPIC_ENDPOINT`` is set): the custom topic Pulumi creates,
  with the app's managed identity (role "EventGrid Data Sender" on the topic), through
  ``azure.eventgrid.EventGridPublisherClient``. A send that fails after the SDK's retries leaves the event
  in ``reports/_events/pending/``; the next successful send also sends what is pending.

Nothing here raises into the caller: a failed publish is logged and retried later; it never blocks or
fails a run.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from shared.aoai.clients import _credential
from shared.layout import REPORTS_CONTAINER
from shared.settings import Settings
from shared.storage.clients import container_client
from shared.telemetry import run_scope

if TYPE_CHECKING:  # pragma: no cover
    from shared.pipeline.models import Run

log = logging.getLogger(__name__)

EVENT_TYPE_PREFIX = "visiontune."
# Every published event is also logged as "<prefix><type> <subject>: <detail>" (Application Insights
# traces): the Azure Monitor alert rules for a failed run and a regression match these lines.
EVENT_LOG_PREFIX = "visiontune event "
_WARNING_TYPES = frozenset({"run.failed", "run.over_budget", "production.regression"})
EVENTS_PREFIX = "_events/"
PENDING_PREFIX = EVENTS_PREFIX + "pending/"
EVENT_GRID_SCOPE = "https://eventgrid.azure.net/.default"
# Run states that are worth an event, and the event type each one publishes.
STATE_EVENTS = {
    "converted": "run.converted",
    "training": "run.training_started",
    "promoted": "run.promoted",
    "rejected": "run.rejected",
    "failed": "run.failed",
    "over_budget": "run.over_budget",
    "awaiting_approval": "run.awaiting_approval",
}
REGRESSION_EVENT = "production.regression"
# Keep a publish short: the run's own work is what the timer is for (azure-core retries with backoff).
SEND_RETRY_TOTAL = 2
SEND_TIMEOUT_SECONDS = 10
MAX_PENDING_PER_FLUSH = 50


def journal_blob(day: datetime) -> str:
    """The journal blob (in the reports container) of one UTC day."""
    return f"{EVENTS_PREFIX}{day.astimezone(UTC):%Y-%m-%d}.jsonl"


def cloud_event(event_type: str, subject: str, data: dict[str, Any], *, at: datetime, key: str) -> dict[str, Any]:
    """A CloudEvents 1.0 event in the JSON format. ``id`` is derived from ``key`` so the same change
    always has the same id (consumers can de-duplicate)."""
    return {
        "specversion": "1.0",
        "id": hashlib.sha256(key.encode("utf-8")).hexdigest()[:32],
        "source": "/visiontune",
        "type": EVENT_TYPE_PREFIX + event_type,
        "subject": subject,
        "time": at.astimezone(UTC).isoformat(),
        "datacontenttype": "application/json",
        "data": data,
    }


def run_event(run: Run, state: str, at: datetime, detail: str, hourly_cost: float | None = None) -> dict[str, Any] | None:
    """The event for ``run`` entering ``state`` (None when that state is not announced)."""
    event_type = STATE_EVENTS.get(state)
    if event_type is None:
        return None
    data: dict[str, Any] = {
        "dataset": run.dataset,
        "version": run.version,
        "state": state,
        "detail": detail,
        "scores": dict(run.scores),
        "report": f"{REPORTS_CONTAINER}/{run.dataset}/{run.version}/report.html",
    }
    if run.decision is not None:
        data["decision"] = run.decision.model_dump(mode="json")
    if run.failure is not None:
        data["failure"] = run.failure.model_dump(mode="json")
    if run.candidate is not None:
        data["deployment"] = run.candidate.name
    if hourly_cost is not None:
        data["hourly_cost_usd"] = hourly_cost
    return cloud_event(
        event_type, f"{run.dataset}/{run.version}", data, at=at, key=f"{run.dataset}/{run.version}/{state}/{at.isoformat()}"
    )


class EventPublisher:
    """Writes events to the journal and (when configured) sends them to the Event Grid topic."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._client: Any = None
        self._lock = threading.Lock()

    # --- storage ----------------------------------------------------------------------------------
    def _reports(self) -> Any:
        return container_client(self.settings, REPORTS_CONTAINER)

    def _append(self, event: dict[str, Any]) -> None:
        from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError

        at = datetime.fromisoformat(event["time"])
        blob = self._reports().get_blob_client(journal_blob(at))
        line = (json.dumps(event, separators=(",", ":")) + "\n").encode("utf-8")
        try:
            blob.append_block(line)
        except ResourceNotFoundError:
            try:
                blob.create_append_blob(if_none_match="*")
            except ResourceExistsError:
                pass  # another writer created it first
            blob.append_block(line)

    # --- Event Grid -------------------------------------------------------------------------------
    def _event_grid(self) -> Any:
        with self._lock:
            if self._client is None:
                from azure.eventgrid import EventGridPublisherClient

                self._client = EventGridPublisherClient(
                    self.settings.events_topic_endpoint,  # type: ignore[arg-type]
                    _credential(self.settings),
                    retry_total=SEND_RETRY_TOTAL,
                    connection_timeout=SEND_TIMEOUT_SECONDS,
                    read_timeout=SEND_TIMEOUT_SECONDS,
                )
            return self._client

    def _send(self, events: list[dict[str, Any]]) -> None:
        from azure.core.messaging import CloudEvent

        self._event_grid().send([CloudEvent.from_dict(dict(e)) for e in events])

    def _park(self, event: dict[str, Any]) -> None:
        self._reports().upload_blob(
            f"{PENDING_PREFIX}{event['id']}.json", json.dumps(event).encode("utf-8"), overwrite=True
        )

    def flush_pending(self) -> int:
        """Send events left pending by failed sends; returns how many went out. Never raises."""
        if not self.settings.events_topic_endpoint:
            return 0
        sent = 0
        try:
            reports = self._reports()
            names = [b.name for b in reports.list_blobs(name_starts_with=PENDING_PREFIX)][:MAX_PENDING_PER_FLUSH]
            for name in names:
                blob = reports.get_blob_client(name)
                event = json.loads(blob.download_blob().readall())
                self._send([event])
                blob.delete_blob()
                sent += 1
        except Exception as exc:  # noqa: BLE001 - retried on the next publish or tick
            log.warning("sending pending events failed (kept for the next try): %s", exc)
        return sent

    # --- the one entry point ----------------------------------------------------------------------
    def publish(self, event: dict[str, Any]) -> None:
        """Journal ``event`` and send it to Event Grid when configured. Never raises: a failure is logged
        and the event kept for a later send."""
        kind = str(event.get("type", "")).removeprefix(EVENT_TYPE_PREFIX)
        log.log(
            logging.WARNING if kind in _WARNING_TYPES else logging.INFO,
            "%s%s %s: %s",
            EVENT_LOG_PREFIX,
            event.get("type"),
            event.get("subject"),
            (event.get("data") or {}).get("detail", ""),
        )
        try:
            self._append(event)
        except Exception as exc:  # noqa: BLE001 - an event must never fail a run
            log.warning("could not write event %s to the journal: %s", event.get("type"), exc)
        if not self.settings.events_topic_endpoint:
            return
        try:
            self._send([event])
        except Exception as exc:  # noqa: BLE001
            log.warning("could not send event %s to Event Grid (kept pending): %s", event.get("type"), exc)
            try:
                self._park(event)
            except Exception as park_exc:  # noqa: BLE001
                log.warning("could not keep event %s pending: %s", event.get("id"), park_exc)
            return
        self.flush_pending()


def hosting_cost_per_hour(run: Run, settings: Settings) -> float:
    """What ``run``'s candidate deployment costs per hour while it is kept (DeveloperTier: nothing)."""
    if run.candidate is None or run.candidate.deleted_at is not None or run.candidate.sku == "DeveloperTier":
        return 0.0
    return settings.price_hosting_per_hour


def publish_run_transitions(publisher: EventPublisher | None, run: Run, since: int) -> None:
    """Publish the events of ``run.transitions[since:]`` that changed the state. Never raises."""
    if publisher is None:
        return

    try:
        hourly_cost = hosting_cost_per_hour(run, publisher.settings)
        previous = run.transitions[since - 1].state if since > 0 else None
        for transition in run.transitions[since:]:
            if transition.state != previous:
                event = run_event(
                    run, transition.state, transition.at, transition.detail,
                    hourly_cost if transition.state == "awaiting_approval" else None,
                )
                if event is not None:
                    with run_scope(run.dataset, run.version, transition.state):  # its log record's dimensions
                        publisher.publish(event)
            previous = transition.state
    except Exception as exc:  # noqa: BLE001 - never fail the save that succeeded
        log.warning("could not publish the events of %s: %s", run.key, exc)


def read_events(
    settings: Settings, *, dataset: str | None = None, days: int = 7, since: datetime | None = None
) -> Iterator[dict[str, Any]]:
    """Journal events of the last ``days`` UTC days (or from ``since``), oldest first; only ``dataset``'s
    when given."""
    from azure.core.exceptions import ResourceNotFoundError

    reports = container_client(settings, REPORTS_CONTAINER)
    now = datetime.now(UTC)
    start = since or now - timedelta(days=days - 1)
    day = start.replace(hour=0, minute=0, second=0, microsecond=0)
    while day <= now:
        try:
            data = reports.get_blob_client(journal_blob(day)).download_blob().readall()
        except ResourceNotFoundError:
            data = b""
        for line in data.splitlines():
            if not line.strip():
                continue
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if dataset and (event.get("data") or {}).get("dataset") != dataset:
                continue
            if since and datetime.fromisoformat(event["time"]) < since:
                continue
            yield event
        day += timedelta(days=1)
