"""Official SDK clients pointed at the emulator: copy these patterns to talk to the local stack.

* ``openai_client(url)``: ``openai.AzureOpenAI`` with the emulator's API key (on Azure: Entra ID tokens).
* ``management_client(url)``: ``CognitiveServicesManagementClient`` whose ARM endpoint is the emulator.
  azure-core refuses to send a bearer token over plain http (``_enforce_https``); the emulator is on
  loopback http, so the bearer policy here marks each request as allowed (the same flag azure-core's
  ``enforce_https=False`` request option sets) and sends a token the emulator issued and verifies.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from local.emulator.constants import API_KEY, DATA_PLANE_API_VERSION, SUBSCRIPTION_ID
from local.emulator.tokens import issue_token

if TYPE_CHECKING:
    from azure.core.credentials import AccessToken
    from azure.core.pipeline.policies import BearerTokenCredentialPolicy
    from azure.mgmt.cognitiveservices import CognitiveServicesManagementClient
    from openai import AzureOpenAI, OpenAI


class LocalTokenCredential:
    """A ``TokenCredential`` that hands out tokens the emulator issued (signed with its key; see
    ``local.emulator.tokens``): the emulator refuses bearer tokens it did not issue, as Azure does."""

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        from azure.core.credentials import AccessToken

        token, expires = issue_token(API_KEY, scopes[0] if scopes else "")
        return AccessToken(token, expires)


def loopback_bearer_policy(credential: Any, *scopes: str) -> BearerTokenCredentialPolicy[Any, Any]:
    """A ``BearerTokenCredentialPolicy`` that also works over http (for the loopback emulator only)."""
    from azure.core.pipeline.policies import BearerTokenCredentialPolicy

    class _LoopbackBearerTokenPolicy(BearerTokenCredentialPolicy[Any, Any]):
        def on_request(self, request: Any) -> None:
            request.context.options["enforce_https"] = False
            super().on_request(request)

    return _LoopbackBearerTokenPolicy(credential, *scopes)


def openai_client(url: str, *, max_retries: int = 2, timeout: float = 60.0, **kwargs: Any) -> AzureOpenAI:
    """``AzureOpenAI`` for the emulator at ``url`` (api-version 2024-10-21, the emulator's key)."""
    from openai import AzureOpenAI

    return AzureOpenAI(
        azure_endpoint=url,
        api_key=API_KEY,
        api_version=DATA_PLANE_API_VERSION,
        max_retries=max_retries,
        timeout=timeout,
        **kwargs,
    )


def v1_client(url: str, *, max_retries: int = 2, timeout: float = 60.0, **kwargs: Any) -> OpenAI:
    """``OpenAI`` on the emulator's v1 API (``<url>/openai/v1/``, no api-version), with the emulator's key."""
    from openai import OpenAI

    return OpenAI(
        base_url=f"{url}/openai/v1/",
        api_key=API_KEY,
        default_headers={"api-key": API_KEY},
        max_retries=max_retries,
        timeout=timeout,
        **kwargs,
    )


def management_client(
    url: str, *, polling_interval: float = 0.2, **kwargs: Any
) -> CognitiveServicesManagementClient:
    """``CognitiveServicesManagementClient`` whose ARM endpoint is the emulator at ``url``."""
    from azure.mgmt.cognitiveservices import CognitiveServicesManagementClient

    credential = LocalTokenCredential()
    scope = "https://management.azure.com/.default"
    return CognitiveServicesManagementClient(
        credential,
        SUBSCRIPTION_ID,
        base_url=url,
        credential_scopes=[scope],
        authentication_policy=loopback_bearer_policy(credential, scope),
        polling_interval=polling_interval,
        **kwargs,
    )
