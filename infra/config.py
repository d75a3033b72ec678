"""Every configuration value of the Pulumi program, read in this one module, typed, with defaults.

Two kinds of values live in the stack config (``Pulumi.<stack>.yaml``, namespace ``visiontune``):

* infrastructure choices (location, name prefix, models, capacities, instance memory, principals...),
  fields of ``StackConfig`` with the defaults below;
* the app's own tunables (schedules, promotion margin, budget, prices...): every field of
  ``shared.settings.Settings`` that is neither derived from the created resources (``DERIVED_SETTINGS``)
  nor local-only. Their config key is the field name in camelCase (``promotion_margin`` ->
  ``promotionMargin``), their default is the field's default in ``Settings``, and they are validated by
  the same pydantic model the app uses, so a bad value fails ``pulumi up``, not the deployed app.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal, cast

from pydantic import ValidationError
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource

from shared.settings import LOCAL_ONLY_SETTINGS, Settings

CONFIG_NAMESPACE = "visiontune"

# Settings fields whose values come from the resources this program creates, not from config.
DERIVED_SETTINGS = frozenset(
    {
        "storage_blob_service_uri",
        "storage_queue_service_uri",
        "azure_client_id",
        "openai_endpoint",
        "subscription_id",
        "resource_group",
        "openai_account",
        "base_model",
        "base_deployment",
        "batch_deployment",
        "instance_memory_mb",  # the Flex plan's instanceMemoryMb
        "events_topic_endpoint",
    }
)

INSTANCE_MEMORY_CHOICES = (512, 2048, 4096)
PRINCIPAL_TYPES = ("User", "Group", "ServicePrincipal")
DEPLOYMENT_SKUS = ("GlobalStandard", "Standard", "DataZoneStandard")


class ConfigError(ValueError):
    """A stack config value is missing or invalid; the message names the key to fix."""


def camel_case(snake: str) -> str:
    """``promotion_margin`` -> ``promotionMargin``."""
    head, *rest = snake.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def tunable_fields() -> list[str]:
    """Settings fields the stack config may set (everything not derived and not local-only)."""
    return [
        name
        for name in Settings.model_fields
        if name not in DERIVED_SETTINGS and Settings.environment_name(name) not in LOCAL_ONLY_SETTINGS
    ]


@dataclass(frozen=True)
class DropZonePrincipal:
    """A person, group or CI identity allowed to push datasets and read reports."""

    object_id: str
    principal_type: Literal["User", "Group", "ServicePrincipal"] = "User"


@dataclass(frozen=True)
class StackConfig:
    """The typed stack configuration. Build it with ``load_config()`` (Pulumi) or ``parse_config()``."""

    project: str
    stack: str
    location: str = "swedencentral"
    # Azure OpenAI may live in another region (fine-tuning is only offered in a few).
    openai_location: str = "swedencentral"
    name_prefix: str = "vtune"
    resource_group_name: str = ""
    base_model_name: str = "gpt-4.1"
    base_model_version: str = "2025-04-14"
    base_deployment_name: str = "base"
    base_deployment_sku: str = "GlobalStandard"
    base_deployment_capacity: int = 10
    batch_deployment_enabled: bool = True
    batch_deployment_name: str = "base-batch"
    batch_deployment_capacity: int = 50
    openai_public_network_access: Literal["Enabled", "Disabled"] = "Enabled"
    instance_memory_mb: int = 2048
    maximum_instance_count: int = 40
    log_retention_days: int = 30
    log_daily_cap_gb: float = 1.0
    soft_delete_days: int = 7
    version_retention_days: int = 30
    drop_zone_principals: tuple[DropZonePrincipal, ...] = ()
    # E-mail receivers of the alerts' action group (none: the alerts notify nobody).
    alert_emails: tuple[str, ...] = ()
    # Phase two of a deployment: needs the published app's blobs_extension key (infra/deploy.sh).
    event_grid_subscriptions: bool = False
    # Environment name -> value for every app tunable (see the module docstring).
    app_tunables: Mapping[str, str] = field(default_factory=dict)

    @property
    def base_model(self) -> str:
        """The fine-tuning base model id, e.g. ``gpt-4.1-2025-04-14``."""
        return f"{self.base_model_name}-{self.base_model_version}"

    @property
    def batch_deployment(self) -> str | None:
        """Name of the GlobalBatch deployment, or None when it is disabled."""
        return self.batch_deployment_name if self.batch_deployment_enabled else None


# Config key -> (StackConfig field, parser). Keys are what users write in Pulumi.<stack>.yaml.
def _str(value: str) -> str:
    return value.strip()


def _int(value: str) -> int:
    return int(value)


def _float(value: str) -> float:
    return float(value)


def _bool(value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("true", "1", "yes"):
        return True
    if lowered in ("false", "0", "no"):
        return False
    raise ValueError(f"expected true or false, got {value!r}")


INFRA_KEYS: dict[str, tuple[str, Callable[[str], Any]]] = {
    "location": ("location", _str),
    "openaiLocation": ("openai_location", _str),
    "namePrefix": ("name_prefix", _str),
    "resourceGroupName": ("resource_group_name", _str),
    "baseModelName": ("base_model_name", _str),
    "baseModelVersion": ("base_model_version", _str),
    "baseDeploymentName": ("base_deployment_name", _str),
    "baseDeploymentSku": ("base_deployment_sku", _str),
    "baseDeploymentCapacity": ("base_deployment_capacity", _int),
    "batchDeployment": ("batch_deployment_enabled", _bool),
    "batchDeploymentName": ("batch_deployment_name", _str),
    "batchDeploymentCapacity": ("batch_deployment_capacity", _int),
    "openaiPublicNetworkAccess": ("openai_public_network_access", _str),
    "instanceMemoryMb": ("instance_memory_mb", _int),
    "maximumInstanceCount": ("maximum_instance_count", _int),
    "logRetentionDays": ("log_retention_days", _int),
    "logDailyCapGb": ("log_daily_cap_gb", _float),
    "softDeleteDays": ("soft_delete_days", _int),
    "versionRetentionDays": ("version_retention_days", _int),
    "eventGridSubscriptions": ("event_grid_subscriptions", _bool),
}
DROP_ZONE_KEY = "dropZonePrincipals"
ALERT_EMAILS_KEY = "alertEmails"


def known_keys() -> list[str]:
    """Every config key this program reads (without the namespace)."""
    return [*INFRA_KEYS, DROP_ZONE_KEY, ALERT_EMAILS_KEY, *(camel_case(f) for f in tunable_fields())]


class _ConfigSettings(Settings):
    """``Settings`` validated from the given values only (never from this process's environment)."""

    @classmethod
    def settings_customise_sources(
        cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource, *_: Any, **__: Any
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings,)


def _setting_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _parse_tunables(raw: Mapping[str, str]) -> dict[str, str]:
    values = {camel_case(f): raw[camel_case(f)] for f in tunable_fields() if camel_case(f) in raw}
    try:
        checked = _ConfigSettings.model_validate(
            {Settings.environment_name(_field_of(k)): v for k, v in values.items()}
        )
    except ValidationError as error:
        problems = []
        for item in error.errors():
            env_name = str(item["loc"][0]) if item["loc"] else "?"
            key = next(
                (camel_case(f) for f in tunable_fields() if Settings.environment_name(f) == env_name),
                env_name,
            )
            problems.append(f"{CONFIG_NAMESPACE}:{key} ({env_name}): {item['msg']}")
        raise ConfigError("invalid app setting(s) in the stack config: " + "; ".join(problems)) from None
    tunables: dict[str, str] = {}
    for name in tunable_fields():
        value = getattr(checked, name)
        if value is not None:  # None means "let the service choose": the setting is left out.
            tunables[Settings.environment_name(name)] = _setting_text(value)
    return tunables


def _field_of(key: str) -> str:
    return next(f for f in tunable_fields() if camel_case(f) == key)


def _parse_principals(text: str) -> tuple[DropZonePrincipal, ...]:
    key = f"{CONFIG_NAMESPACE}:{DROP_ZONE_KEY}"
    try:
        items = json.loads(text)
    except json.JSONDecodeError as error:
        raise ConfigError(f"{key} must be a JSON/YAML list: {error}") from None
    if not isinstance(items, list):
        raise ConfigError(f"{key} must be a list of {{objectId, principalType}} objects")
    principals = []
    for index, item in enumerate(items):
        if isinstance(item, str):
            item = {"objectId": item}
        if not isinstance(item, dict) or not str(item.get("objectId", "")).strip():
            raise ConfigError(f"{key}[{index}] needs an objectId (the Entra object id of the user/group/app)")
        principal_type = str(item.get("principalType", "User"))
        if principal_type not in PRINCIPAL_TYPES:
            raise ConfigError(f"{key}[{index}].principalType must be one of {', '.join(PRINCIPAL_TYPES)}")
        principals.append(DropZonePrincipal(str(item["objectId"]).strip(), cast(Any, principal_type)))
    return tuple(principals)


def _parse_emails(text: str) -> tuple[str, ...]:
    """A JSON/YAML list of addresses, or one comma-separated string."""
    key = f"{CONFIG_NAMESPACE}:{ALERT_EMAILS_KEY}"
    try:
        items = json.loads(text)
    except json.JSONDecodeError:
        items = [part for part in text.split(",")]
    if isinstance(items, str):
        items = [items]
    if not isinstance(items, list):
        raise ConfigError(f"{key} must be a list of e-mail addresses")
    emails = tuple(str(item).strip() for item in items if str(item).strip())
    for index, email in enumerate(emails):
        local, at, domain = email.partition("@")
        if not at or not local or "." not in domain or " " in email:
            raise ConfigError(f"{key}[{index}] is not an e-mail address: {email!r}")
    return emails


def parse_config(raw: Mapping[str, str], *, project: str, stack: str) -> StackConfig:
    """Build and validate the ``StackConfig`` from raw config strings (keys without the namespace).

    Raises ``ConfigError`` naming the key for an unknown key, an unparsable value or a value out of range.
    """
    unknown = sorted(set(raw) - set(known_keys()))
    if unknown:
        raise ConfigError(
            "unknown config key(s): "
            + ", ".join(f"{CONFIG_NAMESPACE}:{k}" for k in unknown)
            + " (see Pulumi.dev.yaml.example)"
        )
    values: dict[str, Any] = {}
    for key, (attribute, parse) in INFRA_KEYS.items():
        if key in raw:
            try:
                values[attribute] = parse(raw[key])
            except ValueError as error:
                raise ConfigError(f"{CONFIG_NAMESPACE}:{key}: {error}") from None
    if "openai_location" not in values and "location" in values:
        values["openai_location"] = values["location"]
    if DROP_ZONE_KEY in raw:
        values["drop_zone_principals"] = _parse_principals(raw[DROP_ZONE_KEY])
    if ALERT_EMAILS_KEY in raw:
        values["alert_emails"] = _parse_emails(raw[ALERT_EMAILS_KEY])
    config = StackConfig(project=project, stack=stack, app_tunables=_parse_tunables(raw), **values)
    if not config.resource_group_name:
        config = replace(config, resource_group_name=f"{config.name_prefix}-{stack}")
    _check(config)
    return config


def _check(config: StackConfig) -> None:
    def fail(key: str, message: str) -> None:
        raise ConfigError(f"{CONFIG_NAMESPACE}:{key} {message}")

    if (
        not config.name_prefix.isascii()
        or not config.name_prefix.isalnum()
        or not config.name_prefix[:1].isalpha()
    ):
        fail("namePrefix", f"must be letters and digits starting with a letter (got {config.name_prefix!r})")
    if not 2 <= len(config.name_prefix) <= 10:
        fail("namePrefix", f"must be 2-10 characters (got {len(config.name_prefix)})")
    if config.instance_memory_mb not in INSTANCE_MEMORY_CHOICES:
        fail(
            "instanceMemoryMb", f"must be one of {INSTANCE_MEMORY_CHOICES} (got {config.instance_memory_mb})"
        )
    if not 1 <= config.maximum_instance_count <= 1000:
        fail("maximumInstanceCount", f"must be 1-1000 (got {config.maximum_instance_count})")
    if config.base_deployment_sku not in DEPLOYMENT_SKUS:
        fail(
            "baseDeploymentSku",
            f"must be one of {', '.join(DEPLOYMENT_SKUS)} (got {config.base_deployment_sku!r})",
        )
    for key, capacity in (
        ("baseDeploymentCapacity", config.base_deployment_capacity),
        ("batchDeploymentCapacity", config.batch_deployment_capacity),
    ):
        if capacity < 1:
            fail(key, f"must be at least 1 (got {capacity})")
    if config.batch_deployment_enabled and config.batch_deployment_name == config.base_deployment_name:
        fail("batchDeploymentName", "must differ from baseDeploymentName")
    if config.openai_public_network_access not in ("Enabled", "Disabled"):
        fail("openaiPublicNetworkAccess", "must be Enabled or Disabled")
    if not 30 <= config.log_retention_days <= 730:
        fail("logRetentionDays", f"must be 30-730 (got {config.log_retention_days})")
    if config.log_daily_cap_gb <= 0:
        fail("logDailyCapGb", f"must be positive (got {config.log_daily_cap_gb})")
    if not 1 <= config.soft_delete_days <= 365:
        fail("softDeleteDays", f"must be 1-365 (got {config.soft_delete_days})")
    if config.version_retention_days < 1:
        fail("versionRetentionDays", f"must be at least 1 (got {config.version_retention_days})")


def load_config() -> StackConfig:
    """Read the current stack's config (``pulumi.Config("visiontune")``) into a ``StackConfig``."""
    import pulumi

    config = pulumi.Config(CONFIG_NAMESPACE)
    raw = {key: value for key in known_keys() if (value := config.get(key)) is not None}
    from pulumi.runtime.config import CONFIG, get_config_env

    given = {*CONFIG.get(), *get_config_env()}  # set in-process (tests) or by the Pulumi engine
    unknown = [
        key.split(":", 1)[1]
        for key in given
        if key.startswith(CONFIG_NAMESPACE + ":") and key.split(":", 1)[1] not in known_keys()
    ]
    raw.update({key: "" for key in unknown})  # let parse_config name them
    return parse_config(raw, project=pulumi.get_project(), stack=pulumi.get_stack())
