"""The blob clients' retry policy (heavy: imports the Storage SDK; ``clients`` imports it lazily).

The Storage SDK's ``ExponentialRetry`` waits ``initial_backoff + increment_base ** count`` seconds, jittered by
``random_jitter_range``, before every retry: 15 to 21 s before the first one with its defaults (``count`` is
1 then). That suits an answer asking the client to slow down (408, 429 ``ServerBusy``, 500, 503). It is the
wrong wait after a connection failure that got no answer at all, typically a pooled keep-alive connection
the server closed just as a request went out on it (Azurite closes idle ones after 5 s, Azure's front ends
and load balancers after longer). That says nothing about the service's load, yet held a conversion for
19 s in ``make bench-intake``. So: a connection dropped or refused without an answer is retried at once
the first time (within 50 ms, on a new connection: what urllib3 itself does for a stale pooled connection),
then after 0.25-0.5 s, doubling; an answer or a timeout (a server too slow to answer may be overloaded)
waits the SDK's backoff. Learn, "Implement a retry policy using the Azure Storage client library for Python": the policy
"should always be tuned to match ... the nature of the failure".
"""

from __future__ import annotations

import logging
import random
from typing import Any

from azure.core.exceptions import ServiceRequestTimeoutError, ServiceResponseTimeoutError
from azure.storage.blob import ExponentialRetry

log = logging.getLogger(__name__)

FIRST_CONNECTION_RETRY_SECONDS = 0.05  # at most, before the first retry after a connection failure
CONNECTION_RETRY_SECONDS = 0.5  # at most, before the second; doubles each time after


class StorageRetry(ExponentialRetry):
    """``ExponentialRetry`` (its defaults) after an answer or a timeout; an immediate retry, then short
    jittered waits, after a connection that failed with no answer. Every retry is logged at WARNING with
    the request, the cause and the wait."""

    def get_backoff_time(self, settings: dict[str, Any]) -> float:
        history = settings.get("history") or []
        last = history[-1] if history else None
        attempt = max(1, int(settings.get("count", 1)))
        if (
            last is not None
            and last.http_response is None
            and last.error is not None
            and not isinstance(last.error, ServiceRequestTimeoutError | ServiceResponseTimeoutError)
        ):
            if attempt == 1:
                seconds = random.uniform(0.0, FIRST_CONNECTION_RETRY_SECONDS)
            else:
                ceiling = CONNECTION_RETRY_SECONDS * 2 ** (attempt - 2)
                seconds = random.uniform(ceiling / 2, ceiling)
            cause = f"{type(last.error).__name__}: {last.error}"
        else:
            seconds = super().get_backoff_time(settings)
            cause = f"HTTP {last.http_response.status_code}" if last is not None and last.http_response is not None else "?"
        if last is not None:
            url = str(getattr(last.http_request, "url", "")).split("?", 1)[0]  # never the SAS
            log.warning(
                "blob request %s %s failed (%s); retry %d in %.1f s",
                getattr(last.http_request, "method", "?"), url, str(cause)[:300], attempt, seconds,
            )  # fmt: skip
        return seconds


def storage_retry_policy(retries: int) -> StorageRetry:
    """The policy for every blob client: ``retries`` retries at most."""
    return StorageRetry(retry_total=retries)
