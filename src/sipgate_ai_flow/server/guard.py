"""A wrapper around uvicorn's HTTP protocol that cuts off slow and oversized request headers
(slowloris) and answers WebSocket upgrade requests that uvicorn leaves hanging.

uvicorn starts no timer before a request's headers are complete: a client that opens a
connection and sends its headers a byte at a time holds the connection, and its buffer, for as
long as it likes. :func:`guarded_http` gives uvicorn an :class:`asyncio.Protocol` of ours that
wraps the HTTP protocol uvicorn would use and watches the connection from the outside, at the
transport: the bytes that come in, and that something went out. A connection must complete its
request headers within ``header_timeout`` seconds of being opened, or of the first byte of its
next request; once a response went out, the rest of that request's body and the next request's
headers get ``header_timeout`` seconds too (between requests, uvicorn's own ``timeout_keep_alive``
closes an idle connection). Headers over ``max_header_bytes`` get 431. Past either limit the
connection is closed (a late one within a quarter of ``header_timeout`` after it, at most a
second): one timer sweeps all connections. To tell the next request's headers from the rest of a
body, the wrapper runs every byte through an HTTP parser of its own (httptools, the parser behind
uvicorn's default protocol); a request it cannot parse gets 400. Request bodies are the app's
business (``body_timeout`` in :func:`~sipgate_ai_flow.server.create_app`).

A WebSocket upgrade request, once uvicorn has handed it to its WebSocket protocol, gets
``header_timeout`` seconds more for its handshake to be answered (accepted or refused); past that
its connection is closed too. uvicorn's sans-io WebSocket protocol (its default since 0.35) never
answers an upgrade request that the websockets library cannot parse (a header line over 8 KiB,
more than 128 headers): the wrapper has the library parse the request too, through its public
``ServerProtocol``, sends the library's answer (431) and closes. It does so at once for a request
near those limits, else only if the request is still unanswered at the watch's next sweep.
Hostile WebSocket input is logged as one INFO line each (a filter on ``uvicorn.error``), not as
ERRORs; see ``docs/reliability.md``.

``aiflow serve`` uses it. With your own uvicorn:
``uvicorn.run(app, http=guarded_http(), ws=guarded_ws())``.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import json
import logging
import math
import os
import types
from collections.abc import Callable
from typing import Any, Literal, cast

import httptools
import websockets
from uvicorn.config import HTTP_PROTOCOLS
from uvicorn.importer import import_from_string
from websockets.exceptions import SecurityError
from websockets.http11 import Request
from websockets.server import ServerProtocol

__all__ = [
    "DEFAULT_HEADER_TIMEOUT",
    "DEFAULT_MAX_HEADER_BYTES",
    "GuardedHTTPProtocol",
    "guarded_http",
    "guarded_ws",
]

DEFAULT_HEADER_TIMEOUT = 10.0
DEFAULT_MAX_HEADER_BYTES = 64 * 1024

_TOO_LARGE = b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
_BAD_REQUEST = b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"

# Where a connection's bytes are. The parser moves a request through the first three in turn
# (message begun, headers complete, message complete), so that the number of its calls in one
# read says where the read ends: (mode + calls) % 3.
_IDLE = 0  # between requests (or nothing yet)
_HEAD = 1  # a request's headers
_BODY = 2  # its body
_UPGRADED = 3  # handed to the WebSocket protocol

# Close codes with which the websockets library refuses a client's frame (1007, text that is not
# UTF-8, is uvicorn's own refusal, which logs it already).
_REFUSED_FRAME = {1002: "protocol error", 1009: "message too big"}

logger = logging.getLogger("uvicorn.error")

# The connection whose bytes are being handed to uvicorn: a task uvicorn starts meanwhile (the
# app's, for a WebSocket) carries it in its context, so the log filter knows its connection.
_CONNECTION: contextvars.ContextVar[GuardedHTTPProtocol] = contextvars.ContextVar("aiflow_connection")


class _Watch:
    """Sweeps the guarded connections of one event loop every ``period`` and closes those that
    stayed in the same timed phase (see :meth:`GuardedHTTPProtocol.phase`) for ``seconds`` or
    longer: nothing to do per request (a timer per request cost more than the rest of the guard,
    see ``deadlines.py``). It exists while it has connections."""

    def __init__(self, seconds: float, loop: asyncio.AbstractEventLoop, key: tuple[int, float]) -> None:
        self.period = min(1.0, seconds / 4)
        self.rounds = math.ceil(seconds / self.period - 1e-9)
        self.loop = loop
        self.key = key
        self.guards: set[GuardedHTTPProtocol] = set()
        self.seen: dict[GuardedHTTPProtocol, tuple[int, int]] = {}  # guard -> phase, sweeps seen
        self.timer: asyncio.TimerHandle | None = None

    def add(self, guard: GuardedHTTPProtocol) -> None:
        self.guards.add(guard)
        if self.timer is None:
            self.timer = self.loop.call_later(self.period, self._sweep)

    def _sweep(self) -> None:
        seen: dict[GuardedHTTPProtocol, tuple[int, int]] = {}
        for guard in list(self.guards):
            phase = guard.phase()
            if phase is None:
                continue
            if phase < 0:  # closed, or a WebSocket whose handshake was answered: no longer watched
                self.guards.discard(guard)
                continue
            if guard.mode == _UPGRADED and guard.upgrade_request:
                # Unanswered (an answered or closed one is no longer watched): one the library refuses?
                guard.check_handshake()
            before = self.seen.get(guard)
            count = before[1] + 1 if before is not None and before[0] == phase else 1
            if count > self.rounds:  # in the same phase for at least `rounds` whole periods
                guard.transport.close()
                self.guards.discard(guard)
            else:
                seen[guard] = (phase, count)
        self.seen = seen
        self.timer = None
        if self.guards:
            self.timer = self.loop.call_later(self.period, self._sweep)
        else:
            _WATCHES.pop(self.key, None)


# One watch per event loop and header timeout, while it has connections (hence keyed by the
# loop's id: the watch holds the loop, so the id stays its own as long as the entry exists).
_WATCHES: dict[tuple[int, float], _Watch] = {}


class _Transport(asyncio.Transport):
    """The transport uvicorn's protocols get: the real one, seen from the guard."""

    __slots__ = ("guard", "real")

    def __init__(self, guard: GuardedHTTPProtocol, real: asyncio.Transport) -> None:
        super().__init__()
        self.guard = guard
        self.real = real

    def write(self, data: bytes | bytearray | memoryview) -> None:
        guard = self.guard
        if guard.mode == _UPGRADED:
            if not guard.answered:
                guard.refused = not bytes(data[:12]).startswith(b"HTTP/1.1 101")
                guard.upgrade_request = b""  # answered: nothing left to check
            elif data[:1] == b"\x88":  # a close frame: kept for the log line if it refuses input
                guard.close_frame = bytes(data[:127])
        guard.answered = True
        self.real.write(data)

    def writelines(self, list_of_data: Any) -> None:
        self.write(b"".join(list_of_data))

    def close(self) -> None:
        guard = self.guard
        if guard.close_frame is not None and not self.real.is_closing():
            guard.log_refused_frame()
        self.real.close()

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        # uvicorn hands an upgraded connection to its WebSocket protocol this way: from here on
        # its bytes go there directly.
        self.real.set_protocol(protocol)
        self.guard.upgraded(protocol)

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self.real.get_protocol()

    def is_closing(self) -> bool:
        return self.real.is_closing()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self.real.get_extra_info(name, default)

    def is_reading(self) -> bool:
        return self.real.is_reading()

    def pause_reading(self) -> None:
        self.real.pause_reading()

    def resume_reading(self) -> None:
        self.real.resume_reading()

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self.real.set_write_buffer_limits(high, low)

    def get_write_buffer_size(self) -> int:
        return self.real.get_write_buffer_size()

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return self.real.get_write_buffer_limits()

    def write_eof(self) -> None:
        self.real.write_eof()

    def can_write_eof(self) -> bool:
        return self.real.can_write_eof()

    def abort(self) -> None:
        self.real.abort()


class GuardedHTTPProtocol(asyncio.Protocol):
    """uvicorn's HTTP protocol (``inner``) with the header guard around it.

    uvicorn constructs it as it constructs its own protocols; the arguments go to ``inner``
    unread. Build it with :func:`guarded_http`."""

    # It outlives the upgrade of a WebSocket connection (the WebSocket protocol writes through
    # its transport): slots keep it small.
    __slots__ = (
        "answered",
        "close_frame",
        "head",
        "header_timeout",
        "inner",
        "max_header_bytes",
        "mode",
        "parser",
        "parts",
        "path",
        "refused",
        "requests",
        "steps",
        "tail",
        "transport",
        "upgrade_request",
        "watch",
    )

    def __init__(
        self,
        *args: Any,
        inner: Callable[..., asyncio.Protocol],
        header_timeout: float = DEFAULT_HEADER_TIMEOUT,
        max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES,
        **kwargs: Any,
    ) -> None:
        self.inner = inner(*args, **kwargs)
        self.header_timeout = header_timeout
        self.max_header_bytes = max_header_bytes
        self.transport: asyncio.Transport = None  # type: ignore[assignment]  # set at connection_made
        self.watch: _Watch | None = None
        self.mode = _IDLE
        self.requests = 0  # request headers completed
        self.head = 0  # bytes counted of the next request's headers so far
        self.parts: list[bytes] = []  # those bytes, while they span several reads
        self.tail = b""  # their last three bytes
        self.steps: list[None] = []  # the parser's calls during one read
        self.parser: httptools.HttpRequestParser | None = _parser(self.steps)
        # As uvicorn's own parser: bytes after a `Connection: close` request are parsed, not refused.
        self.parser.set_dangerous_leniencies(lenient_data_after_close=True)
        self.answered = False  # something went out since the current request's headers
        self.upgrade_request = b""  # the headers of the request being upgraded
        self.refused = False  # the WebSocket handshake was answered with anything but 101
        self.close_frame: bytes | None = None
        self.path = ""  # the upgraded request's, for the log
        _install_log_filter()

    def phase(self) -> int | None:
        """What the watch times: a number that changes when the connection makes progress,
        ``None`` while it is not timed, negative when it is no longer watched."""
        mode = self.mode
        if self.transport.is_closing():
            return -1
        if mode <= _HEAD:
            return self.requests if self.head or not self.requests else None
        if mode == _UPGRADED:
            return -1 if self.answered else self.requests
        return self.requests if self.answered else None  # the rest of a body, once answered

    # -- asyncio.Protocol --------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = transport = cast(asyncio.Transport, transport)
        loop = asyncio.get_running_loop()
        key = (id(loop), self.header_timeout)
        watch = _WATCHES.get(key)
        if watch is None:
            watch = _WATCHES[key] = _Watch(self.header_timeout, loop, key)
        self.watch = watch
        watch.add(self)
        self.inner.connection_made(_Transport(self, transport))

    def data_received(self, data: bytes) -> None:
        parser = self.parser
        if parser is not None:
            mode = self.mode
            try:
                parser.feed_data(data)
            except httptools.HttpParserUpgrade as upgrade:
                if not self._upgrade(parser, data, upgrade.args[0]):
                    return
            except httptools.HttpParserError as error:
                self.parser = None
                logger.info('%s"HTTP request" refused (400): %s', self._client(), error)
                self._refuse(_unframeable(str(error)))
                return
            else:
                steps = self.steps
                # The common case: one whole request (headers and body) in one read.
                if mode == _IDLE and len(steps) == 3 and not self.head and len(data) <= self.max_header_bytes:
                    steps.clear()
                    self.requests += 1
                    self.answered = False
                elif not self._follow(data, mode):
                    return
        if self.upgrade_request:
            token = _CONNECTION.set(self)  # uvicorn may start the app's task for the upgrade
            try:
                self.inner.data_received(data)
            finally:
                _CONNECTION.reset(token)
        else:
            self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.watch is not None:
            self.watch.guards.discard(self)
        self.inner.connection_lost(exc)

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()

    # -- reading the framing -----------------------------------------------------------------

    def _follow(self, data: bytes, mode: int) -> bool:
        # Where the parser's calls during this read leave the connection, and how many bytes of
        # headers it brought; False when the connection was closed (headers over the limit).
        steps = len(self.steps)
        self.steps.clear()
        end = (mode + steps) % 3 if steps else mode
        heads = (mode + steps + 1) // 3 - (mode + 1) // 3  # passes from _HEAD to _BODY
        if mode != _BODY:
            # The read begins with headers (or what comes before them): counted to their end.
            limit = self.max_header_bytes
            if self.head + len(data) > limit:
                if heads:
                    seen = self.tail + data
                    # Blank lines before a request (nothing of it yet) are no end of its headers.
                    blank = len(seen) - len(seen.lstrip(b"\r\n")) if mode == _IDLE else 0
                    found = seen.find(b"\r\n\r\n", blank)
                    size = self.head + found + 4 - len(self.tail) if found >= 0 else self.head + len(data)
                else:
                    size = self.head + len(data)
                if size > limit:
                    self._refuse(_TOO_LARGE)
                    return False
        if heads:
            self.requests += heads
            self.answered = False
            self.upgrade_request = b""
        self.mode = end
        if end == _HEAD or (end == _IDLE and not steps):
            if steps and not (mode == _IDLE and steps == 1):
                # Headers that begin behind another request in this read (pipelining) are counted
                # from the next read on: what of them this read holds is bounded by its size.
                self.head = 1
            else:
                self.head += len(data)
            self.parts.append(data)
            self.tail = (self.tail + data)[-3:]
        elif self.head:
            self.head = 0
            self.parts = []
            self.tail = b""
        return True

    def _upgrade(self, parser: httptools.HttpRequestParser, data: bytes, offset: int) -> bool:
        # The parser stopped at the end of a request that asks for another protocol (uvicorn's
        # decides whether it gets one): what follows is not HTTP. Only a GET can be upgraded to a
        # WebSocket (RFC 6455); its headers are kept for check_handshake.
        mode = self.mode
        steps = self.steps
        if mode == _IDLE and len(steps) == 3 and not self.head and offset <= self.max_header_bytes:
            # The common case, as in data_received: the request alone in this read. (Shared
            # with data_received's, the test cost every webhook request 0.3k instructions more.)
            steps.clear()
            self.requests += 1
            self.answered = False
            # (Blank lines before a request are allowed, and not part of it.)
            self.upgrade_request = data[:offset].lstrip(b"\r\n") if parser.get_method() == b"GET" else b""
            return True
        parts = self.parts  # the reads of these headers so far (from a read's start, or not)
        if not self._follow(data[:offset], mode):
            return False
        if parser.get_method() == b"GET":
            self.upgrade_request = _last_request(b"".join([*parts, data[:offset]]), self.max_header_bytes)
        return True

    def _refuse(self, answer: bytes) -> None:
        if not self.transport.is_closing():
            self.transport.write(answer)
            self.transport.close()

    # -- WebSocket upgrades ------------------------------------------------------------------

    def upgraded(self, protocol: asyncio.BaseProtocol) -> None:
        """uvicorn handed the connection to its WebSocket ``protocol``, which has read the whole
        upgrade request. Answer a request the websockets library cannot parse, which uvicorn's
        sans-io protocol (as of 0.54) leaves unanswered, and log each refusal as one line."""
        self.mode = _UPGRADED
        self.inner = cast(asyncio.Protocol, protocol)  # uvicorn's HTTP protocol is done with
        request = self.upgrade_request
        target = request[: request.find(b"\r\n")].split(b" ")
        self.path = target[1].decode("latin-1") if len(target) == 3 else ""
        # The protocol answered at once: it refused the handshake (an accepted one is answered
        # by the app, later).
        self.refused = self.answered
        if self.transport.is_closing() and not self.refused:
            self.upgrade_request = b""
        elif self.refused or _suspect(request):
            self.check_handshake()
        # Else the request is kept until it is answered: parsing every handshake a second time
        # cost more per connection than the rest of the guard, so one well within the library's
        # limits is parsed only if it is still unanswered when the watch next sweeps.

    def check_handshake(self) -> None:
        """Have the websockets library parse the upgrade request; answer and close if it cannot."""
        request, self.upgrade_request = self.upgrade_request, b""
        handshake = ServerProtocol(logger=_LIBRARY_LOGGER)
        handshake.receive_data(request)
        events = handshake.events_received()
        if self.refused and events and isinstance(events[0], Request):
            handshake.accept(events[0])  # to find why, for the log line
        refusal = handshake.handshake_exc
        if refusal is None:
            return
        logger.info(
            '%s"WebSocket upgrade" refused (%s): %s', self._client(), type(refusal).__name__, str(refusal)
        )
        if not self.refused:
            self.refused = True
            # The library's own answer (431, 414, 400) where it has one (websockets 17+).
            fallback = _TOO_LARGE if isinstance(refusal, SecurityError) else _BAD_REQUEST
            self.transport.write(b"".join(handshake.data_to_send()) or fallback)
            self.transport.close()

    def log_refused_frame(self) -> None:
        """Log the close frame the WebSocket protocol sent, if it refused the client's input."""
        frame, self.close_frame = self.close_frame, None
        if frame is None or len(frame) < 4:
            return
        code = int.from_bytes(frame[2:4], "big")
        if code in _REFUSED_FRAME:
            reason = frame[4 : 2 + (frame[1] & 0x7F)].decode("utf-8", "replace") or _REFUSED_FRAME[code]
            logger.info('%s"WebSocket %s" closed (%d): %s', self._client(), self.path, code, reason)

    def _client(self) -> str:
        peer = self.transport.get_extra_info("peername")
        return f"{peer[0]}:{peer[1]} - " if isinstance(peer, tuple) and len(peer) >= 2 else ""


def _unframeable(reason: str) -> bytes:
    # A 400 whose JSON body says what is wrong (decisions.md, "Errors"), in the parser's words.
    body = json.dumps({"error": f"invalid HTTP request: {reason}"}).encode()
    head = f"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n"
    return f"{head}connection: close\r\n\r\n".encode() + body


def _parser(steps: list[None]) -> httptools.HttpRequestParser:
    # A request parser that appends to `steps` as a request begins, as its headers are complete
    # and as it is complete: C callables only (a Python callback per call cost more than the
    # parse), one for all three since their order is fixed.
    step = functools.partial(steps.append, None)
    return httptools.HttpRequestParser(
        types.SimpleNamespace(on_message_begin=step, on_headers_complete=step, on_message_complete=step)
    )


def _last_request(data: bytes, limit: int) -> bytes:
    # The upgrade request at the end of `data`, which may hold the end of another request before
    # it: from the first "GET " among its last `limit` bytes on which a parser of its own sees
    # exactly one request, to the end. A few tries at most, on a view: a body full of "GET "
    # before it must not hold up the event loop (found in review).
    window = max(0, len(data) - limit)
    view = memoryview(data)
    start = data.find(b"GET ", window)
    for _ in range(_PROBES):
        if start < 0:
            break
        steps: list[None] = []
        try:
            _parser(steps).feed_data(view[start:])
        except httptools.HttpParserUpgrade:
            if len(steps) == 3:
                return data[start:]
        except httptools.HttpParserError:
            pass
        start = data.find(b"GET ", start + 1)
    return data[window:].lstrip(b"\r\n")


def _suspect(request: bytes) -> bool:
    # Near the websockets library's limits for an upgrade request (by default 128 headers, a line
    # of 8 KiB; both can be changed through its environment variables): parsed at once.
    return request.count(b"\n") > 100 or max(map(len, request.split(b"\n"))) > 4096


_PROBES = 8  # tries of _last_request

_LIBRARY_LOGGER = logging.getLogger("websockets.server")
_LIBRARY_DIR = os.path.dirname(websockets.__file__)
_NO_HANDSHAKE = "ASGI callable returned without completing handshake."  # uvicorn's message (0.54)


class _QuietWebSocketRefusals(logging.Filter):
    """On ``uvicorn.error``: uvicorn hands the websockets library its own logger, so that each
    refusal and each connection opened or closed is logged twice, the library's way too; those
    records go to the library's logger, ``websockets.server``, as in websockets' own servers.
    And uvicorn logs an ERROR after every upgrade that the app refused with an HTTP response,
    though it sent that response: dropped."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.pathname.startswith(_LIBRARY_DIR):
            record.name = _LIBRARY_LOGGER.name
            _LIBRARY_LOGGER.handle(record)
            return False
        if record.msg == _NO_HANDSHAKE:
            connection = _CONNECTION.get(None)
            return connection is None or not connection.refused
        return True


_LOG_FILTER = _QuietWebSocketRefusals()


def _install_log_filter() -> None:
    # Once per process (uvicorn's workers each build their own protocols), at a connection.
    if _LOG_FILTER not in logger.filters:
        logger.addFilter(_LOG_FILTER)


def guarded_http(
    header_timeout: float = DEFAULT_HEADER_TIMEOUT,
    max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES,
    http: Literal["auto", "h11", "httptools"] = "auto",
) -> Any:
    """The ``http`` argument for uvicorn: the HTTP protocol uvicorn calls ``http`` (its fastest
    installed by default), with the header guard around it.

    A ``functools.partial`` of a module-level class, so uvicorn's worker processes can take it.
    """
    if header_timeout <= 0 or max_header_bytes <= 0:
        raise ValueError("header_timeout and max_header_bytes must be positive")
    if http not in ("auto", "h11", "httptools"):
        raise ValueError(f"http must be 'auto', 'h11' or 'httptools', not {http!r}")
    inner = import_from_string(HTTP_PROTOCOLS[http])
    return functools.partial(
        GuardedHTTPProtocol, inner=inner, header_timeout=header_timeout, max_header_bytes=max_header_bytes
    )


def guarded_ws() -> str:
    """The ``ws`` argument for uvicorn that :func:`guarded_http` is made for: uvicorn's sans-io
    WebSocket protocol (``"websockets-sansio"``), its fastest."""
    return "websockets-sansio"
