"""The per-dataset overrides a ``_READY`` marker may carry: how a marker body is decoded and checked
(``RunOverrides.parse_marker``) and how the overrides apply to the settings."""

from __future__ import annotations

import json
import math
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, model_validator

from shared.errors import VisiontuneError
from shared.settings import Settings


class OverridesError(VisiontuneError, ValueError):
    """A ``_READY`` marker whose body is not a valid overrides object."""


# The marker's byte-order marks: PowerShell 5 (``echo {} > _READY``, ``Out-File``) writes UTF-16 LE with
# a BOM; Notepad may write UTF-8 with a BOM. Anything else must be UTF-8.
_UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")
_UTF8_BOM = b"\xef\xbb\xbf"
MAX_MARKER_BYTES = 64 * 1024  # a marker holds a few overrides; a larger body is a mistake
# Azure OpenAI / OpenAI fine-tuning limits (OpenAI spec CreateFineTuningJobRequest, which the Azure v1
# authoring spec repeats for ``seed``): seed 0..2147483647; hyperparameters.batch_size 1..256,
# n_epochs 1..50, learning_rate_multiplier > 0. The 2024-10-21 Azure spec types all of them int32/double.
SEED_MAX = 2_147_483_647
BATCH_SIZE_MAX = 256
EPOCHS_MAX = 50


def decode_marker(body: bytes) -> str:
    """The text of a marker body: UTF-8 (with or without a BOM) or UTF-16 with a BOM.
    Raises ``OverridesError`` for anything else."""
    if len(body) > MAX_MARKER_BYTES:
        raise OverridesError(
            f"the _READY marker is {len(body):,} bytes; at most {MAX_MARKER_BYTES:,} are read "
            "(it should hold a small JSON object of overrides, or nothing)"
        )
    try:
        if body.startswith(_UTF16_BOMS):
            return body.decode("utf-16")
        return body.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise OverridesError(
            f"the _READY marker is neither UTF-8 nor UTF-16 with a byte-order mark (byte {error.start} "
            "cannot be decoded); save it as UTF-8 (PowerShell: Set-Content -Encoding utf8)"
        ) from None


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise OverridesError(f"the _READY marker holds the number {text}, which is out of range (not finite)")
    return value


def _no_constant(name: str) -> Any:
    raise OverridesError(f"the _READY marker holds {name}, which is not a number JSON allows")


# Override keys renamed to the name of the setting they override (one name per knob). The old names are
# still read, as the new ones, with a warning (``RunOverrides.warnings``).
RENAMED_OVERRIDES = {"epochs": "n_epochs", "budget_usd": "max_run_usd"}


class RunOverrides(BaseModel):
    """Per-dataset settings a ``_READY`` marker may carry as a JSON object; each key is the name of the
    ``Settings`` field it overrides, except ``prompt`` (not a setting). Unknown keys are an error (a typo
    must not silently train with the defaults); numbers must be finite and in the ranges Azure accepts
    (see ``SEED_MAX`` and friends). Old key names (``RENAMED_OVERRIDES``) are read with a warning."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    base_model: str | None = Field(default=None, min_length=1)
    n_epochs: int | None = Field(default=None, strict=True, ge=1, le=EPOCHS_MAX)
    batch_size: int | None = Field(default=None, strict=True, ge=1, le=BATCH_SIZE_MAX)
    learning_rate_multiplier: float | None = Field(default=None, gt=0)
    seed: int | None = Field(default=None, strict=True, ge=0, le=SEED_MAX)
    prompt: str | None = Field(default=None, min_length=1)
    max_side: int | None = Field(default=None, strict=True, ge=16, le=2048)
    jpeg_quality: int | None = Field(default=None, strict=True, ge=1, le=95)
    training_type: Literal["standard", "globalstandard", "developer"] | None = None
    candidate_sku: Literal["Standard", "GlobalStandard", "DeveloperTier"] | None = None
    continue_from_production: bool | None = Field(default=None, strict=True)
    promotion_margin: float | None = Field(default=None, ge=0, le=1)
    promotion_p_value: float | None = Field(default=None, gt=0, le=1)
    max_training_tokens: int | None = Field(default=None, strict=True, ge=1)
    max_run_usd: float | None = Field(default=None, ge=0)
    promotion: Literal["auto", "manual"] | None = None
    approval_timeout_days: float | None = Field(default=None, gt=0, le=365)
    _warnings: list[str] = PrivateAttr(default_factory=list)

    @model_validator(mode="before")
    @classmethod
    def _read_old_names(cls, data: Any) -> Any:
        if not isinstance(data, dict) or not any(old in data for old in RENAMED_OVERRIDES):
            return data
        data = dict(data)
        for old, new in RENAMED_OVERRIDES.items():
            if old in data:
                if new in data:
                    raise ValueError(f"{old} is the old name of {new}: give only {new}")
                data[new] = data.pop(old)
        return data

    @property
    def warnings(self) -> list[str]:
        """One sentence per old key name the marker used (it was read as the new one)."""
        return list(self._warnings)

    @classmethod
    def parse_marker(cls, body: bytes) -> RunOverrides:
        """Overrides from a marker body: empty/whitespace -> none; else a JSON object of known keys.
        Raises ``OverridesError`` (and nothing else) with a message a person can act on."""
        try:
            return cls._parse_marker(body)
        except OverridesError:
            raise
        except RecursionError:
            raise OverridesError("the _READY marker's JSON is nested too deeply; write a flat object") from None
        except Exception as error:  # noqa: BLE001 - any other failure is still a marker nobody can use
            raise OverridesError(
                f"the _READY marker cannot be read ({type(error).__name__}: {error}); leave it empty or "
                'write an object such as {"n_epochs": 3}'
            ) from None

    @classmethod
    def _parse_marker(cls, body: bytes) -> RunOverrides:
        text = decode_marker(body).strip() if body else ""
        if not text:
            return cls()
        try:
            data = json.loads(text, parse_float=_finite_float, parse_constant=_no_constant)
        except OverridesError:
            raise
        except ValueError as error:
            raise OverridesError(
                f"the _READY marker is not valid JSON ({error}); leave it empty or write an object "
                f'such as {{"n_epochs": 3}}'
            ) from error
        if not isinstance(data, dict):
            raise OverridesError(f"the _READY marker must hold a JSON object, not {type(data).__name__}")
        given_as = {new: old for old, new in RENAMED_OVERRIDES.items() if old in data}
        try:
            overrides = cls.model_validate(data)
        except ValidationError as error:
            problems = "; ".join(
                f"{'.'.join(given_as.get(str(p), str(p)) for p in e['loc']) or 'marker'}: {e['msg']}"
                for e in error.errors()
            )
            allowed = ", ".join(sorted(cls.model_fields))
            raise OverridesError(
                f"invalid override(s) in the _READY marker: {problems} (allowed keys: {allowed})"
            ) from error
        overrides._warnings = [
            f'the _READY marker key "{old}" is the old name of "{new}" (the setting it overrides): it was '
            f'read as "{new}"; write "{new}" instead'
            for new, old in given_as.items()
        ]
        return overrides

    def values(self) -> dict[str, Any]:
        """The overrides that were set (key -> value)."""
        return self.model_dump(exclude_none=True)

    def apply(self, settings: Settings) -> Settings:
        """``settings`` with these overrides applied (the prompt is not a setting: see ``prompt``)."""
        update = {key: value for key, value in self.values().items() if key != "prompt"}
        return settings.model_copy(update=update) if update else settings
