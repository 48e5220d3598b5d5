"""Keep the shared secret out of server logs, and expected hostile input out of their errors.

The WebSocket URL may carry the secret as ``?token=`` (D4), and uvicorn logs request lines, query
string included, at INFO. This filter masks the value before any handler sees the record: the
value of every query parameter whose name, decoded as the server decodes it for the token check
(percent-encoding, ``+``), is ``token`` in any case. So ``?%74oken=...``, ``?t%6Fken=...``, each
of ``?token=a&token=b`` and the refused ``?TOKEN=...`` are all masked.

uvicorn's sans-io WebSocket protocol logs a text frame that is not UTF-8 as an ERROR with a
traceback, though it is the client's fault and handled (the connection is closed with code 1007,
the app sees the disconnect): that record becomes one WARNING line.
"""

from __future__ import annotations

import logging
import re
from urllib.parse import unquote_plus

from sipgate_ai_flow.server.auth import TOKEN_QUERY

__all__ = ["install_log_filters"]

_QUERY = re.compile(r"\?[^\s\"']+")
_SERVER_LOGGERS = ("uvicorn.error", "uvicorn.access", "hypercorn.access", "hypercorn.error")
_NOT_UTF8 = "Invalid UTF-8 sequence received from client."  # uvicorn's message (0.54)


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


class _QuietHostileInput(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if record.msg == _NOT_UTF8 and record.levelno >= logging.ERROR:
            record.levelno, record.levelname = logging.WARNING, logging.getLevelName(logging.WARNING)
            record.exc_info = record.exc_text = None
            record.msg = "closed a WebSocket connection: a text frame from its client was not UTF-8 (1007)"
        return True


def install_log_filters() -> None:
    """Attach the filters to the ASGI servers' loggers (once)."""
    for name in _SERVER_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, _RedactToken) for f in logger.filters):
            logger.addFilter(_RedactToken())
    uvicorn = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, _QuietHostileInput) for f in uvicorn.filters):
        uvicorn.addFilter(_QuietHostileInput())
