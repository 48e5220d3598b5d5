"""Keep the shared secret out of server logs.

The WebSocket URL may carry the secret as ``?token=`` (D4), and uvicorn logs request lines, query
string included, at INFO. This filter masks the value before any handler sees the record: the
value of every query parameter whose name, decoded as the server decodes it for the token check
(percent-encoding, ``+``), is ``token`` in any case. So ``?%74oken=...``, ``?t%6Fken=...``, each
of ``?token=a&token=b`` and the refused ``?TOKEN=...`` are all masked.
"""

from __future__ import annotations

import logging
import re
from urllib.parse import unquote_plus

from sipgate_ai_flow.server.auth import TOKEN_QUERY

__all__ = ["install_token_redaction"]

_QUERY = re.compile(r"\?[^\s\"']+")
_SERVER_LOGGERS = ("uvicorn.error", "uvicorn.access", "hypercorn.access", "hypercorn.error")


def _mask(query: re.Match[str]) -> str:
    pairs = query.group()[1:].split("&")
    for n, pair in enumerate(pairs):
        name, equals, _ = pair.partition("=")
        if equals and unquote_plus(name).lower() == TOKEN_QUERY:
            pairs[n] = f"{name}=***"
    return "?" + "&".join(pairs)


def _redact(text: str) -> str:
    """``text`` with the value of every token parameter in its query strings masked."""
    return _QUERY.sub(_mask, text) if "?" in text else text


class _RedactToken(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(_redact(arg) if isinstance(arg, str) else arg for arg in record.args)
        if isinstance(record.msg, str):
            record.msg = _redact(record.msg)
        return True


def install_token_redaction() -> None:
    """Attach the redacting filter to the ASGI servers' loggers (once)."""
    for name in _SERVER_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, _RedactToken) for f in logger.filters):
            logger.addFilter(_RedactToken())
