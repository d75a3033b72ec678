"""The resource's models (``GET /openai/models``, operation ``Models_List`` of the 2024-10-21 authoring
spec): which models this Azure OpenAI resource can fine-tune, checked before anything is uploaded."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from shared.aoai.clients import AzureOpenAIClient


def fine_tunable_models(client: AzureOpenAIClient) -> dict[str, bool]:
    """Every model the resource lists -> whether its ``capabilities.fine_tune`` is true (the spec's
    ``Capabilities.fine_tune``: "whether a model can be used for fine tuning")."""
    found: dict[str, bool] = {}
    for model in client.models.list():
        # ``capabilities`` is Azure's: the SDK's Model does not declare it, so it stays a JSON extra field.
        capabilities = (model.model_extra or {}).get("capabilities")
        found[model.id] = isinstance(capabilities, dict) and bool(capabilities.get("fine_tune"))
    return found


def base_model_problem(client: AzureOpenAIClient, model: str) -> str | None:
    """Why ``model`` cannot be the base of a fine-tuning job on this resource, or None when it can."""
    models = fine_tunable_models(client)
    tunable = sorted(name for name, fine_tune in models.items() if fine_tune)
    if model in models and models[model]:
        return None
    offer = (
        f"models this resource can fine-tune: {', '.join(tunable)}"
        if tunable
        else "this resource lists no model it can fine-tune"
    )
    if model in models:
        return f"base_model {model!r} exists on this Azure OpenAI resource but cannot be fine-tuned ({offer})"
    return f"base_model {model!r} is not a model of this Azure OpenAI resource ({offer})"
