"""Routes of chat completions (inference): per deployment on dated versions, by ``model`` on v1."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

from local.emulator.errors import bad_request
from local.emulator.routes.common import json_body
from local.emulator.service import Emulator


def router(emulator: Emulator) -> APIRouter:
    """``/deployments/{deployment}/chat/completions`` (mounted under ``/openai``)."""
    routes = APIRouter()

    @routes.post("/deployments/{deployment}/chat/completions", name="chat_completions")
    async def chat_completions(deployment: str, request: Request) -> dict[str, Any]:
        return await run_in_threadpool(emulator.chat_completion, deployment, await json_body(request))

    return routes


def v1_router(emulator: Emulator) -> APIRouter:
    """``/chat/completions`` with the deployment name as ``model`` (mounted under ``/openai/v1``)."""
    routes = APIRouter()

    @routes.post("/chat/completions", name="chat_completions")
    async def chat_completions_v1(request: Request) -> dict[str, Any]:
        body = await json_body(request)
        model = body.get("model") if isinstance(body, dict) else None
        if not isinstance(model, str) or not model:
            raise bad_request("'model' (the deployment name) is required.", param="model")
        return await run_in_threadpool(emulator.chat_completion, model, body)

    return routes
