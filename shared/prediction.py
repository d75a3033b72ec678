"""Classify images with a dataset's model, preprocessed exactly as its training images were.

The image goes through ``shared.conversion.images.normalise_image`` (EXIF orientation, RGB, longest side
and JPEG quality) with the settings recorded in the version's ``manifest.json``, and the request carries
that version's system prompt and the same ``detail``: the messages are the training example's messages
without the answer (``shared.conversion.examples.example_messages``). The answer is mapped to a label with
the evaluator's matcher, so ``unknown`` here means what off-label means in the reports.

Used by ``visiontune predict`` and the ``classify`` HTTP function; both only parse input and print or
serialise ``Prediction``.
"""

from __future__ import annotations

import base64
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from shared.aoai.errors import describe_openai_error
from shared.aoai.realtime_scoring import ChatAnswer, ask_chat
from shared.conversion.examples import example_messages
from shared.conversion.images import ImageSettings, normalise_image
from shared.errors import VisiontuneError
from shared.evaluation.answers import match_answer
from shared.layout import validate_dataset_name
from shared.pipeline.context import Pipeline
from shared.settings import Settings

if TYPE_CHECKING:  # pragma: no cover
    from shared.aoai.clients import AzureOpenAIClient
    from shared.pipeline.documents import ProductionRecord

UNKNOWN_LABEL = "unknown"
# The largest image accepted by the classify endpoint and `visiontune predict`. Our choice, well under
# the Functions HTTP trigger's 100 MB request limit (Microsoft Learn, "Azure Functions HTTP trigger",
# Limits): a phone photo is 3-12 MB, and the whole body is held in memory while it is decoded.
MAX_IMAGE_BYTES = 20 * 1024 * 1024
# Enough for any label the prompt lists; an answer cut off by it is off-label anyway.
ANSWER_MAX_TOKENS = 20
# Rejection codes of normalise_image -> HTTP status of the classify endpoint.
_STATUS_FOR_CODE = {
    "empty": 400,
    "not_an_image": 415,
    "unsupported_format": 415,
    "decompression_bomb": 413,
    "too_large": 413,
    "truncated": 400,
    "corrupt": 400,
}


class PredictionError(VisiontuneError):
    """The request cannot be answered; ``status`` is the HTTP status that says why (4xx: the caller's
    input or the dataset's state; 502/503: the model service), ``code`` a stable machine-readable name."""

    def __init__(self, message: str, *, status: int, code: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code

    def to_json(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": str(self)}}


@dataclass(frozen=True)
class ModelTarget:
    """The deployment that answers for ``dataset``, and the version whose preprocessing it needs."""

    dataset: str
    version: str
    deployment: str
    model: str
    source: str  # "production" or "version"
    labels: tuple[str, ...]
    prompt: str
    max_side: int
    quality: int
    max_pixels: int

    def image_settings(self) -> ImageSettings:
        return ImageSettings(max_side=self.max_side, quality=self.quality, max_pixels=self.max_pixels)


@dataclass
class Prediction:
    """One image's answer. ``label`` is a label of the dataset or ``unknown``; ``confidence`` the
    probability of the answer from the deployment's logprobs (None when it returns none)."""

    source: str
    label: str | None = None
    answer: str | None = None
    confidence: float | None = None
    latency_ms: float | None = None  # the model call's round trip
    total_ms: float | None = None  # preprocessing + the call
    dataset: str | None = None
    version: str | None = None
    deployment: str | None = None
    image: dict[str, Any] = field(default_factory=dict)  # source format/size and what was sent
    error: dict[str, Any] | None = None  # {"code", "message", "status"} when this image failed

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def resolve_target(pipeline: Pipeline, dataset: str, version: str | None = None) -> ModelTarget:
    """The production model of ``dataset`` (``version`` None) or ``version``'s own deployment, with the
    preprocessing recorded in that version's manifest. ``version`` may be a unique prefix.
    Raises ``PredictionError`` (404/409) when there is no such model to ask."""
    try:
        validate_dataset_name(dataset)
    except ValueError as exc:
        raise PredictionError(str(exc), status=400, code="invalid_dataset") from None
    production = pipeline.production(dataset)
    if version is None:
        if production is None or not production.deployment:
            raise PredictionError(
                f"dataset {dataset!r} has no production model yet: push it and wait for a promotion "
                "(`visiontune status`), or pass a version whose candidate is still deployed",
                status=404,
                code="no_production_model",
            )
        resolved, deployment, model, source = production.version, production.deployment, production.model, "production"
    else:
        resolved, deployment, model, source = _version_deployment(pipeline, dataset, version, production)
    manifest = pipeline.manifest(dataset, resolved)
    if manifest is None:
        raise PredictionError(
            f"the manifest of {dataset}/{resolved} is missing, so its preprocessing is unknown",
            status=409,
            code="manifest_missing",
        )
    return ModelTarget(
        dataset=dataset,
        version=resolved,
        deployment=deployment,
        model=model,
        source=source,
        labels=tuple(manifest.labels),
        prompt=manifest.prompt,
        max_side=manifest.image.max_side,
        quality=manifest.image.quality,
        max_pixels=manifest.image.max_pixels,
    )


def _version_deployment(
    pipeline: Pipeline, dataset: str, version: str, production: ProductionRecord | None
) -> tuple[str, str, str, str]:
    runs = [r for r in pipeline.store.list(dataset) if r.version.startswith(version)]
    exact = [r for r in runs if r.version == version]
    if exact:
        runs = exact
    if not runs:
        raise PredictionError(f"dataset {dataset!r} has no version {version!r}", status=404, code="no_such_version")
    if len(runs) > 1:
        raise PredictionError(
            f"version prefix {version!r} matches {len(runs)} versions of {dataset!r}: give more characters",
            status=400,
            code="ambiguous_version",
        )
    run = runs[0]
    if production is not None and production.version == run.version and production.deployment:
        return run.version, production.deployment, production.model, "production"
    live = run.live_deployments()
    ready = [d for d in live if d.ready_at is not None]
    if not ready:
        raise PredictionError(
            f"{dataset}/{run.version} ({run.state.value}) has no deployed model to ask: candidates are "
            "deleted when rejected or retired",
            status=409,
            code="not_deployed",
        )
    return run.version, ready[-1].name, ready[-1].model, "version"


def prepare_image(data: bytes, target: ModelTarget) -> tuple[bytes, dict[str, Any]]:
    """``data`` normalised as training normalised it: (JPEG bytes, a description of source and result).
    Raises ``PredictionError`` (400/413/415) for input that is not a usable image."""
    if len(data) > MAX_IMAGE_BYTES:
        raise PredictionError(
            f"the image is {len(data) / 1e6:.1f} MB; the limit is {MAX_IMAGE_BYTES / 1e6:.0f} MB",
            status=413,
            code="too_large",
        )
    result = normalise_image(data, target.image_settings())
    if not result.ok:
        code = result.code or "corrupt"
        raise PredictionError(result.reason or code, status=_STATUS_FOR_CODE.get(code, 400), code=code)
    return result.jpeg, {  # type: ignore[return-value]
        "source_format": result.source_format,
        "source_size": list(result.source_size),
        "sent_size": [result.width, result.height],
        "sent_bytes": len(result.jpeg or b""),
    }


def request_messages(prompt: str | None, jpeg: bytes) -> list[dict[str, Any]]:
    """The chat messages of a training example without its answer (no system message when ``prompt`` is
    None: only for measuring what leaving it out costs)."""
    url = "data:image/jpeg;base64," + base64.b64encode(jpeg).decode("ascii")
    messages = example_messages(prompt or "", "", url)[:2]
    return messages if prompt is not None else messages[1:]


def ask_model(
    client: AzureOpenAIClient, target: ModelTarget, messages: list[dict[str, Any]]
) -> tuple[str, ChatAnswer]:
    """Ask ``target``'s deployment (with logprobs); (label or ``unknown``, the ``ChatAnswer``).
    Raises ``PredictionError`` 502/503 when the model service fails after the SDK's retries."""
    import openai

    try:
        reply = ask_chat(client, target.deployment, messages, max_tokens=ANSWER_MAX_TOKENS, logprobs=True)
    except openai.NotFoundError as exc:
        raise PredictionError(
            f"deployment {target.deployment} is gone: {describe_openai_error(exc)}", status=503, code="deployment_gone"
        ) from None
    except openai.OpenAIError as exc:
        status = getattr(exc, "status_code", None)
        raise PredictionError(
            f"the model service failed: {describe_openai_error(exc)}",
            status=503 if status in (429, None) or (status or 0) >= 500 else 502,
            code="model_error",
        ) from None
    label = match_answer(reply.answer, target.labels) or UNKNOWN_LABEL
    return label, reply


class Predictor:
    """Classifies images for one dataset and (optional) version. Resolves the target once per
    ``refresh_seconds`` (production may change), and keeps the OpenAI client across calls."""

    def __init__(self, settings: Settings, dataset: str, version: str | None = None, *, refresh_seconds: float = 30.0) -> None:
        self.settings = settings
        self.dataset = dataset
        self.version = version
        self.pipeline = Pipeline(settings)
        self.refresh_seconds = refresh_seconds
        self._target: ModelTarget | None = None
        self._resolved_at = 0.0
        self._lock = threading.Lock()

    def target(self) -> ModelTarget:
        with self._lock:
            if self._target is None or time.monotonic() - self._resolved_at > self.refresh_seconds:
                self._target = resolve_target(self.pipeline, self.dataset, self.version)
                self._resolved_at = time.monotonic()
            return self._target

    def predict(self, data: bytes, source: str = "") -> Prediction:
        """Classify one image. Raises ``PredictionError`` for bad input, a missing model or a failed call."""
        started = time.perf_counter()
        target = self.target()
        jpeg, image = prepare_image(data, target)
        label, reply = ask_model(self.pipeline.openai, target, request_messages(target.prompt, jpeg))
        return Prediction(
            source=source,
            label=label,
            answer=reply.answer,
            confidence=reply.answer_probability,
            latency_ms=round(reply.latency_ms, 1),
            total_ms=round((time.perf_counter() - started) * 1000.0, 1),
            dataset=target.dataset,
            version=target.version,
            deployment=target.deployment,
            image=image,
        )

    def predict_many(self, items: Sequence[tuple[str, bytes]], *, concurrency: int = 4) -> list[Prediction]:
        """Classify ``(source, bytes)`` pairs, in order. A bad image becomes a Prediction with ``error``;
        the rest still go through. A missing model (no production, no deployment) raises for all."""
        self.target()  # fail once, early, when there is nothing to ask

        def one(item: tuple[str, bytes]) -> Prediction:
            source, data = item
            try:
                return self.predict(data, source)
            except PredictionError as exc:
                return Prediction(
                    source=source,
                    dataset=self.dataset,
                    error={"code": exc.code, "message": str(exc), "status": exc.status},
                )

        with ThreadPoolExecutor(max_workers=max(1, min(concurrency, len(items)))) as pool:
            return list(pool.map(one, items))


_predictors: dict[tuple[Any, ...], Predictor] = {}
_predictors_lock = threading.Lock()


def classify(settings: Settings, dataset: str, data: bytes, version: str | None = None) -> Prediction:
    """Classify one image for the HTTP function (a ``Predictor`` per dataset/version is kept warm).
    Raises ``PredictionError``."""
    key = (settings.model_dump_json(), dataset, version)
    with _predictors_lock:
        predictor = _predictors.get(key)
        if predictor is None:
            predictor = _predictors[key] = Predictor(settings, dataset, version)
    return predictor.predict(data, source="request")
