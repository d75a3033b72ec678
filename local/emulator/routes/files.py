"""Routes of the Files API and the Uploads API (data plane)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from local.emulator.errors import bad_request
from local.emulator.routes.common import json_body, page_limit
from local.emulator.service import Emulator

UPLOAD_FIELDS = frozenset({"file", "purpose", "expires_after[anchor]", "expires_after[seconds]"})
FILE_PURPOSES = ("fine-tune", "fine-tune-results", "assistants", "assistants_output", "batch", "batch_output")


def router(emulator: Emulator) -> APIRouter:
    """files_* and uploads_* routes."""
    routes = APIRouter()

    @routes.post("/files", name="files_create")
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

    @routes.get("/files", name="files_list")
    async def files_list(request: Request) -> dict[str, Any]:
        purpose = request.query_params.get("purpose")
        if purpose is not None and purpose not in FILE_PURPOSES:
            raise bad_request(f"'purpose' must be one of {', '.join(FILE_PURPOSES)}.", param="purpose")
        return emulator.list_files(purpose, request.query_params.get("after"), page_limit(request, 10_000, 10_000))

    @routes.get("/files/{file_id}", name="files_retrieve")
    async def files_retrieve(file_id: str) -> dict[str, Any]:
        return emulator.get_file(file_id)

    @routes.delete("/files/{file_id}", name="files_delete")
    async def files_delete(file_id: str) -> dict[str, Any]:
        return emulator.delete_file(file_id)

    @routes.get("/files/{file_id}/content", name="files_content")
    async def files_content(file_id: str) -> Response:
        content = await run_in_threadpool(emulator.file_content, file_id)
        return Response(content, media_type="application/octet-stream")

    @routes.post("/uploads", name="uploads_create")
    async def uploads_create(request: Request) -> dict[str, Any]:
        return emulator.create_upload(await json_body(request))

    @routes.post("/uploads/{upload_id}/parts", name="uploads_parts_create")
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

    @routes.post("/uploads/{upload_id}/complete", name="uploads_complete")
    async def uploads_complete(upload_id: str, request: Request) -> dict[str, Any]:
        return await run_in_threadpool(emulator.complete_upload, upload_id, await json_body(request))

    @routes.post("/uploads/{upload_id}/cancel", name="uploads_cancel")
    async def uploads_cancel(upload_id: str) -> dict[str, Any]:
        return emulator.cancel_upload(upload_id)

    return routes
