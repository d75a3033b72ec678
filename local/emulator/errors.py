"""Azure-shaped errors: ``{"error": {"code": ..., "message": ...}}`` with the right HTTP status."""

from __future__ import annotations

from typing import Any

ACCESS_DENIED_MESSAGE = (
    "Access denied due to invalid subscription key or wrong API endpoint. Make sure to provide a valid key "
    "for an active subscription and use a correct regional API endpoint for your resource."
)


class ApiError(Exception):
    """An error answer: HTTP ``status`` with an Azure error body; ``headers`` are added (e.g. Retry-After)."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        param: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.param = param
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.param is not None:
            error["param"] = self.param
        return {"error": error}


def bad_request(message: str, *, code: str = "invalidPayload", param: str | None = None) -> ApiError:
    return ApiError(400, code, message, param=param)


def quota_exceeded(message: str) -> ApiError:
    """400 ``quotaExceeded``: a quota of the resource (fine-tuning files, their bytes, active jobs) is used up."""
    return ApiError(400, "quotaExceeded", message)


def not_found(message: str, *, code: str = "notFound") -> ApiError:
    return ApiError(404, code, message)
