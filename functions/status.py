"""HTTP ``GET /api/status[/{dataset}]``: the runs and production models as JSON."""

from __future__ import annotations

import json

import azure.functions as func

bp = func.Blueprint()


@bp.function_name("status")
@bp.route(route="status/{dataset?}", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
def status(req: func.HttpRequest) -> func.HttpResponse:
    """Every run (or one dataset's) with its state, scores and the production model."""
    from shared.pipeline.status import collect_status
    from shared.settings import load_settings
    from shared.telemetry import invocation

    settings = load_settings()
    with invocation("status", settings, dataset=req.route_params.get("dataset")):
        body = collect_status(settings, req.route_params.get("dataset"))
    return func.HttpResponse(json.dumps(body, indent=2), mimetype="application/json")
