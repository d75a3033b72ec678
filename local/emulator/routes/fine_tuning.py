"""Routes of the fine-tuning jobs API (data plane): jobs, events, checkpoints."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from local.emulator.routes.common import json_body, page_limit
from local.emulator.service import Emulator


def router(emulator: Emulator) -> APIRouter:
    """fine_tuning_jobs_* routes."""
    routes = APIRouter()

    @routes.post("/fine_tuning/jobs", name="fine_tuning_jobs_create")
    async def jobs_create(request: Request) -> JSONResponse:
        job = await run_in_threadpool(emulator.create_job, await json_body(request))
        location = str(request.url_for("fine_tuning_jobs_retrieve", job_id=job["id"]))
        return JSONResponse(job, status_code=201, headers={"Location": location})

    @routes.get("/fine_tuning/jobs", name="fine_tuning_jobs_list")
    async def jobs_list(request: Request) -> dict[str, Any]:
        return emulator.list_jobs(request.query_params.get("after"), page_limit(request, 20))

    @routes.get("/fine_tuning/jobs/{job_id}", name="fine_tuning_jobs_retrieve")
    async def jobs_retrieve(job_id: str) -> dict[str, Any]:
        return emulator.get_job(job_id)

    @routes.delete("/fine_tuning/jobs/{job_id}", name="fine_tuning_jobs_delete")
    async def jobs_delete(job_id: str) -> Response:
        emulator.delete_job(job_id)
        return Response(status_code=204)

    @routes.get("/fine_tuning/jobs/{job_id}/events", name="fine_tuning_jobs_events")
    async def jobs_events(job_id: str, request: Request) -> dict[str, Any]:
        return emulator.list_events(job_id, request.query_params.get("after"), page_limit(request, 20))

    @routes.get("/fine_tuning/jobs/{job_id}/checkpoints", name="fine_tuning_jobs_checkpoints")
    async def jobs_checkpoints(job_id: str, request: Request) -> dict[str, Any]:
        return emulator.list_checkpoints(job_id, request.query_params.get("after"), page_limit(request, 10))

    @routes.post("/fine_tuning/jobs/{job_id}/cancel", name="fine_tuning_jobs_cancel")
    async def jobs_cancel(job_id: str) -> dict[str, Any]:
        return emulator.cancel_job(job_id)

    return routes
