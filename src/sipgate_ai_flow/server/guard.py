"""uvicorn HTTP protocols that cut off slow and oversized request headers (slowloris).

uvicorn starts no timer before a request's headers are complete: a client that opens a
connection and sends its headers a byte at a time holds the connection, and its buffer, for as
long as it likes. These protocols give every request ``header_timeout`` seconds from the moment
the connection is idle (opened, or its last response sent) to finish its headers, and at most
``max_header_bytes`` of them; past either, the connection is closed (a late one within a
quarter of ``header_timeout`` after it, at most a second). Request bodies are the
app's business (``body_timeout`` in :func:`~sipgate_ai_flow.server.create_app`).

``aiflow serve`` uses them. With your own uvicorn: ``uvicorn.run(app, http=guarded_http())``.
"""

from __future__ import annotations

import asyncio
import functools
from typing import TYPE_CHECKING, Any

from uvicorn.protocols.http.h11_impl import H11Protocol

from sipgate_ai_flow.server.deadlines import Deadlines

__all__ = ["DEFAULT_HEADER_TIMEOUT", "DEFAULT_MAX_HEADER_BYTES", "GuardedH11Protocol", "guarded_http"]

DEFAULT_HEADER_TIMEOUT = 10.0
DEFAULT_MAX_HEADER_BYTES = 64 * 1024

_TOO_LARGE = b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"

if TYPE_CHECKING:
    _Base = H11Protocol
else:
    _Base = object


class _HeaderGuard(_Base):
    """The guard, for either of uvicorn's HTTP/1.1 protocols."""

    def __init__(
        self,
        *args: Any,
        header_timeout: float = DEFAULT_HEADER_TIMEOUT,
        max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.header_timeout = header_timeout
        self.max_header_bytes = max_header_bytes
        self.header_bytes = 0
        # One watch for all connections of the server: a timer per request cost more than the rest
        # of the guard (see deadlines.py).
        watches: dict[float, Deadlines[_HeaderGuard]] = self.server_state.__dict__.setdefault(
            "aiflow_header_deadlines", {}
        )
        if header_timeout not in watches:
            watches[header_timeout] = Deadlines(header_timeout, _HeaderGuard._deadline_passed)
        self.header_deadlines = watches[header_timeout]

    def _waiting_for_headers(self) -> bool:
        # Between requests uvicorn keeps the last, finished cycle; a new one exists once the
        # next request's headers are complete.
        cycle = self.cycle
        return cycle is None or cycle.response_complete

    def _arm(self) -> None:
        self.header_bytes = 0
        self.header_deadlines.arm(self)

    def _disarm(self) -> None:
        self.header_deadlines.disarm(self)

    def _deadline_passed(self) -> None:
        if self._waiting_for_headers() and not self.transport.is_closing():
            self.transport.close()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def data_received(self, data: bytes) -> None:
        waiting = self._waiting_for_headers()
        super().data_received(data)
        # Counted after parsing: a chunk that completes the headers may carry a large body.
        if waiting and self._waiting_for_headers():
            self.header_bytes += len(data)
            if self.header_bytes > self.max_header_bytes and not self.transport.is_closing():
                self._disarm()
                self.transport.write(_TOO_LARGE)
                self.transport.close()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def handle_websocket_upgrade(self, *args: Any) -> None:
        self._disarm()  # the connection now belongs to the WebSocket protocol
        super().handle_websocket_upgrade(*args)


class GuardedH11Protocol(_HeaderGuard, H11Protocol):
    """uvicorn's h11 protocol with the header guard."""


try:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
except ImportError:  # httptools is optional in uvicorn
    _FASTEST: type[_HeaderGuard] = GuardedH11Protocol
else:

    class GuardedHttpToolsProtocol(_HeaderGuard, HttpToolsProtocol):  # type: ignore[misc]
        """uvicorn's httptools protocol with the header guard."""

    _FASTEST = GuardedHttpToolsProtocol
    __all__ += ["GuardedHttpToolsProtocol"]


def guarded_http(
    header_timeout: float = DEFAULT_HEADER_TIMEOUT, max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES
) -> Any:
    """The ``http`` argument for uvicorn: its fastest HTTP protocol here, with the header guard.

    A ``functools.partial`` of a module-level class, so uvicorn's worker processes can take it.
    """
    if header_timeout <= 0 or max_header_bytes <= 0:
        raise ValueError("header_timeout and max_header_bytes must be positive")
    return functools.partial(_FASTEST, header_timeout=header_timeout, max_header_bytes=max_header_bytes)
