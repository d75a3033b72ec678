"""Descriptions of Azure OpenAI error bodies (no server needed)."""

from __future__ import annotations

from shared.aoai.errors import describe_error_body


def test_error_bodies_keep_the_service_message() -> None:
    body = {"error": {"code": "InvalidPayload", "message": "The file has 3 errors.", "innererror": {"code": "x"}}}
    assert describe_error_body(body, 400) == "HTTP 400 InvalidPayload: The file has 3 errors. (inner: x)"
    assert describe_error_body(body["error"]) == "InvalidPayload: The file has 3 errors. (inner: x)"
    assert describe_error_body("upstream timeout", 504) == "HTTP 504: upstream timeout"


def test_error_bodies_do_not_repeat_a_status_code() -> None:
    body = {"error": {"code": "429", "message": "Requests to the API have exceeded the call rate limit."}}
    assert describe_error_body(body, 429) == "HTTP 429: Requests to the API have exceeded the call rate limit."
