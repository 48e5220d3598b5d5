"""Shared-secret checks (D4): ``X-API-TOKEN`` header, or ``?token=`` on WebSocket upgrades."""

from __future__ import annotations

import hmac

from starlette.requests import HTTPConnection

__all__ = ["TOKEN_HEADER", "TOKEN_QUERY", "is_authorized", "token_matches"]

TOKEN_HEADER = "x-api-token"
TOKEN_QUERY = "token"


def token_matches(given: bytes | str | None, expected: str | None) -> bool:
    """Whether ``given`` is the shared secret, compared in constant time (true when none is set)."""
    if expected is None:
        return True
    if given is None:
        return False
    if isinstance(given, str):
        given = given.encode()
    return hmac.compare_digest(given, expected.encode())


def is_authorized(conn: HTTPConnection, expected: str | None, *, allow_query: bool = False) -> bool:
    """Whether the request carries the shared secret (always true when none is configured)."""
    if expected is None:
        return True
    given = conn.headers.get(TOKEN_HEADER)  # Starlette matches header names case-insensitively
    if given is None and allow_query:
        given = conn.query_params.get(TOKEN_QUERY)
    return token_matches(given, expected)
