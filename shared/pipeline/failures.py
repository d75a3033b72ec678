"""Which errors are worth retrying on a later tick, how long to wait, and how to say what happened.

The client layer (``shared.aoai``) wraps SDK exceptions in its own errors with the SDK exception as the
cause; the classification walks that chain. The SDKs already retried inside the call (honouring
Retry-After), so what arrives here is what those retries could not fix.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

from shared.aoai.errors import AoaiError, describe_azure_error, describe_openai_error
from shared.errors import VisiontuneError
from shared.pipeline.models import RetryState, Run, utcnow
from shared.settings import Settings

MAX_BACKOFF_SECONDS = 30 * 60.0
# Deployments right after training fail transiently for a while (public code retries 12 times).
STAGE_MIN_ATTEMPTS = {"deploy": 12, "promote": 12}


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def is_transient(exc: BaseException) -> bool:
    """True for errors that usually pass: throttling, 5xx, timeouts, connection failures, Azure's
    ``BadRequestForDependentService``, a blob changed under us, a deployment not reachable yet."""
    import openai
    from azure.core.exceptions import HttpResponseError, ServiceRequestError, ServiceResponseError

    for error in _chain(exc):
        if isinstance(error, VisiontuneError) and error.transient:
            return True
        if isinstance(
            error,
            (
                openai.APIConnectionError,
                openai.APITimeoutError,
                openai.RateLimitError,
                openai.InternalServerError,
            ),
        ):
            return True
        if (
            isinstance(error, openai.APIStatusError)
            and error.status_code in (408, 409, 429)
            or (isinstance(error, openai.APIStatusError) and error.status_code >= 500)
        ):
            return True
        if isinstance(error, (ServiceRequestError, ServiceResponseError, ConnectionError, TimeoutError)):
            return True
        if (
            isinstance(error, HttpResponseError)
            and error.status_code is not None
            and (error.status_code in (408, 429) or error.status_code >= 500)
        ):
            return True
    return False


def retry_after_seconds(exc: BaseException) -> float | None:
    """The service's Retry-After (seconds) on the error or its causes, if it sent one."""
    for error in _chain(exc):
        response = getattr(error, "response", None)
        headers = getattr(response, "headers", None)
        if not headers:
            continue
        for name in ("retry-after-ms", "Retry-After", "retry-after"):
            value = headers.get(name)
            if value is None:
                continue
            try:
                seconds = float(value)
            except ValueError:
                continue
            return seconds / 1000.0 if name == "retry-after-ms" else seconds
    return None


def describe(exc: BaseException) -> str:
    """The error in one line, keeping the service's own message."""
    if isinstance(exc, AoaiError):
        return str(exc)
    import openai

    if isinstance(exc, openai.APITimeoutError):
        return (
            f"Azure OpenAI did not answer in time ({exc.request.url.host}: no connection or no answer within "
            "VISIONTUNE_AOAI_CONNECT_TIMEOUT / VISIONTUNE_AOAI_READ_TIMEOUT, retries included)"
        )
    if isinstance(exc, openai.OpenAIError):
        return describe_openai_error(exc)
    from azure.core.exceptions import AzureError, ServiceResponseError

    if isinstance(exc, ServiceResponseError) and "timed out" in str(exc).lower():
        return (
            "the Azure endpoint accepted the connection but did not answer within VISIONTUNE_AOAI_READ_TIMEOUT "
            f"(retries included): {exc}"
        )

    if isinstance(exc, AzureError):
        return describe_azure_error(exc)
    return f"{type(exc).__name__}: {exc}"


def record_step_error(run: Run, stage: str, exc: BaseException, settings: Settings) -> bool:
    """Record ``exc`` on the run. A transient error schedules a retry with exponential backoff (at least the
    service's Retry-After) until the stage's attempts are used up; anything else, or the last attempt,
    fails the run with the stage and the message. Returns True when the run failed."""
    message = describe(exc)
    if is_transient(exc):
        attempts = (run.retry.attempts if run.retry and run.retry.stage == stage else 0) + 1
        limit = max(settings.max_step_attempts, STAGE_MIN_ATTEMPTS.get(stage, 0))
        if attempts < limit:
            delay = min(settings.retry_base_seconds * 2 ** (attempts - 1), MAX_BACKOFF_SECONDS)
            delay = max(delay, retry_after_seconds(exc) or 0.0)
            run.retry = RetryState(
                stage=stage,
                attempts=attempts,
                next_attempt_at=utcnow() + timedelta(seconds=delay),
                last_error=message,
            )
            run.note(f"{stage}: attempt {attempts} of {limit} failed, retrying in {delay:.0f} s: {message}")
            return False
        message = f"{message} (gave up after {attempts} attempts)"
    run.fail(stage, message)
    return True


def retry_due(run: Run) -> bool:
    """False while the run waits for a scheduled retry."""
    return run.retry is None or run.retry.next_attempt_at is None or run.retry.next_attempt_at <= utcnow()
