"""The one settings object, built from the environment (and, locally, ``local.settings.json``).

Nothing else in the code reads ``os.environ``. Every field names the exact environment variable (app
setting) it comes from, so the Pulumi program, ``local.settings.json`` and this file agree by
construction: ``Settings.environment_names()`` is the list infra and the local stack write.

Fields that only some commands need are optional here; the services call ``require(...)`` so a missing
value fails with the name of the setting to set, not with an ``AttributeError`` deep inside a call.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Literal

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.errors import VisiontuneError

# Data plane, dated surface (files, uploads, models, batches): the latest stable authoring spec.
# Fine-tuning and chat use the v1 API, which takes no version (shared/aoai/clients.py).
DEFAULT_API_VERSION = "2024-10-21"
# Control plane (ARM deployments): the latest stable Microsoft.CognitiveServices version, whose spec is
# the one held (shared/specs/azure-arm). DeveloperTier PUTs use their own version (shared/aoai/deployments.py).
DEFAULT_MANAGEMENT_API_VERSION = "2026-09-01"
DEFAULT_BASE_MODEL = "gpt-4.1-2025-04-14"


# Where the default Flex Consumption price comes from (shown in reports next to the classic baseline's cost).
FLEX_PRICE_SOURCE = (
    "Azure Functions pricing page (azure.microsoft.com/pricing/details/functions), Flex Consumption on-demand "
    "execution time, $0.000026 per GB-s before the monthly free grant"
)

# Settings that exist only against the local stack: on Azure, storage and Azure OpenAI are reached with
# Entra ID (managed identity), so these must never be set there.
LOCAL_ONLY_SETTINGS = frozenset({"AzureWebJobsStorage", "AZURE_OPENAI_API_KEY"})


class SettingsError(VisiontuneError, ValueError):
    """A setting the current operation needs is missing or invalid."""


class Settings(BaseSettings):
    """Everything visiontune reads from its environment. Build with ``load_settings()``."""

    model_config = SettingsConfigDict(extra="ignore", case_sensitive=True, populate_by_name=True)

    # --- storage -------------------------------------------------------------------------------
    # Locally a connection string (Azurite); on Azure the identity-based form (blob service URI + MI).
    storage_connection_string: str | None = Field(default=None, validation_alias="AzureWebJobsStorage")
    storage_blob_service_uri: str | None = Field(
        default=None, validation_alias="AzureWebJobsStorage__blobServiceUri"
    )
    storage_queue_service_uri: str | None = Field(
        default=None, validation_alias="AzureWebJobsStorage__queueServiceUri"
    )
    # Every storage call: seconds to connect, seconds to wait for an answer, and retries (azure-core's
    # exponential backoff between them). A server that accepts and never answers fails in about
    # (retries + 1) x read timeout instead of hanging.
    storage_connect_timeout_seconds: float = Field(
        default=20.0, gt=0, allow_inf_nan=False, validation_alias="VISIONTUNE_STORAGE_CONNECT_TIMEOUT"
    )
    storage_read_timeout_seconds: float = Field(
        default=60.0, gt=0, allow_inf_nan=False, validation_alias="VISIONTUNE_STORAGE_READ_TIMEOUT"
    )
    storage_retry_total: int = Field(default=3, ge=0, le=10, validation_alias="VISIONTUNE_STORAGE_RETRIES")
    # Client id of the user-assigned managed identity (None: system identity / developer login).
    azure_client_id: str | None = Field(default=None, validation_alias="AZURE_CLIENT_ID")

    # --- Azure OpenAI data plane ---------------------------------------------------------------
    openai_endpoint: str | None = Field(default=None, validation_alias="AZURE_OPENAI_ENDPOINT")
    openai_api_version: str = Field(default=DEFAULT_API_VERSION, validation_alias="OPENAI_API_VERSION")
    # Only for the local emulator. On Azure local auth is disabled and Entra ID tokens are used.
    openai_api_key: str | None = Field(default=None, validation_alias="AZURE_OPENAI_API_KEY")
    # Every Azure OpenAI (data plane) and ARM (deployments) call: seconds to connect and to wait for an
    # answer, so a server that accepts and never answers fails the call (then the SDK's bounded retries)
    # instead of hanging a function until its timeout. Uploads pass their own longer read timeout.
    aoai_connect_timeout_seconds: float = Field(
        default=20.0, gt=0, allow_inf_nan=False, validation_alias="VISIONTUNE_AOAI_CONNECT_TIMEOUT"
    )
    aoai_read_timeout_seconds: float = Field(
        default=120.0, gt=0, allow_inf_nan=False, validation_alias="VISIONTUNE_AOAI_READ_TIMEOUT"
    )

    # --- Azure OpenAI control plane (deployments) ----------------------------------------------
    management_endpoint: str = Field(
        default="https://management.azure.com", validation_alias="AZURE_MANAGEMENT_ENDPOINT"
    )
    management_api_version: str = Field(
        default=DEFAULT_MANAGEMENT_API_VERSION, validation_alias="AZURE_MANAGEMENT_API_VERSION"
    )
    subscription_id: str | None = Field(default=None, validation_alias="AZURE_SUBSCRIPTION_ID")
    resource_group: str | None = Field(default=None, validation_alias="AZURE_RESOURCE_GROUP")
    openai_account: str | None = Field(default=None, validation_alias="AZURE_OPENAI_ACCOUNT")

    # --- models and deployments ----------------------------------------------------------------
    base_model: str = Field(default=DEFAULT_BASE_MODEL, validation_alias="VISIONTUNE_BASE_MODEL")
    base_deployment: str | None = Field(default=None, validation_alias="AZURE_OPENAI_BASE_DEPLOYMENT")
    # GlobalBatch deployment of the base model; None: the base model is scored with real-time calls.
    batch_deployment: str | None = Field(default=None, validation_alias="AZURE_OPENAI_BATCH_DEPLOYMENT")
    candidate_sku: Literal["Standard", "GlobalStandard", "DeveloperTier"] = Field(
        default="GlobalStandard", validation_alias="VISIONTUNE_CANDIDATE_SKU"
    )
    production_sku: Literal["Standard", "GlobalStandard"] = Field(
        default="GlobalStandard", validation_alias="VISIONTUNE_PRODUCTION_SKU"
    )
    deployment_capacity: int = Field(default=10, ge=1, validation_alias="VISIONTUNE_DEPLOYMENT_CAPACITY")

    # --- fine-tuning ---------------------------------------------------------------------------
    training_type: Literal["standard", "globalstandard", "developer"] = Field(
        default="globalstandard", validation_alias="VISIONTUNE_TRAINING_TYPE"
    )
    n_epochs: int | None = Field(default=None, ge=1, le=50, validation_alias="VISIONTUNE_EPOCHS")
    batch_size: int | None = Field(default=None, ge=1, validation_alias="VISIONTUNE_BATCH_SIZE")
    learning_rate_multiplier: float | None = Field(
        default=None, gt=0, validation_alias="VISIONTUNE_LEARNING_RATE_MULTIPLIER"
    )
    # The job seed's range (v1 spec: CreateFineTuningJobRequest.seed, 0..2147483647; int32 in the dated
    # specs): a value outside it is refused here, never sent.
    seed: int = Field(default=42, ge=0, le=2**31 - 1, validation_alias="VISIONTUNE_SEED")
    continue_from_production: bool = Field(
        default=False, validation_alias="VISIONTUNE_CONTINUE_FROM_PRODUCTION"
    )

    # A newer drop of a dataset cancels its older runs that have not reached deployment (shared.pipeline.supersede).
    supersede: bool = Field(default=True, validation_alias="VISIONTUNE_SUPERSEDE")

    # --- conversion ----------------------------------------------------------------------------
    max_side: int = Field(default=512, ge=16, le=2048, validation_alias="VISIONTUNE_MAX_SIDE")
    jpeg_quality: int = Field(default=85, ge=1, le=95, validation_alias="VISIONTUNE_JPEG_QUALITY")
    # Images with a side under min_side pixels, or longer than max_aspect_ratio times their width, are
    # rejected (too_small / extreme_aspect_ratio) rather than trained on.
    min_side: int = Field(default=8, ge=1, validation_alias="VISIONTUNE_MIN_SIDE")
    max_aspect_ratio: float = Field(default=20.0, ge=1, allow_inf_nan=False, validation_alias="VISIONTUNE_MAX_ASPECT_RATIO")
    # The memory of one instance (Flex Consumption: 2048 or 4096 MB; set from the plan by infra). One image
    # may take a tenth of it while it is converted (shared.conversion.images.image_memory_budget).
    instance_memory_mb: int = Field(default=2048, ge=256, validation_alias="VISIONTUNE_INSTANCE_MEMORY_MB")
    # 0 means one worker per core.
    convert_workers: int = Field(default=0, ge=0, validation_alias="VISIONTUNE_CONVERT_WORKERS")
    # Blob reads kept in flight while images decode (each read waits 10-30 ms on Azure before any byte).
    convert_read_concurrency: int = Field(
        default=16, ge=1, le=64, validation_alias="VISIONTUNE_CONVERT_READ_CONCURRENCY"
    )
    # Reuse converted images across versions (training/_cache/<dataset>/); False converts every image.
    convert_cache: bool = Field(default=True, validation_alias="VISIONTUNE_CONVERT_CACHE")
    # Cache packs and refs younger than this are never collected (a concurrent conversion may use them).
    convert_cache_grace_seconds: float = Field(
        default=3600.0, ge=0, validation_alias="VISIONTUNE_CONVERT_CACHE_GRACE_SECONDS"
    )

    # Fan-out (shared/pipeline/fanout.py): a folder drop with at least this many images is converted in
    # shards of shard_images images by the convert_shard queue function (0: never fan out).
    shard_min_images: int = Field(default=20000, ge=0, validation_alias="VISIONTUNE_SHARD_MIN_IMAGES")
    shard_images: int = Field(default=5000, ge=1, validation_alias="VISIONTUNE_SHARD_IMAGES")

    # --- events (shared/events.py): the Event Grid custom topic; None: the storage journal only ------
    events_topic_endpoint: str | None = Field(default=None, validation_alias="VISIONTUNE_EVENTS_TOPIC_ENDPOINT")

    # --- schedules (NCRONTAB, six fields; the timer triggers read them as %SETTING%) -----------
    advance_schedule: str = Field(default="0 */5 * * * *", validation_alias="VISIONTUNE_ADVANCE_SCHEDULE")
    evaluation_schedule: str = Field(default="0 0 3 * * *", validation_alias="VISIONTUNE_EVALUATION_SCHEDULE")

    # --- evaluation and promotion --------------------------------------------------------------
    promotion_margin: float = Field(default=0.01, ge=0, le=1, validation_alias="VISIONTUNE_PROMOTION_MARGIN")
    promotion_p_value: float = Field(default=0.05, gt=0, le=1, validation_alias="VISIONTUNE_PROMOTION_P_VALUE")
    eval_concurrency: int = Field(default=4, ge=1, le=64, validation_alias="VISIONTUNE_EVAL_CONCURRENCY")
    # Seconds of work one timer tick may spend evaluating before it saves progress and yields.
    eval_tick_seconds: float = Field(default=240.0, gt=0, validation_alias="VISIONTUNE_EVAL_TICK_SECONDS")
    regression_threshold: float = Field(
        default=0.02, ge=0, le=1, validation_alias="VISIONTUNE_REGRESSION_THRESHOLD"
    )
    # auto: a candidate that passes the gate is promoted at once; manual: it waits in awaiting_approval
    # (deployment kept) until `visiontune approve|reject`, and is rejected after approval_timeout_days.
    promotion: Literal["auto", "manual"] = Field(default="auto", validation_alias="VISIONTUNE_PROMOTION")
    approval_timeout_days: float = Field(default=7.0, gt=0, le=365, validation_alias="VISIONTUNE_APPROVAL_TIMEOUT_DAYS")
    rollback_window_hours: float = Field(default=24.0, ge=0, validation_alias="VISIONTUNE_ROLLBACK_WINDOW_HOURS")

    # --- retries of pipeline steps across timer ticks (after the SDKs' own in-call retries) ------
    # Backoff before retry n is retry_base_seconds * 2**(n-1), capped at 30 min; Retry-After wins if longer.
    retry_base_seconds: float = Field(default=30.0, ge=0, validation_alias="VISIONTUNE_RETRY_BASE_SECONDS")
    max_step_attempts: int = Field(default=8, ge=1, le=100, validation_alias="VISIONTUNE_MAX_STEP_ATTEMPTS")

    # --- Azure OpenAI resource limits (Learn: "Azure OpenAI quotas and limits"; see shared/aoai/limits.py).
    # Settings so a resource with a raised quota, and the tests, can use other values.
    max_fine_tuned_deployments: int = Field(
        default=5, ge=1, validation_alias="VISIONTUNE_MAX_FINE_TUNED_DEPLOYMENTS"
    )
    fine_tune_files_max_bytes: int = Field(
        default=1024**3, ge=1, validation_alias="VISIONTUNE_FINE_TUNE_FILES_MAX_BYTES"
    )
    fine_tune_file_max_bytes: int = Field(
        default=512 * 1024**2, ge=1, validation_alias="VISIONTUNE_FINE_TUNE_FILE_MAX_BYTES"
    )
    fine_tune_files_max_count: int = Field(default=50, ge=1, validation_alias="VISIONTUNE_FINE_TUNE_FILES_MAX_COUNT")
    batch_file_max_bytes: int = Field(default=200 * 1024**2, ge=1, validation_alias="VISIONTUNE_BATCH_FILE_MAX_BYTES")
    batch_file_max_requests: int = Field(
        default=100_000, ge=1, validation_alias="VISIONTUNE_BATCH_FILE_MAX_REQUESTS"
    )

    # --- budget and prices (USD; illustrative defaults, keep real ones in config) ---------------
    max_training_tokens: int = Field(
        default=50_000_000, ge=1, validation_alias="VISIONTUNE_MAX_TRAINING_TOKENS"
    )
    max_run_usd: float = Field(default=500.0, ge=0, validation_alias="VISIONTUNE_MAX_RUN_USD")
    price_training_per_1m_tokens: float = Field(default=25.0, ge=0, validation_alias="VISIONTUNE_PRICE_TRAINING_PER_1M")
    price_input_per_1m_tokens: float = Field(default=2.50, ge=0, validation_alias="VISIONTUNE_PRICE_INPUT_PER_1M")
    price_output_per_1m_tokens: float = Field(default=10.0, ge=0, validation_alias="VISIONTUNE_PRICE_OUTPUT_PER_1M")
    price_hosting_per_hour: float = Field(default=1.70, ge=0, validation_alias="VISIONTUNE_PRICE_HOSTING_PER_HOUR")
    batch_discount: float = Field(default=0.5, ge=0, le=1, validation_alias="VISIONTUNE_BATCH_DISCOUNT")

    # --- logs ------------------------------------------------------------------------------------
    # Level of the Azure SDK and HTTP client loggers (shared/telemetry.py NOISY_LOGGERS). On Azure every
    # record at INFO goes to Application Insights, and the SDK's HTTP logging policy writes two per call.
    sdk_log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        default="WARNING", validation_alias="VISIONTUNE_SDK_LOG_LEVEL"
    )

    # --- the classic baseline (a CPU model beside the fine-tune in every run report) -------------
    classic_baseline: bool = Field(default=True, validation_alias="VISIONTUNE_CLASSIC_BASELINE")
    # Wall-clock budget of its one training + scoring step (capped at eval_tick_seconds: it must fit a tick).
    classic_max_seconds: float = Field(default=120.0, gt=0, validation_alias="VISIONTUNE_CLASSIC_MAX_SECONDS")
    # Memory it may use while fitting (features + solver copies); larger training splits are skipped.
    classic_max_memory_mb: int = Field(default=512, ge=16, validation_alias="VISIONTUNE_CLASSIC_MAX_MEMORY_MB")
    # Flex Consumption on-demand execution time, USD per GB-s of instance memory (instance_memory_mb): see
    # FLEX_PRICE_SOURCE.
    price_flex_per_gb_second: float = Field(
        default=0.000026, ge=0, validation_alias="VISIONTUNE_PRICE_FLEX_PER_GB_SECOND"
    )

    # ------------------------------------------------------------------------------------------
    @property
    def uses_api_key(self) -> bool:
        """True against the local emulator (an API key is set); on Azure, Entra ID tokens are used."""
        return bool(self.openai_api_key)

    def require(self, *fields: str) -> None:
        """Raise ``SettingsError`` naming the environment variables of every unset field in ``fields``."""
        missing = [self.environment_name(f) for f in fields if getattr(self, f) in (None, "")]
        if missing:
            raise SettingsError("missing setting(s): " + ", ".join(missing))

    def require_storage(self) -> None:
        """Raise ``SettingsError`` unless a storage connection string or blob service URI is set."""
        if not (self.storage_connection_string or self.storage_blob_service_uri):
            raise SettingsError(
                "missing setting: AzureWebJobsStorage (connection string, local) or "
                "AzureWebJobsStorage__blobServiceUri (identity-based, Azure)"
            )

    @classmethod
    def environment_name(cls, field: str) -> str:
        """The environment variable (app setting) a field is read from."""
        alias = cls.model_fields[field].validation_alias
        if isinstance(alias, AliasChoices):
            return str(alias.choices[0])
        return str(alias)

    @classmethod
    def environment_names(cls) -> list[str]:
        """Every environment variable the settings object reads, in field order."""
        return [cls.environment_name(f) for f in cls.model_fields]


def read_local_settings(path: Path) -> dict[str, str]:
    """The ``Values`` of a Core Tools style ``local.settings.json`` (``{}`` if the file is absent)."""
    if not path.exists():
        return {}
    data = json.loads(path.read_text(encoding="utf-8"))
    values = data.get("Values", {})
    if not isinstance(values, dict):
        raise SettingsError(f"{path}: 'Values' must be an object")
    return {str(k): str(v) for k, v in values.items()}


def load_settings(local_settings: Path | None = None, **overrides: Any) -> Settings:
    """Build the settings from the environment; values in ``local_settings`` fill what the environment
    leaves unset (as Core Tools does); keyword ``overrides`` (field names) win over both."""
    values: dict[str, Any] = {}
    if local_settings is not None:
        environment = os.environ
        values = {k: v for k, v in read_local_settings(local_settings).items() if k not in environment}
    settings = Settings(**values)
    return settings.model_copy(update=overrides) if overrides else settings
