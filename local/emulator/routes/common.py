"""Request helpers shared by the route modules."""

from __future__ import annotations

import json
from typing import Any

from fastapi import Request

from local.emulator.errors import bad_request


async def json_body(request: Request) -> Any:
    """The request's JSON body (None when empty); a 400 when it is not JSON."""
    raw = await request.body()
    try:
        return json.loads(raw) if raw else None
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise bad_request("The request body is not valid JSON.") from None


def page_limit(request: Request, default: int, maximum: int = 100) -> int:
    """The ``limit`` query parameter, clamped to 1..``maximum``."""
    raw = request.query_params.get("limit")
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise bad_request("'limit' must be an integer.", param="limit") from None
    if not -(2**31) <= value < 2**31:
        raise bad_request("'limit' must be a 32-bit integer.", param="limit")
    return max(1, min(maximum, value))
