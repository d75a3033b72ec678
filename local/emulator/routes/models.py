"""Routes of the Models API (data plane)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool

from local.emulator.service import Emulator


def router(emulator: Emulator) -> APIRouter:
    """models_* routes."""
    routes = APIRouter()

    @routes.get("/models", name="models_list")
    async def models_list() -> dict[str, Any]:
        return {"object": "list", "data": await run_in_threadpool(emulator.list_models)}

    @routes.get("/models/{model_id}", name="models_retrieve")
    async def models_retrieve(model_id: str) -> dict[str, Any]:
        return await run_in_threadpool(emulator.get_model, model_id)

    return routes
