"""Shared-secret checks (D4): ``X-API-TOKEN`` header, or ``?token=`` on WebSocket upgrades."""

from __future__ import annotations

import hmac

from starlette.requests import HTTPConnection

__all__ = ["TOKEN_HEADER", "TOKEN_QUERY", "is_authorized"]

TOKEN_HEADER = "x-api-token"
TOKEN_QUERY = "token"


def is_authorized(conn: HTTPConnection, expected: str | None, *, allow_query: bool = False) -> bool:
    """Whether the request carries the shared secret (always true when none is configured)."""
    if expected is None:
        return True
    given = conn.headers.get(TOKEN_HEADER)  # Starlette matches header names case-insensitively
    if given is None and allow_query:
        given = conn.query_params.get(TOKEN_QUERY)
    if given is None:
        return False
    return hmac.compare_digest(given.encode(), expected.encode())
