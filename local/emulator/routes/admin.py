"""Routes of the emulator-only admin API (not part of Azure; loopback only, no auth): health, request
counts, recorded requests, faults, clock. ``RequestStats`` holds the counts the gate in ``app.py`` keeps."""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

from local.emulator.errors import bad_request
from local.emulator.routes.common import json_body
from local.emulator.service import Emulator
from local.emulator.strict import RequestLog


class RequestStats:
    """Requests and injected faults per route name. Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests: Counter[str] = Counter()
        self.faults: Counter[str] = Counter()

    def count(self, route: str, *, fault: bool = False) -> None:
        with self._lock:
            self.requests[route] += 1
            if fault:
                self.faults[route] += 1

    def snapshot(self) -> dict[str, dict[str, int]]:
        with self._lock:
            return {"requests": dict(self.requests), "faults": dict(self.faults)}

    def reset(self) -> None:
        with self._lock:
            self.requests.clear()
            self.faults.clear()


def router(emulator: Emulator, stats: RequestStats, known_routes: frozenset[str], requests: RequestLog) -> APIRouter:
    """``/_emulator/...`` routes; faults may name any of ``known_routes``."""
    routes = APIRouter()

    @routes.get("/_emulator/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "now": emulator.now()}

    @routes.get("/_emulator/stats")
    async def get_stats() -> dict[str, Any]:
        return stats.snapshot()

    @routes.delete("/_emulator/stats")
    async def reset_stats() -> dict[str, Any]:
        stats.reset()
        return stats.snapshot()

    @routes.get("/_emulator/requests")
    async def get_requests() -> dict[str, Any]:
        return {"recording": requests.enabled, "requests": requests.snapshot()}

    @routes.delete("/_emulator/requests")
    async def clear_requests() -> dict[str, Any]:
        requests.clear()
        return {"recording": requests.enabled, "requests": []}

    @routes.get("/_emulator/faults")
    async def get_faults() -> dict[str, Any]:
        return emulator.faults.describe()

    @routes.post("/_emulator/faults")
    async def add_faults(request: Request) -> dict[str, Any]:
        body = await json_body(request)
        specs = body if isinstance(body, list) else [body]
        added = []
        for spec in specs:
            try:
                added.append(emulator.faults.add(spec, known_routes))
            except ValueError as exc:
                raise bad_request(str(exc)) from None
        return {"added": added, "faults": emulator.faults.describe()}

    @routes.delete("/_emulator/faults")
    async def reset_faults() -> dict[str, Any]:
        emulator.faults.reset()
        return emulator.faults.describe()

    @routes.post("/_emulator/clock")
    async def clock(request: Request) -> dict[str, Any]:
        body = await json_body(request) or {}
        seconds = body.get("advance_seconds") if isinstance(body, dict) else None
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or seconds < 0:
            raise bad_request("'advance_seconds' must be a non-negative number.")
        offset = await run_in_threadpool(emulator.advance_clock, float(seconds))
        return {"offset": offset, "now": emulator.now()}

    return routes
