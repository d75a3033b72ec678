"""A typed client for the emulator-only admin API (faults, request counts, clock).

    admin = EmulatorAdmin(server.url)
    admin.inject(route="chat_completions", status=429, retry_after=1, count=2)
    admin.fail_next_job("The training data was rejected.")
    admin.stats().requests["chat_completions"]
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx

# Route names that faults and request counts use.
ROUTE_NAMES = (
    "files_create",
    "files_list",
    "files_retrieve",
    "files_delete",
    "files_content",
    "uploads_create",
    "uploads_parts_create",
    "uploads_complete",
    "uploads_cancel",
    "fine_tuning_jobs_create",
    "fine_tuning_jobs_list",
    "fine_tuning_jobs_retrieve",
    "fine_tuning_jobs_delete",
    "fine_tuning_jobs_events",
    "fine_tuning_jobs_checkpoints",
    "fine_tuning_jobs_cancel",
    "batches_create",
    "batches_list",
    "batches_retrieve",
    "batches_cancel",
    "models_list",
    "models_retrieve",
    "chat_completions",
    "deployments_list",
    "deployments_get",
    "deployments_create_or_update",
    "deployments_delete",
    "arm_operation_status",
)


class EmulatorAdminError(RuntimeError):
    """The admin API refused a request (e.g. an invalid fault)."""


@dataclass
class EmulatorStats:
    requests: dict[str, int]  # requests per route name, including those answered with a fault
    faults: dict[str, int]  # injected faults (errors or delays) per route name

    def count(self, route: str) -> int:
        return self.requests.get(route, 0)


class EmulatorAdmin:
    """Talks to ``/_emulator/...`` on an emulator at ``url``."""

    def __init__(self, url: str, *, timeout: float = 30.0) -> None:
        self._client = httpx.Client(base_url=url.rstrip("/"), timeout=timeout)

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        response = self._client.request(method, path, json=body)
        if response.status_code >= 400:
            raise EmulatorAdminError(f"{method} {path}: HTTP {response.status_code}: {response.text}")
        return response.json()

    def inject(
        self,
        route: str | None = None,
        *,
        status: int | None = None,
        retry_after: float | None = None,
        count: int = 1,
        delay_seconds: float = 0.0,
        message: str | None = None,
        kind: str | None = None,
        **extra: Any,
    ) -> dict[str, Any]:
        """Add one fault: a route fault (``route`` + ``status`` and/or ``delay_seconds``) for the next ``count``
        requests (-1: until reset), or a ``kind`` fault (``fail_next_job``, ``expire_next_batch``,
        ``deployment_transient_failures``)."""
        spec: dict[str, Any] = {"count": count, **extra}
        if kind is not None:
            spec["kind"] = kind
        if route is not None:
            spec["route"] = route
        if status is not None:
            spec["status"] = status
        if retry_after is not None:
            spec["retry_after"] = retry_after
        if delay_seconds:
            spec["delay_seconds"] = delay_seconds
        if message is not None:
            spec["message"] = message
        added: dict[str, Any] = self._call("POST", "/_emulator/faults", spec)["added"][0]
        return added

    def fail_next_job(self, message: str, *, code: str = "internal_error") -> dict[str, Any]:
        """The next fine-tuning job created fails (after it starts running) with this message."""
        return self.inject(kind="fail_next_job", message=message, code=code)

    def expire_next_batch(self) -> dict[str, Any]:
        """The next batch created expires instead of completing."""
        return self.inject(kind="expire_next_batch")

    def fail_next_deployments(self, count: int = 1, *, phase: str = "initial") -> dict[str, Any]:
        """The next ``count`` deployment PUTs fail with BadRequestForDependentService: at once (``initial``,
        HTTP 400) or as a provisioning that ends ``Failed`` (``provisioning``)."""
        return self.inject(kind="deployment_transient_failures", count=count, phase=phase)

    def faults(self) -> dict[str, Any]:
        faults: dict[str, Any] = self._call("GET", "/_emulator/faults")
        return faults

    def reset_faults(self) -> None:
        self._call("DELETE", "/_emulator/faults")

    def stats(self) -> EmulatorStats:
        body = self._call("GET", "/_emulator/stats")
        return EmulatorStats(requests=body["requests"], faults=body["faults"])

    def reset_stats(self) -> None:
        self._call("DELETE", "/_emulator/stats")

    def requests(self) -> list[dict[str, Any]]:
        """The requests recorded so far (the emulator must run with ``record_requests=True``): method,
        path, api_version, route, surface, operation (the spec operation that validated it, or None),
        fields, problems, status (set when refused at the gate)."""
        body = self._call("GET", "/_emulator/requests")
        if not body["recording"]:
            raise EmulatorAdminError("the emulator is not recording requests (EmulatorConfig.record_requests)")
        return list(body["requests"])

    def clear_requests(self) -> None:
        self._call("DELETE", "/_emulator/requests")

    def advance_clock(self, seconds: float) -> float:
        """Move the emulator's clock forward (jobs, batches, deployments advance); returns the offset."""
        return float(self._call("POST", "/_emulator/clock", {"advance_seconds": seconds})["offset"])

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> EmulatorAdmin:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
