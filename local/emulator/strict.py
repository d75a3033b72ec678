"""Holding each data-plane request to the spec of its API version (``specs.py``), and recording it.

``check_data_plane`` is called by the gate in ``app.py`` after authentication. It answers like Azure:

- a path or method the version's spec lacks -> 404;
- a JSON body field no schema of that operation declares, a missing required field, a wrong JSON type
  or enum value, an undeclared or missing multipart field -> 400 naming the field and the version;
- an api-version the emulator holds no spec copy of -> 400 (the emulator cannot answer for it).

Dated inference routes (``/openai/deployments/{id}/chat/completions``) are served unvalidated: no Azure
inference spec copy is held. ARM requests (``check_arm``) are validated on the api-version whose spec is
held (2026-09-01); other ARM versions are served and recorded as not validated. Every request is
recorded (``RequestLog``) with the spec operation that validated it, or none, so a test can assert that
a whole pipeline run sent only declared requests.
"""

from __future__ import annotations

import json
import threading
from dataclasses import asdict, dataclass, field
from typing import Any

from fastapi import Request

from local.emulator.errors import ApiError
from local.emulator.specs import ARM_ASYNC_OPERATION, V1, V1_API_VERSIONS, SpecCatalog

UNVALIDATED_ROUTES = frozenset({"chat_completions"})  # dated inference: no Azure inference spec copy held


@dataclass
class RequestRecord:
    """One request as the emulator saw it: its surface, the spec operation that covers it, its problems."""

    method: str
    path: str
    api_version: str | None
    route: str
    surface: str  # "v1", a dated api-version, or "arm <api-version>"
    operation: str | None = None  # "<spec file> <operationId>", None when no spec covered it
    fields: list[str] = field(default_factory=list)  # top-level body or form field names sent
    problems: list[str] = field(default_factory=list)
    status: int | None = None  # set when the emulator refused it at the gate


class RequestLog:
    """The requests an emulator recorded (when ``EmulatorConfig.record_requests``). Thread-safe."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self._lock = threading.Lock()
        self._records: list[RequestRecord] = []

    def add(self, record: RequestRecord) -> None:
        if self.enabled:
            with self._lock:
                self._records.append(record)

    def snapshot(self) -> list[dict[str, Any]]:
        with self._lock:
            return [asdict(record) for record in self._records]

    def clear(self) -> None:
        with self._lock:
            self._records.clear()


def _not_found(version: str, method: str, path: str) -> ApiError:
    return ApiError(404, "404", f"Resource not found: API version '{version}' has no {method} {path}.")


async def check_data_plane(request: Request, catalog: SpecCatalog | None, log: RequestLog) -> None:
    """Refuse what the spec of the request's API version does not declare; record the request."""
    route = request.scope["route"].name
    method = request.method.upper()
    full_path = request.url.path
    api_version = request.query_params.get("api-version")
    if full_path.startswith("/openai/v1/"):
        version, relative = V1, full_path[len("/openai/v1") :]
    else:
        version, relative = api_version or "", full_path[len("/openai") :]
    record = RequestRecord(method, full_path, api_version, route, version)
    try:
        await _check(request, catalog, record, version, method, relative, route)
    except ApiError as error:
        record.status = error.status
        log.add(record)
        raise
    log.add(record)


async def check_arm(request: Request, catalog: SpecCatalog | None, log: RequestLog) -> None:
    """Hold an ARM request to the held ARM spec of its api-version (2026-09-01): a path or method that
    version lacks -> 404 ``NoRegisteredProviderFound``-style, an undeclared or missing body field -> 400.
    Other api-versions are served and recorded as not validated (no spec copy is held)."""
    route = request.scope["route"].name
    method = request.method.upper()
    path = request.url.path
    version = request.query_params.get("api-version") or ""
    record = RequestRecord(method, path, version, route, f"arm {version}")
    try:
        if route == "arm_operation_status":
            record.operation = ARM_ASYNC_OPERATION
        elif catalog is not None and version in catalog.arm_versions:
            operation = catalog.arm_operation(version, method, path)
            if operation is None:
                raise ApiError(404, "NotFound", f"The api-version '{version}' has no {method} {path}.")
            record.operation = operation.source
            await _check_body(request, operation, record, version)
    except ApiError as error:
        record.status = error.status
        log.add(record)
        raise
    log.add(record)


async def _check_body(request: Request, operation: Any, record: RequestRecord, version: str) -> None:
    if operation.body_schema is None:
        return
    raw = await request.body()  # cached on the request: the route reads it again
    try:
        body = json.loads(raw) if raw else None
    except (json.JSONDecodeError, UnicodeDecodeError):
        return  # the route answers a body that is not JSON
    if body is None:
        return
    if isinstance(body, dict):
        record.fields = sorted(body)
    record.problems = operation.check(body)
    if record.problems:
        first = record.problems[0]
        param = first.split("'")[1] if first.count("'") >= 2 else None
        raise ApiError(
            400,
            "invalidPayload" if not record.surface.startswith("arm") else "InvalidRequestContent",
            f"Invalid request for API version '{version}': {'; '.join(record.problems)} ({operation.source}).",
            param=param,
        )


async def _check(
    request: Request,
    catalog: SpecCatalog | None,
    record: RequestRecord,
    version: str,
    method: str,
    relative: str,
    route: str,
) -> None:
    if version == V1 and record.api_version is not None and record.api_version not in V1_API_VERSIONS:
        raise ApiError(
            400,
            "BadRequest",
            f"API version '{record.api_version}' is not valid on the v1 API; use {' or '.join(V1_API_VERSIONS)} or none.",
        )
    if catalog is None:
        record.problems.append("no spec copies found: not validated")
        return
    operation = catalog.operation(version, method, relative)
    if operation is None:
        if version != V1 and route in UNVALIDATED_ROUTES:
            return  # dated inference: served, recorded as not validated
        if version not in catalog.versions:
            raise ApiError(
                400,
                "BadRequest",
                f"API version '{version}': the emulator holds no spec copy of it, so it cannot answer as Azure "
                f"would; use one of {', '.join(catalog.versions)}.",
            )
        raise _not_found(version, method, relative)
    record.operation = operation.source
    content_type = request.headers.get("content-type", "")
    if operation.form_fields is not None and content_type.startswith("multipart/form-data"):
        form = await request.form()  # starlette keeps it: the route reads the same parsed form
        names = list(form.keys())
        record.fields = sorted(set(names))
        record.problems = operation.check_form(names)
    else:
        await _check_body(request, operation, record, version)
    if record.problems:
        first = record.problems[0]
        param = first.split("'")[1] if first.count("'") >= 2 else None
        raise ApiError(
            400,
            "invalidPayload",
            f"Invalid request for API version '{version}': {'; '.join(record.problems)} ({operation.source}).",
            param=param,
        )


def spec_violations(records: list[dict[str, Any]]) -> list[str]:
    """Every recorded request that its API version's spec did not cover cleanly: refused at the gate, not
    matched to a spec operation, or with problems (ARM requests included)."""
    found = []
    for record in records:
        where = f"{record['method']} {record['path']}" + (
            f"?api-version={record['api_version']}" if record.get("api_version") else ""
        )
        if record.get("status") is not None:
            found.append(
                f"{where}: refused with HTTP {record['status']}: {'; '.join(record.get('problems') or [])}"
            )
        elif record.get("operation") is None:
            found.append(f"{where}: no spec of API version '{record['surface']}' covers it")
        elif record.get("problems"):
            found.append(f"{where}: {'; '.join(record['problems'])}")
    return found
