"""Keep the shared secret out of server logs.

The WebSocket URL may carry the secret as ``?token=`` (D4), and uvicorn logs request lines at
INFO. This filter masks the value before any handler sees the record.
"""

from __future__ import annotations

import logging
import re

__all__ = ["install_token_redaction"]

_TOKEN_IN_QUERY = re.compile(r"([?&]token=)[^&\s\"']*")
_SERVER_LOGGERS = ("uvicorn.error", "uvicorn.access", "hypercorn.access", "hypercorn.error")


class _RedactToken(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(
                _TOKEN_IN_QUERY.sub(r"\1***", arg) if isinstance(arg, str) else arg for arg in record.args
            )
        if isinstance(record.msg, str) and "token=" in record.msg:
            record.msg = _TOKEN_IN_QUERY.sub(r"\1***", record.msg)
        return True


def install_token_redaction() -> None:
    """Attach the redacting filter to the ASGI servers' loggers (once)."""
    for name in _SERVER_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, _RedactToken) for f in logger.filters):
            logger.addFilter(_RedactToken())
