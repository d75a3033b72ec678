"""Deployments (ARM control plane): create/update, provisioning state, async operations, delete."""

from __future__ import annotations

import re
import uuid
from typing import Any

from local.emulator.chat import BATCH_SKUS
from local.emulator.constants import ACCOUNT, BASE_DEPLOYMENT, BASE_MODEL, BATCH_DEPLOYMENT
from local.emulator.core import EmulatorCore, arm_account_path, hex_id, iso_time
from local.emulator.errors import ApiError

FINE_TUNED_SKUS = ("Standard", "GlobalStandard", "DeveloperTier")
KNOWN_SKUS = FINE_TUNED_SKUS + BATCH_SKUS + (
    "DataZoneStandard",
    "ProvisionedManaged",
    "GlobalProvisionedManaged",
    "DataZoneProvisionedManaged",
)


# ARM accepts one deployment operation per account at a time: a PUT or DELETE of a deployment while another
# deployment of the same account is still provisioning or deleting gets HTTP 409 ``RequestConflict``,
# "Another operation is being performed on the parent resource '<account id>'. Please try again later."
# Sources: hashicorp/terraform-provider-azurerm#22607 and #22939 (fixed by locking the parent account,
# PR #22711), Azure/azure-dev#9398, Azure/terraform-azurerm-avm-res-cognitiveservices-account#125.
IN_PROGRESS_STATES = frozenset({"Accepted", "Creating", "Updating", "Deleting"})
# DeveloperTier deployments of fine-tuned models are documented from ARM api-version 2025-07-01-preview
# (Learn "Test your fine-tuned model", fine-tune-test); older versions do not know the SKU. Which error
# Azure answers on an older version is not documented: modelled as a 400 naming the SKU and the version.
DEVELOPER_TIER_SINCE = "2025-07-01"


class DeploymentsMixin(EmulatorCore):
    """Deployments of the account, as ARM serves them. A delete is asynchronous: the deployment shows
    ``provisioningState: Deleting`` for ``deployment_seconds``, then it is gone."""

    def _deployment(self, name: str) -> dict[str, Any] | None:
        """The deployment called ``name``, None when there is none (or its deletion has finished)."""
        deployment = self.store.get("deployment", name)
        if deployment is not None and deployment.get("gone_at") is not None and self.now() >= deployment["gone_at"]:
            self.store.delete("deployment", name)
            return None
        return deployment

    def _deployments(self) -> list[dict[str, Any]]:
        return [d for d in (self._deployment(x["id"]) for x in self.store.list("deployment")) if d is not None]

    def _refuse_if_busy(self) -> None:
        """409 RequestConflict while any deployment operation of the account is in progress (see above)."""
        busy = [d["id"] for d in self._deployments() if self._deployment_state(d)["state"] in IN_PROGRESS_STATES]
        if busy:
            raise ApiError(
                409,
                "RequestConflict",
                f"Another operation is being performed on the parent resource '{arm_account_path()}'. "
                "Please try again later.",
            )

    def _ensure_default_deployments(self) -> None:
        for name, sku in ((BASE_DEPLOYMENT, "GlobalStandard"), (BATCH_DEPLOYMENT, "GlobalBatch")):
            if self.store.get("deployment", name) is None:
                now = self.now()
                self.store.put(
                    "deployment",
                    {
                        "id": name,
                        "created_at": now,
                        "modified_at": now,
                        "sku": {"name": sku, "capacity": 100 if sku == "GlobalBatch" else 50},
                        "model": {"format": "OpenAI", "name": BASE_MODEL, "version": "2025-04-14"},
                        "model_ref": {"kind": "base", "name": BASE_MODEL},
                        "ready_at": now,
                        "fail": None,
                    },
                )

    def _deployment_state(self, deployment: dict[str, Any]) -> dict[str, Any]:
        if deployment.get("gone_at") is not None:
            return {"state": "Deleting"}
        if self.now() < deployment["ready_at"]:
            return {"state": "Creating" if deployment["created_at"] == deployment["modified_at"] else "Updating"}
        if deployment.get("fail"):
            return {"state": "Failed", "error": deployment["fail"]}
        return {"state": "Succeeded"}

    def deployment_resource(self, deployment: dict[str, Any]) -> dict[str, Any]:
        state = self._deployment_state(deployment)
        name = deployment["id"]
        return {
            "id": f"{arm_account_path()}/deployments/{name}",
            "name": name,
            "type": "Microsoft.CognitiveServices/accounts/deployments",
            "sku": dict(deployment["sku"]),
            "properties": {
                "model": dict(deployment["model"]),
                "provisioningState": state["state"],
                "capabilities": {"chatCompletion": "true"},
                "versionUpgradeOption": "NoAutoUpgrade",
                "raiPolicyName": "Microsoft.DefaultV2",
            },
            "systemData": {
                "createdAt": iso_time(deployment["created_at"]),
                "createdByType": "User",
                "lastModifiedAt": iso_time(deployment["modified_at"]),
                "lastModifiedByType": "User",
            },
            "etag": f"\"{hex_id(name + str(deployment['modified_at']))}\"",
        }

    def put_deployment(self, name: str, body: Any, api_version: str | None = None) -> tuple[int, dict[str, Any], str]:
        """Create or update a deployment (``api_version``: the request's ARM api-version). Returns (HTTP
        status, resource, operation id)."""
        if not re.match(r"^[A-Za-z0-9][A-Za-z0-9._-]{1,63}$", name):
            raise ApiError(400, "InvalidResourceName", f"The deployment name '{name}' is invalid.")
        if not isinstance(body, dict):
            raise ApiError(400, "InvalidRequestContent", "The request content is not a JSON object.")
        sku = body.get("sku") or {}
        model = ((body.get("properties") or {}).get("model")) or {}
        if not isinstance(sku, dict) or sku.get("name") not in KNOWN_SKUS:
            raise ApiError(
                400, "InvalidSkuName", f"The SKU '{sku.get('name') if isinstance(sku, dict) else sku}' is not valid."
            )
        if str(sku.get("name")).lower() == "developertier" and (api_version or "")[:10] < DEVELOPER_TIER_SINCE:
            raise ApiError(
                400,
                "InvalidSkuName",
                f"The SKU 'DeveloperTier' is not supported in api-version '{api_version}'; DeveloperTier "
                f"deployments need api-version {DEVELOPER_TIER_SINCE}-preview or later.",
            )
        capacity = sku.get("capacity", 1)
        if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity < 1:
            raise ApiError(400, "InvalidCapacity", "sku.capacity must be a positive integer.")
        model_name = model.get("name") if isinstance(model, dict) else None
        if not isinstance(model_name, str) or not model_name:
            raise ApiError(400, "InvalidResourceProperties", "properties.model.name is required.")
        if model.get("format", "OpenAI") != "OpenAI":
            raise ApiError(400, "InvalidResourceProperties", "properties.model.format must be 'OpenAI'.")
        reference = self._resolve_model(model_name)
        if reference is None:
            raise ApiError(
                400,
                "DeploymentModelNotSupported",
                f"The model '{model_name}' is not a base model of this resource nor a fine-tuned model or "
                "checkpoint of a succeeded job.",
            )
        if reference["kind"] == "fine_tuned" and sku["name"] not in FINE_TUNED_SKUS:
            raise ApiError(
                400,
                "InvalidSkuName",
                f"A fine-tuned model can only be deployed with the SKU Standard, GlobalStandard or DeveloperTier, "
                f"not {sku['name']}.",
            )
        with self.store.lock:
            self._refuse_if_busy()
            existing = self._deployment(name)
            if existing is not None and existing["model"]["name"] != model_name:
                raise ApiError(
                    400,
                    "DeploymentModelNotUpdatable",
                    f"The model of deployment '{name}' is '{existing['model']['name']}' and cannot be changed to "
                    f"'{model_name}'. Create a new deployment for the new model.",
                )
            if reference["kind"] == "fine_tuned" and existing is None:
                fine_tuned = [d for d in self._deployments() if d["model_ref"]["kind"] == "fine_tuned"]
                if len(fine_tuned) >= self.config.max_fine_tuned_deployments:
                    raise ApiError(
                        400,
                        "QuotaExceeded",
                        f"This resource already has {len(fine_tuned)} fine-tuned model deployments; the limit is "
                        f"{self.config.max_fine_tuned_deployments}. Delete one before deploying another.",
                    )
            failure_phase = self.faults.take_deployment_failure()
            dependent_failure = {
                "code": "BadRequestForDependentService",
                "message": f"The dependent service is not ready to serve the model '{model_name}' yet. "
                "Please retry the deployment in a few minutes.",
            }
            if failure_phase == "initial":
                raise ApiError(400, dependent_failure["code"], dependent_failure["message"])
            now = self.now()
            deployment = {
                "id": name,
                "created_at": existing["created_at"] if existing else now,
                "modified_at": now,
                "sku": {"name": sku["name"], "capacity": capacity},
                "model": {"format": "OpenAI", "name": model_name, "version": str(model.get("version") or "1")},
                "model_ref": reference,
                "ready_at": now + self.config.deployment_seconds,
                "fail": dependent_failure if failure_phase == "provisioning" else None,
            }
            self.store.put("deployment", deployment)
            operation_id = uuid.uuid4().hex
            self.store.put(
                "operation", {"id": operation_id, "created_at": now, "deployment": name, "modified_at": now}
            )
        return (200 if existing else 201), self.deployment_resource(deployment), operation_id

    def operation_status(self, operation_id: str) -> dict[str, Any]:
        operation = self.store.get("operation", operation_id)
        if operation is None:
            raise ApiError(404, "ResourceNotFound", f"The operation '{operation_id}' was not found.")
        deployment = self._deployment(operation["deployment"])
        body: dict[str, Any] = {"id": operation_id, "name": operation_id, "startTime": iso_time(operation["created_at"])}
        if operation.get("kind") == "delete":
            body["status"] = "Succeeded" if deployment is None else "Deleting"
            return body
        if deployment is None or deployment["modified_at"] != operation["modified_at"]:
            body["status"] = "Canceled" if deployment is None else "Succeeded"
            return body
        state = self._deployment_state(deployment)
        body["status"] = state["state"]
        if state["state"] == "Failed":
            body["error"] = dict(state["error"])
        return body

    def get_deployment(self, name: str) -> dict[str, Any]:
        deployment = self._deployment(name)
        if deployment is None:
            raise ApiError(
                404,
                "DeploymentNotFound",
                f"Deployment '{name}' not found under account '{ACCOUNT}'.",
            )
        return self.deployment_resource(deployment)

    def list_deployments(self) -> dict[str, Any]:
        deployments = sorted(self._deployments(), key=lambda d: d["created_at"])
        return {"value": [self.deployment_resource(d) for d in deployments]}

    def delete_deployment(self, name: str) -> tuple[int, str | None]:
        """Start deleting a deployment: (202, operation id) while it shows ``Deleting`` for
        ``deployment_seconds`` (ARM's asynchronous delete), (200, None) when it went at once, (204, None)
        when there was none. Asking again while it is being deleted is accepted; another deployment
        operation in progress on the account is a 409 (see ``IN_PROGRESS_STATES``)."""
        with self.store.lock:
            deployment = self._deployment(name)
            if deployment is None:
                return 204, None
            if deployment.get("gone_at") is None:
                self._refuse_if_busy()
            now = self.now()
            if self.config.deployment_seconds <= 0:
                self.store.delete("deployment", name)
                return 200, None
            if deployment.get("gone_at") is None:
                deployment = {**deployment, "gone_at": now + self.config.deployment_seconds, "modified_at": now}
                self.store.put("deployment", deployment)
            operation_id = uuid.uuid4().hex
            self.store.put(
                "operation",
                {"id": operation_id, "created_at": now, "deployment": name, "modified_at": deployment["modified_at"],
                 "kind": "delete"},
            )  # fmt: skip
            return 202, operation_id
