"""Fault injection, set at run time through ``POST /_emulator/faults`` (or ``EmulatorConfig.faults``).

Route faults answer the next ``count`` requests to a route (or ``"*"``) with an error status (429 with
``Retry-After``, 500, 503, ...) and/or delay them. Kind faults change the next job, batch or deployment.
"""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass
from typing import Any

ROUTE_STATUSES = (400, 408, 429, 500, 502, 503, 504)
KINDS = ("fail_next_job", "expire_next_batch", "deployment_transient_failures")


@dataclass
class RouteFault:
    route: str
    status: int | None
    retry_after: float | None
    delay_seconds: float
    remaining: int  # -1: until reset
    message: str | None = None


class Faults:
    """The active faults; every ``take_*`` consumes one use. Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with getattr(self, "_lock", threading.Lock()):
            self._routes: list[RouteFault] = []
            self._job_failures: list[dict[str, str]] = []
            self._batch_expiries = 0
            self._deployment_failures: list[str] = []

    def add(self, spec: dict[str, Any], known_routes: frozenset[str] | None = None) -> dict[str, Any]:
        """Validate and add one fault; raises ``ValueError`` saying what is wrong."""
        if not isinstance(spec, dict):
            raise ValueError("a fault is a JSON object")
        count = spec.get("count", 1)
        if not isinstance(count, int) or isinstance(count, bool) or count == 0 or count < -1:
            raise ValueError("'count' must be a positive integer, or -1 for 'until reset'")
        kind = spec.get("kind")
        with self._lock:
            if kind is None:
                return self._add_route_fault(spec, count, known_routes)
            if kind == "fail_next_job":
                message = spec.get("message") or "The job failed due to an internal error."
                code = spec.get("code") or "internal_error"
                self._job_failures.extend({"message": str(message), "code": str(code)} for _ in range(max(count, 1)))
            elif kind == "expire_next_batch":
                self._batch_expiries += max(count, 1)
            elif kind == "deployment_transient_failures":
                phase = spec.get("phase", "initial")
                if phase not in ("initial", "provisioning"):
                    raise ValueError("'phase' must be 'initial' (the PUT fails) or 'provisioning' (it ends Failed)")
                self._deployment_failures.extend(phase for _ in range(max(count, 1)))
            else:
                raise ValueError(f"unknown fault kind {kind!r}; use one of {', '.join(KINDS)} or give a 'route'")
            return {"kind": kind, "count": count}

    def _add_route_fault(self, spec: dict[str, Any], count: int, known_routes: frozenset[str] | None) -> dict[str, Any]:
        route = spec.get("route")
        if not isinstance(route, str) or not route:
            raise ValueError("a route fault needs 'route' (a route name, or '*' for every route)")
        if known_routes is not None and route != "*" and route not in known_routes:
            raise ValueError(f"unknown route {route!r}; known routes: {', '.join(sorted(known_routes))}")
        status = spec.get("status")
        if status is not None and status not in ROUTE_STATUSES:
            raise ValueError(f"'status' must be one of {ROUTE_STATUSES}")
        delay = float(spec.get("delay_seconds") or 0)
        if delay < 0 or delay > 120:
            raise ValueError("'delay_seconds' must be between 0 and 120")
        if status is None and delay == 0:
            raise ValueError("a route fault needs a 'status', a 'delay_seconds', or both")
        retry_after = spec.get("retry_after")
        if retry_after is not None and (not isinstance(retry_after, (int, float)) or retry_after < 0):
            raise ValueError("'retry_after' must be a non-negative number of seconds")
        fault = RouteFault(route, status, retry_after, delay, count, spec.get("message"))
        self._routes.append(fault)
        return asdict(fault)

    def take_route_fault(self, route: str) -> RouteFault | None:
        with self._lock:
            for fault in self._routes:
                if fault.route in (route, "*"):
                    if fault.remaining > 0:
                        fault.remaining -= 1
                        if fault.remaining == 0:
                            self._routes.remove(fault)
                    return fault
        return None

    def take_job_failure(self) -> dict[str, str] | None:
        with self._lock:
            return self._job_failures.pop(0) if self._job_failures else None

    def take_batch_expiry(self) -> bool:
        with self._lock:
            if self._batch_expiries:
                self._batch_expiries -= 1
                return True
            return False

    def take_deployment_failure(self) -> str | None:
        with self._lock:
            return self._deployment_failures.pop(0) if self._deployment_failures else None

    def describe(self) -> dict[str, Any]:
        with self._lock:
            return {
                "routes": [asdict(fault) for fault in self._routes],
                "fail_next_job": list(self._job_failures),
                "expire_next_batch": self._batch_expiries,
                "deployment_transient_failures": list(self._deployment_failures),
            }
