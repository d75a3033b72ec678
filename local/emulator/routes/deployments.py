"""Routes of the ARM control plane: account deployments and their async operations."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from local.emulator.constants import ACCOUNT, LOCATION, RESOURCE_GROUP, SUBSCRIPTION_ID
from local.emulator.errors import ApiError
from local.emulator.routes.common import json_body
from local.emulator.service import Emulator

ARM_ACCOUNT = (
    "/subscriptions/{subscription}/resourceGroups/{resource_group}"
    "/providers/Microsoft.CognitiveServices/accounts/{account}"
)


def check_scope(subscription: str, resource_group: str | None = None, account: str | None = None) -> None:
    """404 as ARM answers for a subscription, resource group or account this emulator is not."""
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
    """The ``Azure-AsyncOperation`` URL of an operation, at the api-version of the request."""
    base = str(request.base_url).rstrip("/")
    version = request.query_params.get("api-version", "")
    return (
        f"{base}/subscriptions/{SUBSCRIPTION_ID}/providers/Microsoft.CognitiveServices/locations/{LOCATION}"
        f"/operationResults/{operation_id}?api-version={version}"
    )


def router(emulator: Emulator) -> APIRouter:
    """deployments_* and arm_operation_status routes."""
    routes = APIRouter()

    @routes.get(ARM_ACCOUNT + "/deployments", name="deployments_list")
    async def deployments_list(subscription: str, resource_group: str, account: str) -> dict[str, Any]:
        check_scope(subscription, resource_group, account)
        return emulator.list_deployments()

    @routes.get(ARM_ACCOUNT + "/deployments/{name}", name="deployments_get")
    async def deployments_get(subscription: str, resource_group: str, account: str, name: str) -> dict[str, Any]:
        check_scope(subscription, resource_group, account)
        return emulator.get_deployment(name)

    @routes.put(ARM_ACCOUNT + "/deployments/{name}", name="deployments_create_or_update")
    async def deployments_put(
        subscription: str, resource_group: str, account: str, name: str, request: Request
    ) -> JSONResponse:
        check_scope(subscription, resource_group, account)
        status, resource, operation_id = await run_in_threadpool(
            emulator.put_deployment, name, await json_body(request), request.query_params.get("api-version")
        )
        return JSONResponse(
            resource, status_code=status, headers={"Azure-AsyncOperation": operation_url(request, operation_id)}
        )

    @routes.delete(ARM_ACCOUNT + "/deployments/{name}", name="deployments_delete")
    async def deployments_delete(
        subscription: str, resource_group: str, account: str, name: str, request: Request
    ) -> Response:
        check_scope(subscription, resource_group, account)
        status, operation_id = await run_in_threadpool(emulator.delete_deployment, name)
        if operation_id is None:
            return Response(status_code=status)
        # Asynchronous, as ARM deletes a deployment: poll the operation (or GET the deployment until 404).
        return Response(status_code=status, headers={"Azure-AsyncOperation": operation_url(request, operation_id)})

    @routes.get(
        "/subscriptions/{subscription}/providers/Microsoft.CognitiveServices/locations/{location}"
        "/operationResults/{operation_id}",
        name="arm_operation_status",
    )
    async def arm_operation(subscription: str, location: str, operation_id: str) -> dict[str, Any]:
        check_scope(subscription)
        return emulator.operation_status(operation_id)

    return routes
