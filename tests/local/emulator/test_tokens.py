"""The emulator accepts only credentials it issued (issue 13, item 6): its key (``api-key``, or sent as a
bearer token) or a bearer token signed with its key that has not expired; anything else is a 401 on the
data-plane and the ARM routes, as Azure refuses a token it cannot verify."""

from __future__ import annotations

import httpx
import pytest

from local.emulator.clients import LocalTokenCredential
from local.emulator.constants import ACCOUNT, API_KEY, RESOURCE_GROUP, SUBSCRIPTION_ID
from local.emulator.tokens import issue_token, token_problem

ARM_SCOPE = "https://management.azure.com/.default"


def _routes(url: str) -> dict[str, tuple[str, dict[str, str]]]:
    arm = (
        f"{url}/subscriptions/{SUBSCRIPTION_ID}/resourceGroups/{RESOURCE_GROUP}"
        f"/providers/Microsoft.CognitiveServices/accounts/{ACCOUNT}/deployments"
    )
    return {
        "data": (f"{url}/openai/files", {"api-version": "2024-10-21"}),
        "models": (f"{url}/openai/models", {"api-version": "2024-10-21"}),
        "arm": (arm, {"api-version": "2024-10-01"}),
    }


def _forged() -> str:
    token, _ = issue_token("not-the-emulator-key", ARM_SCOPE)
    return token


def _tampered() -> str:
    prefix, payload, signature = issue_token(API_KEY, ARM_SCOPE)[0].split(".")
    return ".".join([prefix, payload[:-2] + ("AA" if payload[-2:] != "AA" else "BB"), signature])


@pytest.mark.parametrize("route", ["data", "models", "arm"])
@pytest.mark.parametrize(
    "headers",
    [
        {"Authorization": "Bearer x"},
        {"Authorization": "Bearer eyJhbGciOiJSUzI1NiJ9.eyJhdWQiOiJ4In0.c2ln"},  # a JWT-shaped stranger
        {"Authorization": f"Bearer {_forged()}"},
        {"Authorization": f"Bearer {_tampered()}"},
        {"Authorization": f"Bearer {issue_token(API_KEY, ARM_SCOPE, lifetime_seconds=-5)[0]}"},  # expired
        {"api-key": "wrong-key"},
    ],
    ids=["any-string", "foreign-jwt", "forged", "tampered", "expired", "wrong-key"],
)
def test_credentials_the_emulator_did_not_issue_are_refused(emulator, route, headers):
    url, params = _routes(emulator.url)[route]
    assert httpx.get(url, params=params, headers=headers).status_code == 401


@pytest.mark.parametrize("route", ["data", "models", "arm"])
@pytest.mark.parametrize(
    "headers",
    [
        {"api-key": API_KEY},
        {"Authorization": f"Bearer {API_KEY}"},
        {"Authorization": f"Bearer {LocalTokenCredential().get_token(ARM_SCOPE).token}"},
    ],
    ids=["key", "key-as-bearer", "issued-token"],
)
def test_its_key_and_its_own_tokens_are_accepted(emulator, route, headers):
    url, params = _routes(emulator.url)[route]
    assert httpx.get(url, params=params, headers=headers).status_code == 200


def test_token_problems_are_named():
    assert token_problem("x", API_KEY) == "the token was not issued by this emulator"
    assert token_problem(_forged(), API_KEY) == "the token's signature is invalid"
    assert token_problem(issue_token(API_KEY, ARM_SCOPE, -1)[0], API_KEY) == "the token has expired"
    assert token_problem(LocalTokenCredential().get_token(ARM_SCOPE).token, API_KEY) is None
