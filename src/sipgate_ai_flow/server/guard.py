"""uvicorn HTTP protocols that cut off slow and oversized request headers (slowloris).

uvicorn starts no timer before a request's headers are complete: a client that opens a
connection and sends its headers a byte at a time holds the connection, and its buffer, for as
long as it likes. These protocols give every request ``header_timeout`` seconds from the moment
the connection is idle (opened, or its last response sent) to finish its headers, and at most
``max_header_bytes`` of them; past either, the connection is closed (a late one within a
quarter of ``header_timeout`` after it, at most a second). Nothing of this runs per request but
a byte count: one timer sweeps all connections. Request bodies are the
app's business (``body_timeout`` in :func:`~sipgate_ai_flow.server.create_app`). A WebSocket
upgrade request, once its headers are complete, gets ``header_timeout`` seconds more for its
handshake to be answered (accepted or refused); past that its connection is closed too.

uvicorn's sans-io WebSocket protocol (its default since 0.35) never answers an upgrade request
that the websockets library cannot parse (a header line over 8 KiB, more than 128 headers):
these protocols send the library's answer (431) and close at once. :func:`guarded_ws` gives a
subclass of that WebSocket protocol that logs hostile input as one INFO line each, not as ERRORs.

``aiflow serve`` uses both. With your own uvicorn:
``uvicorn.run(app, http=guarded_http(), ws=guarded_ws())``.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
from typing import TYPE_CHECKING, Any

from uvicorn.protocols.http.h11_impl import H11Protocol
from websockets.server import ServerProtocol

__all__ = [
    "DEFAULT_HEADER_TIMEOUT",
    "DEFAULT_MAX_HEADER_BYTES",
    "GuardedH11Protocol",
    "guarded_http",
    "guarded_ws",
]

DEFAULT_HEADER_TIMEOUT = 10.0
DEFAULT_MAX_HEADER_BYTES = 64 * 1024

_TOO_LARGE = b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
_BAD_REQUEST = b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"

if TYPE_CHECKING:
    _Base = H11Protocol
else:
    _Base = object


class _Watch:
    """Sweeps a server's connections every ``period`` and closes those that waited for their
    headers ``seconds`` or longer: nothing to do per request (a timer per request cost more than
    the rest of the guard, see ``deadlines.py``). A connection waits for the same headers as long
    as uvicorn keeps the same request cycle for it, finished (or none yet)."""

    def __init__(self, seconds: float, connections: set[Any]) -> None:
        self.period = min(1.0, seconds / 4)
        self.rounds = math.ceil(seconds / self.period - 1e-9)
        self.connections = connections
        self.seen: dict[_HeaderGuard, tuple[object, int]] = {}  # connection -> cycle, sweeps seen
        # Upgraded connections whose handshake is not answered yet -> their protocol, sweeps seen.
        self.upgrades: dict[asyncio.BaseTransport, tuple[Any, int]] = {}
        self.timer: asyncio.TimerHandle | None = None

    def start(self) -> None:
        if self.timer is None:
            self.timer = asyncio.get_running_loop().call_later(self.period, self._sweep)

    def _sweep(self) -> None:
        seen: dict[_HeaderGuard, tuple[object, int]] = {}
        for connection in list(self.connections):
            if not isinstance(connection, _HeaderGuard) or connection.header_watch is not self:
                continue
            if not connection.waiting_for_headers() or connection.transport.is_closing():
                continue
            cycle = connection.cycle
            before = self.seen.get(connection)
            count = before[1] + 1 if before is not None and before[0] is cycle else 1
            if count > self.rounds:  # waiting for at least `rounds` whole periods
                connection.transport.close()
            else:
                seen[connection] = (cycle, count)
        self.seen = seen
        upgrades: dict[asyncio.BaseTransport, tuple[Any, int]] = {}
        for transport, (protocol, count) in self.upgrades.items():
            # uvicorn's WebSocket protocols (sans-io, wsproto) set `handshake_complete` once the
            # handshake is answered; one without the flag is taken as answered.
            if transport.is_closing() or getattr(protocol, "handshake_complete", True):
                continue
            if count + 1 > self.rounds:
                transport.close()
            else:
                upgrades[transport] = (protocol, count + 1)
        self.upgrades = upgrades
        self.timer = None
        if self.connections or self.upgrades:
            self.timer = asyncio.get_running_loop().call_later(self.period, self._sweep)


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
        # One watch for all connections of the server.
        watches: dict[float, _Watch] = self.server_state.__dict__.setdefault("aiflow_header_watches", {})
        if header_timeout not in watches:
            watches[header_timeout] = _Watch(header_timeout, self.server_state.connections)
        self.header_watch = watches[header_timeout]

    def waiting_for_headers(self) -> bool:
        """Whether the connection waits for a request's headers (between requests, uvicorn keeps
        the last, finished cycle; a new one exists once the next request's headers are complete)."""
        cycle = self.cycle
        return cycle is None or cycle.response_complete

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.header_watch.start()

    def data_received(self, data: bytes) -> None:
        cycle = self.cycle
        super().data_received(data)
        if cycle is not self.cycle:
            self.header_bytes = 0  # a request's headers are complete: the next ones count anew
        elif cycle is None or cycle.response_complete:
            # Still no new request: header bytes (counted after parsing: a chunk that completes
            # the headers may carry a large body).
            self.header_bytes += len(data)
            if self.header_bytes > self.max_header_bytes and not self.transport.is_closing():
                self.transport.write(_TOO_LARGE)
                self.transport.close()

    def handle_websocket_upgrade(self, *args: Any) -> None:
        # uvicorn hands the connection to its WebSocket protocol, which has read the whole
        # upgrade request when this returns.
        transport = self.transport
        super().handle_websocket_upgrade(*args)
        protocol = transport.get_protocol()
        if protocol is self:
            return
        # uvicorn's sans-io protocol keeps the websockets library's ServerProtocol as `conn`.
        handshake = getattr(protocol, "conn", None)
        if isinstance(handshake, ServerProtocol) and handshake.handshake_exc is not None:
            refused = handshake.handshake_exc
            client = f"{self.client[0]}:{self.client[1]} - " if self.client else ""
            kind = type(refused).__name__
            self.logger.info('%s"WebSocket upgrade" refused (%s): %s', client, kind, str(refused))
            if not transport.is_closing():
                # A request the library could not parse: uvicorn (as of 0.54) neither sends the
                # answer the library prepared (431, 414, or none) nor closes.
                transport.write(b"".join(handshake.data_to_send()) or _BAD_REQUEST)
                transport.close()
        elif not transport.is_closing():
            # The sweeps above no longer see the connection: watch it until its handshake is answered.
            self.header_watch.upgrades[transport] = (protocol, 0)
            self.header_watch.start()


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


try:
    from uvicorn.protocols.utils import get_client_addr, get_path_with_query_string
    from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
except ImportError:  # uvicorn before 0.35, or without websockets
    _GUARDED_WS: Any = "auto"
else:

    class GuardedWebSocketsSansIOProtocol(WebSocketsSansIOProtocol):
        """uvicorn's sans-io WebSocket protocol, logging hostile input as one INFO line each.

        uvicorn (as of 0.54) logs an ERROR ("ASGI callable returned without completing
        handshake") after every upgrade the app refused with an HTTP response, though it sent
        that response; it logs nothing when the websockets library refuses a frame and the
        connection is closed; and it hands the library its own logger, so that each refusal is
        logged twice. Here an app's refusal counts as the end of the handshake, a refused frame
        gets one INFO line, and the library logs to its own logger, ``websockets.server``, as in
        websockets' own servers. Nothing of this runs per message.
        """

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.conn.logger = logging.getLogger("websockets.server")
            self.served_app = self.app
            self.app = self.serve_app

        async def serve_app(self, scope: Any, receive: Any, send: Any) -> None:
            """Run the app; an HTTP response it refused the upgrade with ends the handshake."""
            await self.served_app(scope, receive, send)
            if self.initial_response is not None and self.close_sent:
                self.handshake_complete = True

        def handle_parser_exception(self) -> None:
            super().handle_parser_exception()
            sent = self.conn.close_sent
            if self.conn.parser_exc is not None and sent is not None:
                self.logger.info(
                    '%s - "WebSocket %s" closed (%d): %s',
                    get_client_addr(self.scope),
                    get_path_with_query_string(self.scope),
                    sent.code,
                    sent.reason or "protocol error",
                )

    _GUARDED_WS = GuardedWebSocketsSansIOProtocol
    __all__ += ["GuardedWebSocketsSansIOProtocol"]


def guarded_ws() -> Any:
    """The ``ws`` argument for uvicorn: :class:`GuardedWebSocketsSansIOProtocol` where this
    uvicorn has the sans-io protocol, else ``"auto"``."""
    return _GUARDED_WS
