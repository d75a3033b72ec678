"""Model deployments through the ARM control plane (azure-mgmt-cognitiveservices).

Creating a deployment is a long-running operation; ``Deployments.begin_create`` only sends the PUT and
returns, and the caller polls ``get`` on later timer ticks (a function must not sit for minutes waiting).
A deployment's model cannot change: asking for an existing name with another model is an error, so every
new model gets a new deployment name (``deployment_name``).

Errors are classified for bounded retries by the caller: ``TransientDeploymentError`` for what is worth
retrying later (``BadRequestForDependentService`` right after training, 429, 5xx, connection failures),
``DeploymentError`` for the rest, always with the service's own code and message.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, cast

from shared.aoai.clients import management_client
from shared.aoai.errors import AoaiError, azure_error_code, describe_azure_error
from shared.settings import Settings

if TYPE_CHECKING:
    from azure.mgmt.cognitiveservices import CognitiveServicesManagementClient
    from azure.mgmt.cognitiveservices.models import Deployment

TRANSIENT_ERROR_CODES = frozenset({"BadRequestForDependentService", "TooManyRequests", "ServiceUnavailable"})
DEPLOYMENT_NAME_MAX_CHARS = 64
DEPLOYMENT_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{1,63}$")
REQUEST_CONFLICT = "RequestConflict"
# provisioningState values of an operation still running on a deployment (ARM refuses another meanwhile).
IN_PROGRESS_STATES = frozenset({"Accepted", "Creating", "Updating", "Deleting"})
# provisioningState values after which nothing more will happen without a new request.
SETTLED_STATES = frozenset({"Succeeded", "Failed", "Canceled", "Cancelled"})
FAILED_STATES = frozenset({"Failed", "Canceled", "Cancelled"})
DEVELOPER_TIER_SKU = "DeveloperTier"
# The ARM api-version that documents DeveloperTier deployments of fine-tuned models (Learn "Test your
# fine-tuned model" / fine-tune-test: PUT .../deployments/{name}?api-version=2025-07-01-preview with a
# developertier SKU). The client's default (MANAGEMENT_API_VERSION) is older; only these PUTs use it.
DEVELOPER_TIER_ARM_API_VERSION = "2025-07-01-preview"
# Developer tier (no hosting fee, 24 h) is offered for the gpt-4.1 family only (azure-facts).
DEVELOPER_TIER_MODEL_RE = re.compile(r"^gpt-4\.1(?:[-.:]|$)")


class DeploymentError(AoaiError):
    """A deployment request failed for a reason retrying will not fix (quota, bad model, conflict...)."""

    def __init__(self, message: str, *, code: str | None = None, status: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.status = status


class TransientDeploymentError(DeploymentError):
    """A deployment request failed in a way that usually passes: retry on a later tick (bounded)."""

    transient = True


class DeploymentConflictError(TransientDeploymentError):
    """409 ``RequestConflict``: another deployment operation on the same account is in progress. ARM
    allows one at a time per account (hashicorp/terraform-provider-azurerm#22607, Azure/azure-dev#9398);
    wait until it settles and ask again. Not a failure of this deployment."""


@dataclass(frozen=True)
class DeploymentState:
    """One deployment as ARM reports it. ``provisioning_state``: Creating, Accepted, Succeeded, Failed..."""

    name: str
    model: str | None
    provisioning_state: str | None
    sku: str | None = None
    capacity: int | None = None
    model_version: str | None = None
    error: str | None = None
    # The PUT's Azure-AsyncOperation URL (``begin_create`` only): ARM reports a provisioning failure's
    # error in that status document, not in the deployment resource.
    operation_url: str | None = None

    @property
    def succeeded(self) -> bool:
        return self.provisioning_state == "Succeeded"

    @property
    def failed(self) -> bool:
        return self.provisioning_state in FAILED_STATES

    @property
    def settled(self) -> bool:
        """True when provisioning has finished one way or the other."""
        return self.provisioning_state in SETTLED_STATES


def deployment_name(dataset: str, version: str, role: str = "cand") -> str:
    """``vt-<dataset>-<version[:12]>-<role>``: lower case letters, digits and ``-``, at most 64 chars,
    deterministic. A dataset name that had to be changed (case, other characters) or shortened gets 6 hex
    digits of its hash, so two datasets never share a deployment name."""
    def clean(text: str) -> str:
        return re.sub(r"-{2,}", "-", re.sub(r"[^a-z0-9-]+", "-", text.lower())).strip("-")

    version_part = clean(version)[:12] or "v"
    role_part = clean(role)[:12] or "cand"
    data_part = clean(dataset)
    room = DEPLOYMENT_NAME_MAX_CHARS - len("vt---") - len(version_part) - len(role_part)
    if data_part != dataset or len(data_part) > room or not data_part:
        digest = hashlib.sha256(dataset.encode("utf-8")).hexdigest()[:6]
        data_part = f"{data_part[: room - len(digest) - 1].rstrip('-')}-{digest}".lstrip("-")
    return f"vt-{data_part}-{version_part}-{role_part}"


def deployable_sku(requested: str, model: str, *, fallback: str) -> str:
    """The SKU to deploy ``model`` (a base, fine-tuned or checkpoint id) with: ``requested``, except that
    ``DeveloperTier`` exists only for the gpt-4.1 family (``gpt-4.1-...``, ``gpt-4.1-mini-...``); any other
    model gets ``fallback`` (a paid SKU: Standard / GlobalStandard)."""
    if requested != DEVELOPER_TIER_SKU:
        return requested
    return requested if DEVELOPER_TIER_MODEL_RE.match(model) else fallback


def _classify(exc: BaseException, action: str) -> DeploymentError:
    from azure.core.exceptions import HttpResponseError, ServiceRequestError, ServiceResponseError

    message = f"{action}: {describe_azure_error(exc)}"
    if isinstance(exc, (ServiceRequestError, ServiceResponseError)):
        return TransientDeploymentError(message)
    code = azure_error_code(exc)
    status = exc.status_code if isinstance(exc, HttpResponseError) else None
    if code == REQUEST_CONFLICT or (status == 409 and code is None):
        return DeploymentConflictError(message, code=code, status=status)
    if code in TRANSIENT_ERROR_CODES or status == 429 or (status is not None and status >= 500):
        return TransientDeploymentError(message, code=code, status=status)
    return DeploymentError(message, code=code, status=status)


def _state_of(deployment: Deployment) -> DeploymentState:
    properties = deployment.properties
    model = properties.model if properties is not None else None
    sku = deployment.sku
    # The failure's ``error`` object is not declared by the SDK's model: it lands in additional_properties.
    extra = (properties.additional_properties if properties is not None else None) or {}
    error = extra.get("error") if isinstance(extra, dict) else None
    if isinstance(error, dict):
        error = f"{error.get('code', '')}: {error.get('message', '')}".strip(": ")
    return DeploymentState(
        name=str(deployment.name),
        model=model.name if model is not None else None,
        model_version=model.version if model is not None else None,
        provisioning_state=properties.provisioning_state if properties is not None else None,
        sku=sku.name if sku is not None else None,
        capacity=sku.capacity if sku is not None else None,
        error=str(error) if error else None,
    )


class Deployments:
    """The deployments of the Azure OpenAI account named by the settings
    (``AZURE_SUBSCRIPTION_ID`` / ``AZURE_RESOURCE_GROUP`` / ``AZURE_OPENAI_ACCOUNT``)."""

    def __init__(self, settings: Settings, client: CognitiveServicesManagementClient | None = None) -> None:
        settings.require("subscription_id", "resource_group", "openai_account")
        if client is None:
            client = management_client(settings)
        self._client = client
        self._resource_group = str(settings.resource_group)
        self._account = str(settings.openai_account)

    def get(self, name: str, *, operation_url: str | None = None) -> DeploymentState | None:
        """The deployment called ``name``, or None when there is none. When it has ``Failed`` and
        ``operation_url`` (``DeploymentState.operation_url`` of the PUT) is given, ``error`` is the
        service's message from that operation's status document."""
        from azure.core.exceptions import AzureError, ResourceNotFoundError

        try:
            deployment = self._client.deployments.get(self._resource_group, self._account, name)
        except ResourceNotFoundError:
            return None
        except AzureError as exc:
            raise _classify(exc, f"could not read deployment {name}") from exc
        state = _state_of(deployment)
        if state.failed and state.error is None and operation_url:
            state = dataclasses.replace(state, error=self.operation_error(operation_url))
        return state

    def operation_error(self, operation_url: str) -> str | None:
        """``code: message`` of a failed ARM operation (its Azure-AsyncOperation status document), read
        through the client's own pipeline (authentication, retries). None when there is none or it cannot
        be read: the caller still knows the deployment failed, only without the reason."""
        from azure.core.exceptions import AzureError
        from azure.core.rest import HttpRequest

        try:
            response = self._client._send_request(HttpRequest("GET", operation_url))
            response.raise_for_status()
            error = response.json().get("error")
        except (AzureError, ValueError, AttributeError):
            return None
        if not isinstance(error, dict):
            return None
        return f"{error.get('code', '')}: {error.get('message', '')}".strip(": ") or None

    def begin_create(self, name: str, *, model: str, sku: str, capacity: int) -> DeploymentState:
        """Ask for deployment ``name`` of ``model`` and return without waiting for provisioning.

        Already there with the same model: returned as is (a ``Failed`` one is PUT again, which makes
        ARM retry provisioning). There with another model: ``DeploymentError`` (a deployment's model
        cannot change). Raises ``TransientDeploymentError`` for errors worth retrying on a later tick."""
        if not DEPLOYMENT_NAME_RE.match(name):
            raise DeploymentError(f"invalid deployment name {name!r}: 2-64 letters, digits, '_', '.', '-'")
        existing = self.get(name)
        if existing is not None:
            if existing.model != model:
                raise DeploymentError(
                    f"deployment {name} already serves model {existing.model}; a deployment's model cannot "
                    f"be changed, so {model} needs a deployment of its own"
                )
            if not existing.failed:
                return existing

        from azure.core.exceptions import AzureError
        from azure.mgmt.cognitiveservices import models

        body = models.Deployment(
            sku=models.Sku(name=sku, capacity=capacity),
            properties=models.DeploymentProperties(
                model=models.DeploymentModel(format="OpenAI", name=model, version="1")
            ),
        )
        try:
            extra = {"api_version": DEVELOPER_TIER_ARM_API_VERSION} if sku == DEVELOPER_TIER_SKU else {}
            poller = self._client.deployments.begin_create_or_update(
                self._resource_group, self._account, name, body, polling=False,
                cls=lambda response, deserialized, _: (deserialized, response.http_response.headers),
                **extra,
            )
            # ``cls`` replaces what the poller returns; its type (LROPoller[Deployment]) cannot say so.
            created, headers = cast("tuple[Deployment | None, Mapping[str, str]]", poller.result())
        except AzureError as exc:
            raise _classify(exc, f"could not deploy {model} as {name}") from exc
        operation_url = headers.get("Azure-AsyncOperation")
        state = _state_of(created) if created is not None else None
        if state is None or state.model is None:
            return DeploymentState(
                name=name,
                model=model,
                provisioning_state="Creating",
                sku=sku,
                capacity=capacity,
                operation_url=operation_url,
            )
        return dataclasses.replace(state, operation_url=operation_url)

    def delete(self, name: str) -> None:
        """Delete deployment ``name`` (without waiting for ARM to finish); absent is fine."""
        from azure.core.exceptions import AzureError, ResourceNotFoundError

        try:
            self._client.deployments.begin_delete(
                self._resource_group, self._account, name, polling=False
            ).result()
        except ResourceNotFoundError:
            return
        except AzureError as exc:
            raise _classify(exc, f"could not delete deployment {name}") from exc

    def operation_in_progress(self) -> DeploymentState | None:
        """A deployment of the account with an operation still running (creating, updating, deleting), or
        None. ARM refuses any other deployment write or delete on the account meanwhile (409
        ``RequestConflict``), so callers wait while this is not None."""
        return next((d for d in self.list() if d.provisioning_state in IN_PROGRESS_STATES), None)

    def list(self) -> list[DeploymentState]:
        """Every deployment of the account."""
        from azure.core.exceptions import AzureError

        try:
            return [_state_of(d) for d in self._client.deployments.list(self._resource_group, self._account)]
        except AzureError as exc:
            raise _classify(exc, "could not list deployments") from exc
