"""The emulator's HTTP surface (FastAPI): Azure OpenAI data plane, ARM deployments, emulator admin.

This module assembles the app: authentication, api-version checks, fault injection and request counts
(one gate on every Azure route), Azure-shaped errors, and the routers of ``routes/`` (one per resource).
Every data-plane and ARM route has a stable ``name`` (``files_create``, ``chat_completions``, ...): the
admin API injects faults and counts requests by these names (``ROUTE_NAMES``).
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import re
import threading
import uuid
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from local.emulator.constants import API_KEY, DATA_PLANE_API_VERSION
from local.emulator.errors import ACCESS_DENIED_MESSAGE, ApiError
from local.emulator.routes import admin, batches, chat, deployments, files, fine_tuning, models
from local.emulator.routes.admin import RequestStats
from local.emulator.service import Emulator
from local.emulator.specs import SpecCatalog, load_catalog
from local.emulator.strict import RequestLog, check_arm, check_data_plane
from local.emulator.tokens import token_problem

log = logging.getLogger("visiontune.emulator")

_API_VERSION_RE = re.compile(r"^(\d{4}-\d{2}-\d{2})(-preview)?$")


def _bearer(request: Request) -> str | None:
    authorization = request.headers.get("authorization", "")
    if authorization.lower().startswith("bearer ") and authorization[7:].strip():
        return authorization[7:].strip()
    return None


def _data_plane_auth(request: Request) -> None:
    """The resource's key (``api-key``) or a bearer token the emulator issued (see ``tokens``)."""
    key = request.headers.get("api-key")
    if key is not None:
        if hmac.compare_digest(key.encode(), API_KEY.encode()):
            return
        raise ApiError(401, "401", ACCESS_DENIED_MESSAGE)
    token = _bearer(request)
    if token is not None and token_problem(token, API_KEY) is None:
        return
    raise ApiError(401, "401", ACCESS_DENIED_MESSAGE)


def _arm_auth(request: Request) -> None:
    """ARM: a bearer token the emulator issued (or its key); Azure's error codes for missing/invalid."""
    token = _bearer(request)
    if token is not None:
        problem = token_problem(token, API_KEY)
        if problem is None:
            return
        raise ApiError(401, "InvalidAuthenticationToken", f"The access token is invalid: {problem}.")
    key = request.headers.get("api-key")
    if key is not None and hmac.compare_digest(key.encode(), API_KEY.encode()):
        return
    if key is None and not request.headers.get("authorization"):
        raise ApiError(401, "AuthenticationFailed", "Authentication failed. The 'Authorization' header is missing.")
    raise ApiError(401, "InvalidAuthenticationToken", "The access token is invalid.")


def _check_api_version(request: Request) -> None:
    version = request.query_params.get("api-version")
    if version is None:
        raise ApiError(404, "404", "Resource not found")
    match = _API_VERSION_RE.match(version)
    if not match or match.group(1) < DATA_PLANE_API_VERSION:
        raise ApiError(400, "BadRequest", f"API version '{version}' is not supported; use {DATA_PLANE_API_VERSION} or newer.")


class _AzureHeadersMiddleware:
    """Adds the request-id headers Azure sends (pure ASGI: no per-request task overhead)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Any) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers += [(b"apim-request-id", str(uuid.uuid4()).encode()), (b"x-ms-region", b"Local Emulator")]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


def create_app(emulator: Emulator) -> FastAPI:
    """The ASGI app serving one emulated resource."""
    stats = RequestStats()
    app = FastAPI(title="visiontune Azure OpenAI emulator", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.emulator = emulator
    app.state.stats = stats
    requests = RequestLog(emulator.config.record_requests)
    app.state.requests = requests

    catalog_lock = threading.Lock()

    def catalog() -> SpecCatalog | None:
        """The spec copies (loaded once, by the preload thread or the first data-plane request)."""
        with catalog_lock:
            if not hasattr(app.state, "catalog"):
                app.state.catalog = load_catalog(emulator.config.specs_dir)
                if app.state.catalog is None:
                    log.warning("no spec copies found (shared/specs beside the checkout): requests are not validated")
                else:
                    app.state.catalog.preload()
            loaded: SpecCatalog | None = app.state.catalog
            return loaded

    threading.Thread(target=catalog, name="emulator-specs", daemon=True).start()

    async def gate(request: Request) -> None:
        """Per-route: count, authenticate, check api-version, then apply any injected fault."""
        route = request.scope["route"].name
        path = request.url.path
        is_arm = path.startswith("/subscriptions/")
        if is_arm:
            _arm_auth(request)
            if not request.query_params.get("api-version"):
                stats.count(route)
                raise ApiError(
                    400,
                    "MissingApiVersionParameter",
                    "The api-version query parameter (?api-version=) is required for all requests.",
                )
            try:
                await check_arm(request, await run_in_threadpool(catalog), requests)
            except ApiError:
                stats.count(route)
                raise
        else:
            try:
                _data_plane_auth(request)
                if not path.startswith("/openai/v1/"):
                    _check_api_version(request)
                await check_data_plane(request, await run_in_threadpool(catalog), requests)
            except ApiError:
                stats.count(route)
                raise
        fault = emulator.faults.take_route_fault(route)
        stats.count(route, fault=fault is not None)
        if fault is None:
            return
        if fault.delay_seconds:
            await asyncio.sleep(fault.delay_seconds)
        if fault.status is None:
            return
        headers = {}
        if fault.retry_after is not None:
            seconds = float(fault.retry_after)
            headers["Retry-After"] = str(int(seconds)) if seconds.is_integer() else str(fault.retry_after)
            headers["retry-after-ms"] = str(int(fault.retry_after * 1000))
        code, message = {
            429: (
                "429",
                "Requests to the API have exceeded the call rate limit of your current pricing tier. "
                f"Please retry after {fault.retry_after or 1} seconds.",
            ),
            500: (
                "InternalServerError",
                "The server had an error while processing your request. Sorry about that!",
            ),
            503: (
                "ServiceUnavailable",
                "The service is temporarily unable to process your request. Please try again later.",
            ),
        }.get(fault.status, (str(fault.status), f"Injected fault: HTTP {fault.status}."))
        raise ApiError(fault.status, code, fault.message or message, headers=headers)

    @app.exception_handler(ApiError)
    async def api_error(_: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 404:
            return JSONResponse({"error": {"code": "404", "message": "Resource not found"}}, status_code=404)
        return JSONResponse(
            {"error": {"code": str(exc.status_code), "message": str(exc.detail)}},
            status_code=exc.status_code,
            headers=getattr(exc, "headers", None),  # e.g. Allow on a 405
        )

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse(
            {"error": {"code": "invalidPayload", "message": f"Invalid request: {exc.errors()}"}},
            status_code=400,
        )

    app.add_middleware(_AzureHeadersMiddleware)

    data = [resource.router(emulator) for resource in (files, fine_tuning, batches, models, chat)]
    # The v1 API serves the same resources under /openai/v1 (api-version optional), and chat by `model`.
    v1 = APIRouter()
    for routes in data:
        app.include_router(routes, prefix="/openai", dependencies=[Depends(gate)])
        for route in _api_routes(routes):
            v1.add_api_route(route.path, route.endpoint, methods=route.methods, name=route.name)
    for route in _api_routes(chat.v1_router(emulator)):
        v1.add_api_route(route.path, route.endpoint, methods=route.methods, name=route.name)
    app.include_router(v1, prefix="/openai/v1", dependencies=[Depends(gate)])

    arm = deployments.router(emulator)
    app.include_router(arm, dependencies=[Depends(gate)])

    known_routes = frozenset(
        route.name for router in (*data, v1, arm) for route in router.routes if getattr(route, "name", None)
    )
    app.state.route_names = known_routes
    app.include_router(admin.router(emulator, stats, known_routes, requests))
    return app


def _api_routes(router: APIRouter) -> list[APIRoute]:
    """The operations of ``router`` (every route its resource module adds is an ``APIRoute``)."""
    return [route for route in router.routes if isinstance(route, APIRoute)]
