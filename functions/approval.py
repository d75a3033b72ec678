"""HTTP ``POST /api/approve/{dataset}/{version}`` and ``POST /api/reject/{dataset}/{version}`` (body
``{"reason": "...", "by": "..."}``): decide on a candidate waiting in ``awaiting_approval``."""

from __future__ import annotations

import json

import azure.functions as func

bp = func.Blueprint()


def _decide(req: func.HttpRequest, approved: bool) -> func.HttpResponse:
    from shared.pipeline.approval import ApprovalError, decide
    from shared.settings import load_settings

    try:
        body = json.loads(req.get_body() or b"{}")
        if not isinstance(body, dict):
            raise ValueError("the body must be a JSON object")
    except ValueError as error:
        message = json.dumps({"error": f"invalid JSON body: {error}"})
        return func.HttpResponse(message, status_code=400, mimetype="application/json")
    try:
        result = decide(
            load_settings(),
            req.route_params["dataset"],
            req.route_params["version"],
            approved=approved,
            by=str(body.get("by") or "http"),
            reason=str(body.get("reason") or ""),
        )
    except ApprovalError as error:
        return func.HttpResponse(json.dumps({"error": str(error)}), status_code=error.status, mimetype="application/json")
    return func.HttpResponse(json.dumps(result.__dict__, indent=2), mimetype="application/json")


@bp.function_name("approve")
@bp.route(route="approve/{dataset}/{version}", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
def approve(req: func.HttpRequest) -> func.HttpResponse:
    """Promote a candidate that waits for approval."""
    return _decide(req, True)


@bp.function_name("reject")
@bp.route(route="reject/{dataset}/{version}", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
def reject(req: func.HttpRequest) -> func.HttpResponse:
    """Reject a candidate that waits for approval (its deployment is deleted); ``reason`` is required."""
    return _decide(req, False)
