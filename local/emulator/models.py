"""Models: the base models the resource can fine-tune and every fine-tuned model of a succeeded job."""

from __future__ import annotations

from typing import Any

from local.emulator.constants import BASE_MODELS
from local.emulator.core import EmulatorCore
from local.emulator.errors import not_found

# Fixed dates for the emulated base models (Azure lists each base model's own dates).
_BASE_MODEL_CREATED_AT = 1_744_588_800  # 2025-04-14
_BASE_MODEL_FINE_TUNE_UNTIL = 1_807_660_800  # 2027-04-14
_MODEL_INFERENCE_UNTIL = 1_870_732_800  # 2029-04-14
_CAPABILITIES = {
    "fine_tune": True,
    "inference": True,
    "completion": False,
    "chat_completion": True,
    "embeddings": False,
}


class ModelsMixin(EmulatorCore):
    """The Models API."""

    def list_models(self) -> list[dict[str, Any]]:
        """``Models_List`` (2024-10-21 authoring spec, ``Model``): the base models the resource can fine-tune
        and every fine-tuned model of a succeeded job (fine-tunable again: continuous fine-tuning)."""
        models = [
            {
                "object": "model",
                "id": name,
                "created_at": _BASE_MODEL_CREATED_AT,
                "status": "succeeded",
                "capabilities": dict(_CAPABILITIES),
                "lifecycle_status": "generally-available",
                "deprecation": {"fine_tune": _BASE_MODEL_FINE_TUNE_UNTIL, "inference": _MODEL_INFERENCE_UNTIL},
            }
            for name in BASE_MODELS
        ]
        for job in self.list_jobs(None, 1_000_000)["data"]:
            if job["status"] != "succeeded" or not job.get("fine_tuned_model"):
                continue
            models.append(
                {
                    "object": "model",
                    "id": job["fine_tuned_model"],
                    "created_at": job.get("finished_at", job["created_at"]),
                    "status": "succeeded",
                    "model": job["model"],
                    "fine_tune": job["id"],
                    "capabilities": dict(_CAPABILITIES),
                    "lifecycle_status": "generally-available",
                    "deprecation": {"inference": _MODEL_INFERENCE_UNTIL},
                }
            )
        return models

    def get_model(self, model_id: str) -> dict[str, Any]:
        for model in self.list_models():
            if model["id"] == model_id:
                return model
        raise not_found(f"The model '{model_id}' does not exist.")
