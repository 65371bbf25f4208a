"""Bearer tokens for the control plane: read routes take the read or the write token, write routes the write token.

With no token configured every route is open, which is why the server then binds to 127.0.0.1
only (see `server.py`). Browsers send the token as the `cupola_token` cookie that `/ui/login` sets
(HttpOnly, SameSite=Strict, so another site cannot post a form with it).
"""

from __future__ import annotations

import hmac
from typing import Literal

from fastapi import HTTPException, Request
from pydantic import SecretStr

from cupola.config import Settings

COOKIE = "cupola_token"
Scope = Literal["read", "write"]


def tokens_configured(settings: Settings) -> bool:
    return bool(settings.api_read_token.get_secret_value() or settings.api_write_token.get_secret_value())


def presented_token(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    if header:
        scheme, _, token = header.partition(" ")
        return token.strip() if scheme.lower() == "bearer" else ""
    return request.cookies.get(COOKIE)


def _matches(token: str, expected: SecretStr) -> bool:
    secret = expected.get_secret_value()
    return bool(secret) and hmac.compare_digest(token.encode(), secret.encode())


def valid_token(settings: Settings, token: str) -> bool:
    return _matches(token, settings.api_read_token) or _matches(token, settings.api_write_token)


def check(settings: Settings, request: Request, scope: Scope) -> None:
    """401 without a valid token, 403 for the read token on a write route."""
    if not tokens_configured(settings):
        return
    token = presented_token(request)
    if not token:
        raise HTTPException(
            401,
            "this route needs a bearer token: send `Authorization: Bearer <token>`",
            headers={"WWW-Authenticate": "Bearer"},
        )
    if _matches(token, settings.api_write_token):
        return
    if _matches(token, settings.api_read_token):
        if scope == "read":
            return
        raise HTTPException(403, "the read token cannot change anything: use the write token (CUPOLA_API_WRITE_TOKEN)")
    raise HTTPException(401, "the bearer token is not valid for this server", headers={"WWW-Authenticate": "Bearer"})
