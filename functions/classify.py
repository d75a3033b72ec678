"""HTTP ``POST /api/classify/{dataset}[?version=V]``: the image bytes in the body, the label as JSON."""

from __future__ import annotations

import json
from typing import Any

import azure.functions as func

bp = func.Blueprint()


def _json(status: int, body: dict[str, Any]) -> func.HttpResponse:
    return func.HttpResponse(json.dumps(body, indent=2), status_code=status, mimetype="application/json")


@bp.function_name("classify")
@bp.route(route="classify/{dataset}", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
def classify(req: func.HttpRequest) -> func.HttpResponse:
    """Classify the image in the body with the dataset's production model (or ``?version=``'s), with
    the preprocessing of training. 400/413/415 for bad input, 404 when there is no model to ask."""
    from shared.prediction import MAX_IMAGE_BYTES, PredictionError
    from shared.prediction import classify as classify_image
    from shared.settings import load_settings
    from shared.telemetry import invocation, note

    declared = req.headers.get("Content-Length")
    if declared and declared.isdigit() and int(declared) > MAX_IMAGE_BYTES:
        error = PredictionError(
            f"the body is {int(declared) / 1e6:.1f} MB; the limit is {MAX_IMAGE_BYTES / 1e6:.0f} MB",
            status=413,
            code="too_large",
        )
        return _json(error.status, error.to_json())
    body = req.get_body() or b""
    if not body:
        return _json(400, {"error": {"code": "empty", "message": "send the image bytes as the request body"}})
    settings = load_settings()
    dataset = req.route_params.get("dataset", "")
    with invocation("classify", settings, dataset=dataset, version=req.params.get("version") or None):
        try:
            prediction = classify_image(settings, dataset, body, req.params.get("version") or None)
        except PredictionError as error:
            note(status=error.status, error=error.code)
            return _json(error.status, error.to_json())
    return _json(200, prediction.to_json())
