"""Turn Azure OpenAI (data plane) and ARM (control plane) errors into messages a person understands.

Both keep the service's own code and message: the run records them as the failure's detail, so the
report says what Azure said, not what our code guessed.
"""

from __future__ import annotations

from typing import Any

from shared.errors import VisiontuneError


class AoaiError(VisiontuneError, RuntimeError):
    """An Azure OpenAI call failed in a way the caller should record (the message is human-readable)."""


def _error_dict(body: object) -> dict[str, Any] | None:
    if isinstance(body, dict):
        inner = body.get("error")
        return inner if isinstance(inner, dict) else body
    return None


def describe_error_body(body: object, status: int | None = None) -> str:
    """``"HTTP 400 invalid_request_error: <message> (inner: ResponsibleAIPolicyViolation)"`` from an
    Azure / OpenAI error body (``{"error": {...}}`` or the inner object itself); else the raw text."""
    prefix = f"HTTP {status}" if status is not None else ""
    error = _error_dict(body)
    if error is None:
        text = body.decode("utf-8", "replace") if isinstance(body, bytes) else str(body or "").strip()
        return f"{prefix}: {text[:500]}" if prefix and text else (prefix or text or "unknown error")
    code = error.get("code") or error.get("type")
    message = str(error.get("message") or "").strip() or "(no message)"
    inner = error.get("innererror") or error.get("inner_error")
    inner_code = inner.get("code") if isinstance(inner, dict) else None
    # Azure repeats the status as the code on throttling ("code": "429"): say it once.
    show_code = str(code) if code and str(code) != str(status) else ""
    parts = [p for p in (prefix, show_code) if p]
    head = " ".join(parts)
    text = f"{head}: {message}" if head else message
    if inner_code and inner_code != code:
        text += f" (inner: {inner_code})"
    return text


def describe_openai_error(exc: BaseException) -> str:
    """A one-line, human-readable description of an ``openai`` SDK exception (or any exception)."""
    import openai

    if isinstance(exc, openai.APIStatusError):
        text = describe_error_body(exc.body if exc.body is not None else exc.message, exc.status_code)
        return text if exc.status_code != 429 else text + " (rate limited; retries exhausted)"
    if isinstance(exc, openai.APITimeoutError):
        return f"request timed out ({exc.request.method} {exc.request.url.path})"
    if isinstance(exc, openai.APIConnectionError):
        cause = f": {exc.__cause__}" if exc.__cause__ else ""
        return f"could not reach Azure OpenAI ({exc.request.url.host}){cause}"
    return f"{type(exc).__name__}: {exc}"


def describe_azure_error(exc: BaseException) -> str:
    """A one-line description of an ``azure-core`` exception from the management (ARM) API."""
    from azure.core.exceptions import HttpResponseError

    if isinstance(exc, HttpResponseError):
        status = f"HTTP {exc.status_code}" if exc.status_code is not None else "HTTP error"
        if exc.error is not None and (exc.error.code or exc.error.message):
            return f"{status} {exc.error.code or ''}: {exc.error.message}".replace("  ", " ")
        return f"{status}: {exc.reason or exc.message}"
    return f"{type(exc).__name__}: {exc}"


def azure_error_code(exc: BaseException) -> str | None:
    """The ARM error code (e.g. ``BadRequestForDependentService``) of an azure-core exception, if any."""
    error = getattr(exc, "error", None)
    code = getattr(error, "code", None)
    return str(code) if code else None
