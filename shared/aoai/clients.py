"""Build the two Azure OpenAI clients visiontune uses, once per settings.

- ``openai_client``: the data plane. Each operation goes to the API surface whose official spec declares
  exactly what visiontune sends (the spec copies in ``shared/specs`` beside the checkout; the emulator
  refuses anything else):

  * files, uploads, models: dated ``OPENAI_API_VERSION`` (2024-10-21, the latest stable authoring spec),
    because the v1 spec's file upload requires ``expires_after`` (training files would expire) and v1
    has no Uploads API;
  * batches: dated ``OPENAI_API_VERSION``, because the v1 spec has no ``/batches``;
  * fine-tuning jobs, events, checkpoints: v1 (``<endpoint>/openai/v1/``), which declares ``method``
    (supervised hyperparameters) and Learn documents ``trainingType`` on it; 2024-10-21 takes neither;
  * chat completions: v1 (``model`` = deployment name); Learn's API lifecycle page: v1 takes OpenAI's
    chat completions syntax; checked against OpenAI's spec.

  On Azure it signs in with Entra ID (``DefaultAzureCredential``, the function app's managed identity);
  against the local emulator with the API key (``AZURE_OPENAI_API_KEY`` is a local-only setting).
- ``management_client``: the control plane (deployments) through ARM, at ``AZURE_MANAGEMENT_API_VERSION``
  (default 2026-09-01, the latest stable version, whose spec copy the emulator checks requests against).

Clients are cached per relevant settings values so warm function instances reuse their connection pools
and tokens. Heavy SDK imports happen inside the functions (cold start).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from shared.settings import DEFAULT_MANAGEMENT_API_VERSION, Settings

if TYPE_CHECKING:
    import openai
    from azure.core.credentials import AccessToken, TokenCredential
    from azure.core.pipeline import PipelineRequest
    from azure.core.pipeline.policies import BearerTokenCredentialPolicy
    from azure.core.rest import HttpRequest, HttpResponse
    from azure.identity import DefaultAzureCredential
    from azure.mgmt.cognitiveservices import CognitiveServicesManagementClient

COGNITIVE_SERVICES_SCOPE = "https://cognitiveservices.azure.com/.default"
# The default ARM api-version of the deployment routes (the AZURE_MANAGEMENT_API_VERSION setting).
MANAGEMENT_API_VERSION = DEFAULT_MANAGEMENT_API_VERSION
OPENAI_MAX_RETRIES = 5
# azure-core retries 429/5xx itself (honouring Retry-After); keep it bounded so a timer tick stays short.
MANAGEMENT_RETRY_TOTAL = 3

# What a client depends on in the settings: a change of any of them builds a new client.
ClientKey = tuple[str | float | None, ...]
_Client = TypeVar("_Client")

_lock = threading.Lock()
_openai_clients: dict[ClientKey, AzureOpenAIClient] = {}
_management_clients: dict[ClientKey, CognitiveServicesManagementClient] = {}
_credentials: dict[str | None, DefaultAzureCredential] = {}


def _cached_client(cache: dict[ClientKey, _Client], key: ClientKey, build: Callable[[], _Client]) -> _Client:
    """The client ``cache`` holds under ``key``, else a new one from ``build`` (built outside the lock; when
    two threads build the same key at once, both get the one stored first)."""
    with _lock:
        cached = cache.get(key)
    if cached is not None:
        return cached
    client = build()
    with _lock:
        return cache.setdefault(key, client)


def _credential(settings: Settings) -> DefaultAzureCredential:
    """One ``DefaultAzureCredential`` per managed identity client id (it caches tokens internally)."""
    from azure.identity import DefaultAzureCredential

    key = settings.azure_client_id
    with _lock:
        if key not in _credentials:
            _credentials[key] = DefaultAzureCredential(managed_identity_client_id=settings.azure_client_id)
        return _credentials[key]


class AzureOpenAIClient:
    """The SDK resources visiontune calls, each bound to the API surface chosen for it (module docstring):
    ``files``, ``uploads``, ``models``, ``batches`` on the dated client; ``fine_tuning``, ``chat`` on v1."""

    def __init__(self, v1: openai.OpenAI, dated: openai.AzureOpenAI) -> None:
        self.v1 = v1
        self.dated = dated
        self.files = dated.files
        self.uploads = dated.uploads
        self.models = dated.models
        self.batches = dated.batches
        self.fine_tuning = v1.fine_tuning
        self.chat = v1.chat


def openai_client(settings: Settings) -> AzureOpenAIClient:
    """The Azure OpenAI data-plane clients for ``settings`` (cached).

    API key when ``AZURE_OPENAI_API_KEY`` is set (the local stack only), otherwise Entra ID through a
    bearer-token provider (the v1 client takes the provider as its ``api_key``, as Learn's API lifecycle
    page shows). ``max_retries`` is 5: the SDK retries 408/409/429/5xx and honours ``Retry-After`` /
    ``retry-after-ms`` (up to two minutes) between attempts.
    """
    settings.require("openai_endpoint")
    key = (
        settings.openai_endpoint,
        settings.openai_api_version,
        settings.openai_api_key,
        settings.azure_client_id,
        settings.aoai_connect_timeout_seconds,
        settings.aoai_read_timeout_seconds,
    )
    return _cached_client(_openai_clients, key, lambda: _new_openai_client(settings))


def _new_openai_client(settings: Settings) -> AzureOpenAIClient:
    """A new ``openai_client`` for ``settings`` (not cached)."""
    import httpx
    import openai

    # connect / read from the settings; write and pool waits bounded like a read (uploads override per call)
    timeout = httpx.Timeout(settings.aoai_read_timeout_seconds, connect=settings.aoai_connect_timeout_seconds)
    common: dict[str, Any] = dict(max_retries=OPENAI_MAX_RETRIES, timeout=timeout)
    endpoint = str(settings.openai_endpoint).rstrip("/")
    dated_options = dict(azure_endpoint=endpoint, api_version=settings.openai_api_version, **common)
    v1_options = dict(base_url=f"{endpoint}/openai/v1/", **common)
    if settings.uses_api_key:
        dated = openai.AzureOpenAI(api_key=settings.openai_api_key, **dated_options)
        v1 = openai.OpenAI(
            api_key=settings.openai_api_key,
            default_headers={"api-key": str(settings.openai_api_key)},
            **v1_options,
        )
    else:
        from azure.identity import get_bearer_token_provider

        provider = get_bearer_token_provider(_credential(settings), COGNITIVE_SERVICES_SCOPE)
        dated = openai.AzureOpenAI(azure_ad_token_provider=provider, **dated_options)
        v1 = openai.OpenAI(api_key=provider, **v1_options)
    return AzureOpenAIClient(v1, dated)


class _StaticTokenCredential:
    """A ``TokenCredential`` that always returns the same token (the local emulator accepts any)."""

    def __init__(self, token: str) -> None:
        self._token = token

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        from azure.core.credentials import AccessToken

        return AccessToken(self._token, int(time.time()) + 24 * 3600)


def _local_auth_policy(token: str) -> BearerTokenCredentialPolicy[HttpRequest, HttpResponse]:
    """A bearer-token policy for the local emulator. azure-core refuses bearer tokens over plain http
    unless the request option ``enforce_https`` is False, so this policy sets it on every request."""
    from azure.core.pipeline.policies import BearerTokenCredentialPolicy
    from azure.core.rest import HttpRequest, HttpResponse

    class _LocalBearerPolicy(BearerTokenCredentialPolicy[HttpRequest, HttpResponse]):
        def on_request(self, request: PipelineRequest[HttpRequest]) -> None:
            request.context.options["enforce_https"] = False
            super().on_request(request)

    return _LocalBearerPolicy(_StaticTokenCredential(token), "https://management.azure.com/.default")


def management_client(settings: Settings) -> CognitiveServicesManagementClient:
    """The ARM client for deployments (cached): ``base_url`` = ``AZURE_MANAGEMENT_ENDPOINT``.

    On Azure: ``DefaultAzureCredential`` with the ARM scope of that endpoint. Against the local stack
    (an API key is set): a static bearer token over http (the emulator accepts any token).
    """
    settings.require("subscription_id")
    endpoint = settings.management_endpoint.rstrip("/")
    key = (
        endpoint,
        settings.management_api_version,
        settings.subscription_id,
        settings.openai_api_key,
        settings.azure_client_id,
        settings.aoai_connect_timeout_seconds,
        settings.aoai_read_timeout_seconds,
    )
    return _cached_client(_management_clients, key, lambda: _new_management_client(settings, endpoint))


def _new_management_client(settings: Settings, endpoint: str) -> CognitiveServicesManagementClient:
    """A new ``management_client`` for ``settings`` on ``endpoint`` (not cached)."""
    from azure.mgmt.cognitiveservices import CognitiveServicesManagementClient

    options: dict[str, Any] = dict(
        base_url=endpoint,
        api_version=settings.management_api_version,
        retry_total=MANAGEMENT_RETRY_TOTAL,
        # azure-core's transport options: without them a silent server holds the call for minutes
        connection_timeout=settings.aoai_connect_timeout_seconds,
        read_timeout=settings.aoai_read_timeout_seconds,
        polling_interval=5,
        credential_scopes=[f"{endpoint}/.default"],
    )
    if settings.uses_api_key:
        credential: TokenCredential = _StaticTokenCredential(settings.openai_api_key or "local")
        options["authentication_policy"] = _local_auth_policy(settings.openai_api_key or "local")
    else:
        credential = _credential(settings)
    return CognitiveServicesManagementClient(credential, str(settings.subscription_id), **options)


def clear_client_cache() -> None:
    """Forget cached clients (tests that restart a server on a new port use fresh settings anyway)."""
    with _lock:
        _openai_clients.clear()
        _management_clients.clear()
