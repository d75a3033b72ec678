"""Bearer tokens the emulator issues and verifies, so it accepts only credentials it issued, like Azure
(which accepts only Entra ID tokens it can verify, or the resource's key).

A token is ``vtl1.<payload>.<signature>``: the payload (base64url JSON) names the scope (``aud``) and the
expiry (``exp``, Unix seconds); the signature is HMAC-SHA256 of the payload with the emulator's API key.
``LocalTokenCredential`` (local/emulator/clients.py) hands them out. The API key itself sent as a bearer
token is accepted too: the visiontune client sends it that way against the local stack.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time

PREFIX = "vtl1"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def issue_token(key: str, scope: str, lifetime_seconds: float = 3600.0) -> tuple[str, int]:
    """A token for ``scope`` signed with ``key``, and its expiry (Unix seconds)."""
    expires = int(time.time() + lifetime_seconds)
    payload = _b64(json.dumps({"aud": scope, "exp": expires}, separators=(",", ":")).encode())
    signature = _b64(hmac.new(key.encode(), payload.encode(), hashlib.sha256).digest())
    return f"{PREFIX}.{payload}.{signature}", expires


def token_problem(token: str, key: str, now: float | None = None) -> str | None:
    """Why ``token`` is not valid for the emulator whose key is ``key`` (None: it is valid)."""
    if hmac.compare_digest(token.encode(), key.encode()):
        return None
    parts = token.split(".")
    if len(parts) != 3 or parts[0] != PREFIX:
        return "the token was not issued by this emulator"
    expected = _b64(hmac.new(key.encode(), parts[1].encode(), hashlib.sha256).digest())
    if not hmac.compare_digest(expected.encode(), parts[2].encode()):
        return "the token's signature is invalid"
    try:
        claims = json.loads(_unb64(parts[1]))
        expires = float(claims["exp"])
    except (ValueError, KeyError, TypeError):
        return "the token's claims are unreadable"
    if expires <= (time.time() if now is None else now):
        return "the token has expired"
    return None
