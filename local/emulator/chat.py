"""Chat completions: the models behind deployments answering, for real-time calls and batch lines."""

from __future__ import annotations

import math
import os
import pickle
import uuid
from typing import Any

from local.emulator import datafiles, learners
from local.emulator.constants import BASE_MODELS
from local.emulator.core import EmulatorCore
from local.emulator.errors import ApiError

BATCH_SKUS = ("GlobalBatch", "DataZoneBatch")
DEPLOYMENT_NOT_FOUND = (
    "The API deployment for this resource does not exist. If you created the deployment within the last "
    "5 minutes, please wait a moment and try again."
)


class ChatMixin(EmulatorCore):
    """Which model a deployment serves, and its answers."""

    # -- models behind deployments --
    def _resolve_model(self, name: str) -> dict[str, Any] | None:
        """What a deployment of ``name`` would serve: a base model, or a job's model at an epoch."""
        if name in BASE_MODELS:
            return {"kind": "base", "name": name}
        found = self._succeeded_job_for_model(name)
        if found is None:
            return None
        job, epoch = found
        return {"kind": "fine_tuned", "name": name, "job": job["id"], "epoch": epoch}

    def _load_model(self, job_id: str, epoch: int) -> Any:
        key = (job_id, epoch)
        with self._model_cache_lock:
            if key in self._model_cache:
                self._model_cache.move_to_end(key)
                return self._model_cache[key]
        with open(self.models_dir / job_id / f"epoch-{epoch}.pkl", "rb") as handle:
            model = pickle.load(handle)
        with self._model_cache_lock:
            self._model_cache[key] = model
            while len(self._model_cache) > 16:
                self._model_cache.popitem(last=False)
        return model

    def _base_centroids(self) -> dict[str, Any]:
        import numpy as np

        samples = self.store.list("base_sample")
        version = len(samples)
        cached = self._centroids
        if cached is not None and cached[0] == version:
            return cached[1]
        grouped: dict[str, list[list[float]]] = {}
        for document in samples:
            for label, vectors in document["samples"].items():
                grouped.setdefault(label, []).extend(vectors)
        # A label whose samples are all gone has no centroid (the mean of nothing is NaN, and a NaN
        # distance would make every answer and logprob of the base model NaN).
        centroids = {
            label: np.mean(np.array(vectors, dtype=np.float32), axis=0) for label, vectors in grouped.items() if vectors
        }
        self._centroids = (version, centroids)
        return centroids

    # -- chat completions --
    def _serving_deployment(self, name: str) -> dict[str, Any]:
        deployment = self.store.get("deployment", name)
        if deployment is None or self._deployment_state(deployment)["state"] != "Succeeded":
            raise ApiError(404, "DeploymentNotFound", DEPLOYMENT_NOT_FOUND)
        return deployment

    def chat_completion(self, deployment_name: str, body: Any) -> dict[str, Any]:
        """Answer a chat completion on a real-time deployment."""
        deployment = self._serving_deployment(deployment_name)
        if deployment["sku"]["name"] in BATCH_SKUS:
            raise ApiError(
                400,
                "OperationNotSupported",
                f"The chatCompletion operation does not work with the deployment '{deployment_name}' of type "
                f"{deployment['sku']['name']}: it only serves the Batch API.",
            )
        return self._answer(deployment, body, nonce=None)

    def _answer(self, deployment: dict[str, Any], body: Any, nonce: int | None) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise ApiError(400, "BadRequest", "The request body must be a JSON object.")
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages or not all(isinstance(m, dict) for m in messages):
            raise ApiError(400, "BadRequest", "'messages' must be a non-empty array of message objects.", param="messages")
        temperature = body.get("temperature", 1.0)
        if temperature is None:
            temperature = 1.0
        if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not 0 <= temperature <= 2:
            raise ApiError(400, "BadRequest", "'temperature' must be a number between 0 and 2.", param="temperature")
        want_logprobs, top_logprobs = _logprobs_request(body)
        seed = body.get("seed")
        if nonce is None:
            nonce = seed if isinstance(seed, int) and not isinstance(seed, bool) else int.from_bytes(os.urandom(8), "big")
        image_raw: bytes | None = None
        for message in messages:
            if message.get("role") == "user":
                for part in datafiles.message_images(message.get("content")):
                    try:
                        image_raw = learners.decode_image_url(part.get("url"))
                    except learners.ImageError as exc:
                        raise ApiError(400, "BadRequest", f"Invalid image: {exc}.", param="messages") from None
        image = None
        if image_raw is not None:
            try:
                image = learners.open_image(image_raw, strict=False)
            except learners.ImageError as exc:
                raise ApiError(400, "BadRequest", f"Invalid image data: {exc}.", param="messages") from None
        model = deployment["model_ref"]
        distribution: dict[str, float] = {}
        if model["kind"] == "fine_tuned":
            if image is None:
                answer = "Please send an image; I answer with the category of the image."
            else:
                classifier = self._load_model(model["job"], model["epoch"])
                features = learners.image_features(image)
                answer = learners.predict_fine_tuned(
                    classifier, features, temperature=float(temperature), nonce=nonce
                )
                if want_logprobs:
                    distribution = learners.fine_tuned_distribution(classifier, features)
        else:
            system_text = "\n".join(
                datafiles.message_text(m.get("content")) for m in messages if m.get("role") in ("system", "developer")
            )
            if want_logprobs:
                distribution = learners.base_distribution(
                    self._base_centroids(),
                    learners.parse_categories(system_text),
                    learners.thumbnail_features(image) if image is not None else None,
                )
            answer = learners.base_answer(
                self._base_centroids(),
                learners.parse_categories(system_text),
                learners.thumbnail_features(image) if image is not None else None,
                digest=learners.image_digest(image_raw or system_text.encode()),
                seed=self.config.seed,
                temperature=float(temperature),
                nonce=nonce,
            )
        text_tokens, images = datafiles.count_message_tokens(messages)
        prompt_tokens = text_tokens + datafiles.IMAGE_TOKENS_LOW_DETAIL * images
        completion_tokens = max(1, datafiles.count_text_tokens(answer))
        return {
            "id": "chatcmpl-" + uuid.uuid4().hex[:29],
            "object": "chat.completion",
            "created": int(self.now()),
            "model": deployment["model"]["name"],
            "system_fingerprint": "fp_emulator",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": answer, "refusal": None},
                    "finish_reason": "stop",
                    "logprobs": _logprobs(answer, distribution, top_logprobs) if want_logprobs else None,
                }
            ],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
                "prompt_tokens_details": {"cached_tokens": 0, "image_tokens": datafiles.IMAGE_TOKENS_LOW_DETAIL * images},
            },
        }


def _logprobs_request(body: dict[str, Any]) -> tuple[bool, int]:
    """``(logprobs, top_logprobs)`` of a chat request, refused as Azure refuses them: the 2024-10-21
    inference spec (createChatCompletionRequest) declares ``logprobs`` a nullable boolean and
    ``top_logprobs`` a nullable integer 0..20 that needs ``logprobs: true``."""
    logprobs = body.get("logprobs")
    if logprobs is not None and not isinstance(logprobs, bool):
        raise ApiError(400, "BadRequest", "'logprobs' must be a boolean.", param="logprobs")
    top = body.get("top_logprobs")
    if top is not None:
        if isinstance(top, bool) or not isinstance(top, int) or not 0 <= top <= 20:
            raise ApiError(400, "BadRequest", "'top_logprobs' must be an integer between 0 and 20.", param="top_logprobs")
        if not logprobs:
            raise ApiError(
                400, "BadRequest", "'logprobs' must be set to true if 'top_logprobs' is used.", param="top_logprobs"
            )
    return bool(logprobs), int(top or 0)


def _logprobs(answer: str, distribution: dict[str, float], top: int) -> dict[str, Any]:
    """``choices[].logprobs`` (chatCompletionChoiceLogProbs) for an answer. Emulator simplification: the
    whole answer is one token, with the model's probability of that answer; ``top_logprobs`` lists the
    most likely answers. An answer outside the distribution (off-label) gets the off-label share."""
    def entry(token: str, probability: float) -> dict[str, Any]:
        return {
            "token": token,
            "logprob": math.log(max(probability, 1e-12)),
            "bytes": list(token.encode("utf-8")),
        }

    probability = distribution.get(answer, learners.OFF_LABEL_RATE if distribution else 1.0)
    ranked = sorted(distribution.items(), key=lambda item: -item[1])[:top]
    return {
        "content": [{**entry(answer, probability), "top_logprobs": [entry(t, p) for t, p in ranked]}],
        "refusal": None,
    }
