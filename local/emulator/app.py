"""The emulator's HTTP surface (FastAPI): Azure OpenAI data plane, ARM deployments, emulator admin.

Every data-plane and ARM route has a stable ``name`` (``files_create``, ``chat_completions``, ...): the
admin API injects faults and counts requests by these names (``ROUTE_NAMES``).
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
import uuid
from collections import Counter
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException

from local.emulator.constants import (
    ACCOUNT,
    API_KEY,
    BASE_MODELS,
    DATA_PLANE_API_VERSION,
    LOCATION,
    RESOURCE_GROUP,
    SUBSCRIPTION_ID,
)
from local.emulator.errors import ACCESS_DENIED_MESSAGE, ApiError, bad_request, not_found
from local.emulator.service import Emulator

UPLOAD_FIELDS = frozenset({"file", "purpose", "expires_after[anchor]", "expires_after[seconds]"})
FILE_PURPOSES = ("fine-tune", "fine-tune-results", "assistants", "assistants_output", "batch", "batch_output")
ARM_ACCOUNT = (
    "/subscriptions/{subscription}/resourceGroups/{resource_group}"
    "/providers/Microsoft.CognitiveServices/accounts/{account}"
)
_API_VERSION_RE = re.compile(r"^(\d{4}-\d{2}-\d{2})(-preview)?$")


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


def _data_plane_auth(request: Request) -> None:
    key = request.headers.get("api-key")
    authorization = request.headers.get("authorization", "")
    if key is not None:
        if key == API_KEY:
            return
    elif authorization.lower().startswith("bearer ") and authorization[7:].strip():
        return  # any Entra ID token: the emulator cannot verify it
    raise ApiError(401, "401", ACCESS_DENIED_MESSAGE)


def _arm_auth(request: Request) -> None:
    authorization = request.headers.get("authorization", "")
    if authorization.lower().startswith("bearer ") and authorization[7:].strip():
        return
    key = request.headers.get("api-key")
    if key == API_KEY:
        return
    if key is None and not authorization:
        raise ApiError(401, "AuthenticationFailed", "Authentication failed. The 'Authorization' header is missing.")
    raise ApiError(401, "InvalidAuthenticationToken", "The access token is invalid.")


def _check_api_version(request: Request) -> None:
    version = request.query_params.get("api-version")
    if version is None:
        raise ApiError(404, "404", "Resource not found")
    match = _API_VERSION_RE.match(version)
    if not match or match.group(1) < DATA_PLANE_API_VERSION:
        raise ApiError(400, "BadRequest", f"API version '{version}' is not supported; use {DATA_PLANE_API_VERSION} or newer.")


async def _json_body(request: Request) -> Any:
    raw = await request.body()
    try:
        return json.loads(raw) if raw else None
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise bad_request("The request body is not valid JSON.") from None


def _limit(request: Request, default: int, maximum: int = 100) -> int:
    raw = request.query_params.get("limit")
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise bad_request("'limit' must be an integer.", param="limit") from None
    if not -(2**31) <= value < 2**31:
        raise bad_request("'limit' must be a 32-bit integer.", param="limit")
    return max(1, min(maximum, value))


# Fixed dates for the emulated base models (Azure lists each base model's own dates).
_BASE_MODEL_CREATED_AT = 1_744_588_800  # 2025-04-14
_BASE_MODEL_FINE_TUNE_UNTIL = 1_807_660_800  # 2027-04-14
_MODEL_INFERENCE_UNTIL = 1_870_732_800  # 2029-04-14


def _models(emulator: Emulator) -> list[dict[str, Any]]:
    """``Models_List`` (2024-10-21 authoring spec, ``Model``): the base models the resource can fine-tune
    and every fine-tuned model of a succeeded job (fine-tunable again: continuous fine-tuning)."""
    models = [
        {
            "object": "model",
            "id": name,
            "created_at": _BASE_MODEL_CREATED_AT,
            "status": "succeeded",
            "capabilities": {
                "fine_tune": True,
                "inference": True,
                "completion": False,
                "chat_completion": True,
                "embeddings": False,
            },
            "lifecycle_status": "generally-available",
            "deprecation": {"fine_tune": _BASE_MODEL_FINE_TUNE_UNTIL, "inference": _MODEL_INFERENCE_UNTIL},
        }
        for name in BASE_MODELS
    ]
    for job in emulator.list_jobs(None, 1_000_000)["data"]:
        if job["status"] != "succeeded" or not job.get("fine_tuned_model"):
            continue
        models.append(
            {
                "object": "model",
                "id": job["fine_tuned_model"],
                "created_at": job.get("finished_at", job["created_at"]),
                "status": "succeeded",
                "model": job["model"],
                "fine_tune": job["id"],
                "capabilities": {
                    "fine_tune": True,
                    "inference": True,
                    "completion": False,
                    "chat_completion": True,
                    "embeddings": False,
                },
                "lifecycle_status": "generally-available",
                "deprecation": {"inference": _MODEL_INFERENCE_UNTIL},
            }
        )
    return models


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
        else:
            try:
                _data_plane_auth(request)
            except ApiError:
                stats.count(route)
                raise
            if not path.startswith("/openai/v1/"):
                _check_api_version(request)
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
            headers["Retry-After"] = str(int(fault.retry_after)) if float(fault.retry_after).is_integer() else str(fault.retry_after)
            headers["retry-after-ms"] = str(int(fault.retry_after * 1000))
        code, message = {
            429: (
                "429",
                "Requests to the API have exceeded the call rate limit of your current pricing tier. "
                f"Please retry after {fault.retry_after or 1} seconds.",
            ),
            500: ("InternalServerError", "The server had an error while processing your request. Sorry about that!"),
            503: ("ServiceUnavailable", "The service is temporarily unable to process your request. Please try again later."),
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
            {"error": {"code": "invalidPayload", "message": f"Invalid request: {exc.errors()}"}}, status_code=400
        )

    app.add_middleware(_AzureHeadersMiddleware)

    data = APIRouter(dependencies=[Depends(gate)])

    # -- files ------------------------------------------------------------------------------------
    @data.post("/files", name="files_create")
    async def files_create(request: Request) -> JSONResponse:
        try:
            form = await request.form()
        except Exception as exc:  # noqa: BLE001 - any multipart parse failure is the client's
            raise bad_request(f"The request must be multipart/form-data with 'file' and 'purpose': {exc}") from None
        unknown = sorted(set(form.keys()) - UPLOAD_FIELDS)
        if unknown:
            raise bad_request(f"Unknown form field(s): {', '.join(unknown)}; send 'file' and 'purpose'.")
        upload = form.get("file")
        purpose = form.get("purpose")
        if not isinstance(upload, UploadFile):
            raise bad_request("'file' is required and must be a file part.", param="file")
        if not isinstance(purpose, str) or not purpose:
            raise bad_request("'purpose' is required.", param="purpose")
        content = await upload.read()
        created = await run_in_threadpool(emulator.create_file, upload.filename or "", purpose, content)
        location = str(request.url_for("files_retrieve", file_id=created["id"]))
        return JSONResponse(created, status_code=201, headers={"Location": location})

    @data.get("/files", name="files_list")
    async def files_list(request: Request) -> dict[str, Any]:
        purpose = request.query_params.get("purpose")
        if purpose is not None and purpose not in FILE_PURPOSES:
            raise bad_request(f"'purpose' must be one of {', '.join(FILE_PURPOSES)}.", param="purpose")
        return emulator.list_files(purpose, request.query_params.get("after"), _limit(request, 10_000, 10_000))

    @data.get("/files/{file_id}", name="files_retrieve")
    async def files_retrieve(file_id: str) -> dict[str, Any]:
        return emulator.get_file(file_id)

    @data.delete("/files/{file_id}", name="files_delete")
    async def files_delete(file_id: str) -> dict[str, Any]:
        return emulator.delete_file(file_id)

    @data.get("/files/{file_id}/content", name="files_content")
    async def files_content(file_id: str) -> Response:
        content = await run_in_threadpool(emulator.file_content, file_id)
        return Response(content, media_type="application/octet-stream")

    # -- uploads (large files in parts) --------------------------------------------------------------
    @data.post("/uploads", name="uploads_create")
    async def uploads_create(request: Request) -> dict[str, Any]:
        return emulator.create_upload(await _json_body(request))

    @data.post("/uploads/{upload_id}/parts", name="uploads_parts_create")
    async def uploads_part(upload_id: str, request: Request) -> dict[str, Any]:
        try:
            form = await request.form()
        except Exception as exc:  # noqa: BLE001 - any multipart parse failure is the client's
            raise bad_request(f"The request must be multipart/form-data with 'data': {exc}") from None
        part = form.get("data")
        if not isinstance(part, UploadFile):
            raise bad_request("'data' is required and must be a file part.", param="data")
        data = await part.read()
        return await run_in_threadpool(emulator.add_upload_part, upload_id, data)

    @data.post("/uploads/{upload_id}/complete", name="uploads_complete")
    async def uploads_complete(upload_id: str, request: Request) -> dict[str, Any]:
        return await run_in_threadpool(emulator.complete_upload, upload_id, await _json_body(request))

    @data.post("/uploads/{upload_id}/cancel", name="uploads_cancel")
    async def uploads_cancel(upload_id: str) -> dict[str, Any]:
        return emulator.cancel_upload(upload_id)

    # -- fine-tuning --------------------------------------------------------------------------------
    @data.post("/fine_tuning/jobs", name="fine_tuning_jobs_create")
    async def jobs_create(request: Request) -> JSONResponse:
        job = await run_in_threadpool(emulator.create_job, await _json_body(request))
        location = str(request.url_for("fine_tuning_jobs_retrieve", job_id=job["id"]))
        return JSONResponse(job, status_code=201, headers={"Location": location})

    @data.get("/fine_tuning/jobs", name="fine_tuning_jobs_list")
    async def jobs_list(request: Request) -> dict[str, Any]:
        return emulator.list_jobs(request.query_params.get("after"), _limit(request, 20))

    @data.get("/fine_tuning/jobs/{job_id}", name="fine_tuning_jobs_retrieve")
    async def jobs_retrieve(job_id: str) -> dict[str, Any]:
        return emulator.get_job(job_id)

    @data.delete("/fine_tuning/jobs/{job_id}", name="fine_tuning_jobs_delete")
    async def jobs_delete(job_id: str) -> Response:
        emulator.delete_job(job_id)
        return Response(status_code=204)

    @data.get("/fine_tuning/jobs/{job_id}/events", name="fine_tuning_jobs_events")
    async def jobs_events(job_id: str, request: Request) -> dict[str, Any]:
        return emulator.list_events(job_id, request.query_params.get("after"), _limit(request, 20))

    @data.get("/fine_tuning/jobs/{job_id}/checkpoints", name="fine_tuning_jobs_checkpoints")
    async def jobs_checkpoints(job_id: str, request: Request) -> dict[str, Any]:
        return emulator.list_checkpoints(job_id, request.query_params.get("after"), _limit(request, 10))

    @data.post("/fine_tuning/jobs/{job_id}/cancel", name="fine_tuning_jobs_cancel")
    async def jobs_cancel(job_id: str) -> dict[str, Any]:
        return emulator.cancel_job(job_id)

    # -- batches ------------------------------------------------------------------------------------
    @data.post("/batches", name="batches_create")
    async def batches_create(request: Request) -> dict[str, Any]:
        return await run_in_threadpool(emulator.create_batch, await _json_body(request))

    @data.get("/batches", name="batches_list")
    async def batches_list(request: Request) -> dict[str, Any]:
        return await run_in_threadpool(emulator.list_batches, request.query_params.get("after"), _limit(request, 20))

    @data.get("/batches/{batch_id}", name="batches_retrieve")
    async def batches_retrieve(batch_id: str) -> dict[str, Any]:
        return await run_in_threadpool(emulator.get_batch, batch_id)

    @data.post("/batches/{batch_id}/cancel", name="batches_cancel")
    async def batches_cancel(batch_id: str) -> dict[str, Any]:
        return emulator.cancel_batch(batch_id)

    # -- models -------------------------------------------------------------------------------------
    @data.get("/models", name="models_list")
    async def models_list() -> dict[str, Any]:
        return {"object": "list", "data": await run_in_threadpool(_models, emulator)}

    @data.get("/models/{model_id}", name="models_retrieve")
    async def models_retrieve(model_id: str) -> dict[str, Any]:
        for model in await run_in_threadpool(_models, emulator):
            if model["id"] == model_id:
                return model
        raise not_found(f"The model '{model_id}' does not exist.")

    # -- inference ----------------------------------------------------------------------------------
    @data.post("/deployments/{deployment}/chat/completions", name="chat_completions")
    async def chat_completions(deployment: str, request: Request) -> dict[str, Any]:
        return await run_in_threadpool(emulator.chat_completion, deployment, await _json_body(request))

    app.include_router(data, prefix="/openai")

    v1 = APIRouter(dependencies=[Depends(gate)])
    for route in data.routes:
        v1.add_api_route(route.path, route.endpoint, methods=list(route.methods), name=route.name)

    @v1.post("/chat/completions", name="chat_completions")
    async def chat_completions_v1(request: Request) -> dict[str, Any]:
        body = await _json_body(request)
        model = body.get("model") if isinstance(body, dict) else None
        if not isinstance(model, str) or not model:
            raise bad_request("'model' (the deployment name) is required.", param="model")
        return await run_in_threadpool(emulator.chat_completion, model, body)

    app.include_router(v1, prefix="/openai/v1")

    # -- control plane (ARM) ------------------------------------------------------------------------
    arm = APIRouter(dependencies=[Depends(gate)])

    def check_scope(subscription: str, resource_group: str | None = None, account: str | None = None) -> None:
        if subscription.lower() != SUBSCRIPTION_ID:
            raise ApiError(404, "SubscriptionNotFound", f"The subscription '{subscription}' could not be found.")
        if resource_group is not None and resource_group.lower() != RESOURCE_GROUP.lower():
            raise ApiError(404, "ResourceGroupNotFound", f"Resource group '{resource_group}' could not be found.")
        if account is not None and account.lower() != ACCOUNT.lower():
            raise ApiError(
                404,
                "ResourceNotFound",
                f"The Resource 'Microsoft.CognitiveServices/accounts/{account}' under resource group "
                f"'{resource_group}' was not found.",
            )

    def operation_url(request: Request, operation_id: str) -> str:
        base = str(request.base_url).rstrip("/")
        version = request.query_params.get("api-version", "")
        return (
            f"{base}/subscriptions/{SUBSCRIPTION_ID}/providers/Microsoft.CognitiveServices/locations/{LOCATION}"
            f"/operationResults/{operation_id}?api-version={version}"
        )

    @arm.get(ARM_ACCOUNT + "/deployments", name="deployments_list")
    async def deployments_list(subscription: str, resource_group: str, account: str) -> dict[str, Any]:
        check_scope(subscription, resource_group, account)
        return emulator.list_deployments()

    @arm.get(ARM_ACCOUNT + "/deployments/{name}", name="deployments_get")
    async def deployments_get(subscription: str, resource_group: str, account: str, name: str) -> dict[str, Any]:
        check_scope(subscription, resource_group, account)
        return emulator.get_deployment(name)

    @arm.put(ARM_ACCOUNT + "/deployments/{name}", name="deployments_create_or_update")
    async def deployments_put(
        subscription: str, resource_group: str, account: str, name: str, request: Request
    ) -> JSONResponse:
        check_scope(subscription, resource_group, account)
        status, resource, operation_id = await run_in_threadpool(
            emulator.put_deployment, name, await _json_body(request)
        )
        return JSONResponse(
            resource, status_code=status, headers={"Azure-AsyncOperation": operation_url(request, operation_id)}
        )

    @arm.delete(ARM_ACCOUNT + "/deployments/{name}", name="deployments_delete")
    async def deployments_delete(subscription: str, resource_group: str, account: str, name: str) -> Response:
        check_scope(subscription, resource_group, account)
        return Response(status_code=200 if emulator.delete_deployment(name) else 204)

    @arm.get(
        "/subscriptions/{subscription}/providers/Microsoft.CognitiveServices/locations/{location}"
        "/operationResults/{operation_id}",
        name="arm_operation_status",
    )
    async def arm_operation(subscription: str, location: str, operation_id: str) -> dict[str, Any]:
        check_scope(subscription)
        return emulator.operation_status(operation_id)

    app.include_router(arm)

    # -- emulator admin (not part of Azure; loopback only, no auth) ---------------------------------
    known_routes = frozenset(
        route.name for router in (data, v1, arm) for route in router.routes if getattr(route, "name", None)
    )
    app.state.route_names = known_routes

    @app.get("/_emulator/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "now": emulator.now()}

    @app.get("/_emulator/stats")
    async def get_stats() -> dict[str, Any]:
        return stats.snapshot()

    @app.delete("/_emulator/stats")
    async def reset_stats() -> dict[str, Any]:
        stats.reset()
        return stats.snapshot()

    @app.get("/_emulator/faults")
    async def get_faults() -> dict[str, Any]:
        return emulator.faults.describe()

    @app.post("/_emulator/faults")
    async def add_faults(request: Request) -> dict[str, Any]:
        body = await _json_body(request)
        specs = body if isinstance(body, list) else [body]
        added = []
        for spec in specs:
            try:
                added.append(emulator.faults.add(spec, known_routes))
            except ValueError as exc:
                raise bad_request(str(exc)) from None
        return {"added": added, "faults": emulator.faults.describe()}

    @app.delete("/_emulator/faults")
    async def reset_faults() -> dict[str, Any]:
        emulator.faults.reset()
        return emulator.faults.describe()

    @app.post("/_emulator/clock")
    async def clock(request: Request) -> dict[str, Any]:
        body = await _json_body(request) or {}
        seconds = body.get("advance_seconds") if isinstance(body, dict) else None
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or seconds < 0:
            raise bad_request("'advance_seconds' must be a non-negative number.")
        offset = await run_in_threadpool(emulator.advance_clock, float(seconds))
        return {"offset": offset, "now": emulator.now()}

    return app
