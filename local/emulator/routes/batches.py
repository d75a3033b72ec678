"""Routes of the Batch API (data plane)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

from local.emulator.routes.common import json_body, page_limit
from local.emulator.service import Emulator


def router(emulator: Emulator) -> APIRouter:
    """batches_* routes."""
    routes = APIRouter()

    @routes.post("/batches", name="batches_create")
    async def batches_create(request: Request) -> dict[str, Any]:
        return await run_in_threadpool(emulator.create_batch, await json_body(request))

    @routes.get("/batches", name="batches_list")
    async def batches_list(request: Request) -> dict[str, Any]:
        return await run_in_threadpool(emulator.list_batches, request.query_params.get("after"), page_limit(request, 20))

    @routes.get("/batches/{batch_id}", name="batches_retrieve")
    async def batches_retrieve(batch_id: str) -> dict[str, Any]:
        return await run_in_threadpool(emulator.get_batch, batch_id)

    @routes.post("/batches/{batch_id}/cancel", name="batches_cancel")
    async def batches_cancel(batch_id: str) -> dict[str, Any]:
        return emulator.cancel_batch(batch_id)

    return routes
