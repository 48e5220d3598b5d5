"""How the emulator reaches an assistant: in-process, over an HTTP webhook, or over a WebSocket.

Each transport delivers one event and hands back what came in reply. The HTTP and in-process ones
answer each event with exactly one response; a WebSocket answers with any number of messages, at
any time, so the emulator collects what arrives within a short window and picks up later
messages as the assistant's own initiative.
"""

from __future__ import annotations

import asyncio
import functools
import ssl
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from sipgate_ai_flow.errors import AiFlowError, TargetError
from sipgate_ai_flow.protocol.codec import dump_actions

if TYPE_CHECKING:
    import httpx
    from websockets.asyncio.client import ClientConnection

    from sipgate_ai_flow.assistant.assistant import Assistant

__all__ = [
    "HttpTransport",
    "InProcessTransport",
    "Reply",
    "Transport",
    "TransportError",
    "WebSocketTransport",
    "describe_target",
    "resolve_target",
]


class TransportError(AiFlowError):
    """The assistant could not be reached, or the connection to it broke."""


@dataclass(slots=True)
class Reply:
    """What came back for one event: HTTP status (``None`` on WebSocket), bodies, and the delay."""

    status: int | None = None
    bodies: list[bytes | str] = field(default_factory=list)
    latency: float = 0.0
    error: str | None = None


class Transport(Protocol):
    """One call's channel to the assistant."""

    websocket: bool

    async def open(self) -> None:
        """Connect (a no-op where there is no connection)."""
        ...

    async def exchange(self, event: bytes) -> Reply:
        """Deliver ``event`` and return its reply."""
        ...

    def pushed(self) -> list[bytes | str]:
        """Messages that arrived on the assistant's own initiative since the last look."""
        ...

    async def close(self) -> None:
        """Disconnect."""
        ...


class InProcessTransport:
    """Calls ``Assistant.handle`` directly; replies go through the same JSON encoding as a server's."""

    websocket = False

    def __init__(self, assistant: Assistant) -> None:
        self.assistant = assistant

    async def open(self) -> None:
        """Nothing to connect."""

    async def exchange(self, event: bytes) -> Reply:
        """Handle ``event`` and encode the actions as a webhook would."""
        started = time.perf_counter()
        body = dump_actions(await self.assistant.handle(event))
        latency = time.perf_counter() - started
        if body is None:
            return Reply(status=204, latency=latency)
        return Reply(status=200, bodies=[body], latency=latency)

    def pushed(self) -> list[bytes | str]:
        """An in-process assistant answers only in replies."""
        return []

    async def close(self) -> None:
        """Nothing to disconnect."""


@functools.cache
def _tls_context() -> ssl.SSLContext:
    # httpx builds a TLS context (and reads the CA bundle) for every client it creates, which
    # cost more CPU than a whole emulated call; a call is a client, so build it once.
    import httpx  # noqa: PLC0415

    return httpx.create_ssl_context()


class HttpTransport:
    """POSTs each event to a webhook URL, as the service does."""

    websocket = False

    def __init__(self, url: str, token: str | None, timeout: float) -> None:
        self.url = url
        self.headers = {"Content-Type": "application/json"}
        if token:
            self.headers["X-API-TOKEN"] = token
        self.timeout = timeout
        self._client: httpx.AsyncClient | None = None

    async def open(self) -> None:
        """Create the HTTP client."""
        import httpx  # noqa: PLC0415 - only HTTP targets need it

        self._client = httpx.AsyncClient(timeout=self.timeout, verify=_tls_context())

    async def exchange(self, event: bytes) -> Reply:
        """POST ``event``; a failed request is a reply with ``error`` set.

        Raises :class:`TransportError` when the URL cannot be reached or refuses the token.
        """
        import httpx  # noqa: PLC0415

        assert self._client is not None, "open() first"
        started = time.perf_counter()
        try:
            response = await self._client.post(self.url, content=event, headers=self.headers)
        except httpx.TimeoutException:
            return Reply(latency=time.perf_counter() - started, error=f"no answer within {self.timeout:g} s")
        except httpx.ConnectError as exc:
            # Nobody listens there: no event of the call can arrive, as when a WebSocket cannot open.
            raise TransportError(f"cannot reach {self.url}: {exc or type(exc).__name__}") from None
        except httpx.HTTPError as exc:
            failed = f"request failed: {exc or type(exc).__name__}"
            return Reply(latency=time.perf_counter() - started, error=failed)
        latency = time.perf_counter() - started
        if response.status_code in (401, 403):
            raise TransportError(
                f"{self.url} refused the event: HTTP {response.status_code} (wrong or missing token?)"
            )
        bodies: list[bytes | str] = [response.content] if response.status_code != 204 else []
        return Reply(status=response.status_code, bodies=bodies, latency=latency)

    def pushed(self) -> list[bytes | str]:
        """A webhook has no channel for unsolicited actions."""
        return []

    async def close(self) -> None:
        """Close the HTTP client."""
        if self._client is not None:
            await self._client.aclose()


class WebSocketTransport:
    """Opens a WebSocket to the assistant when the call starts, as the service does (D16)."""

    websocket = True

    def __init__(self, url: str, token: str | None, reply_window: float, timeout: float) -> None:
        self.url = url
        self.token = token
        self.reply_window = reply_window
        self.timeout = timeout
        self._socket: ClientConnection | None = None
        # Each message with when it arrived (time.perf_counter), for the latency of its turn.
        self._inbox: asyncio.Queue[tuple[bytes | str, float] | None] = asyncio.Queue()
        self._reader: asyncio.Task[None] | None = None
        self.closed_reason: str | None = None

    async def open(self) -> None:
        """Connect, sending the token in ``X-API-TOKEN`` on the upgrade request."""
        from websockets.asyncio.client import connect  # noqa: PLC0415
        from websockets.exceptions import InvalidStatus, WebSocketException  # noqa: PLC0415

        headers = {"X-API-TOKEN": self.token} if self.token else None
        try:
            self._socket = await connect(
                self.url, additional_headers=headers, open_timeout=self.timeout, compression=None
            )
        except InvalidStatus as exc:
            status = exc.response.status_code
            hint = " (wrong or missing token?)" if status in (401, 403) else ""
            raise TransportError(f"{self.url} refused the WebSocket: HTTP {status}{hint}") from None
        except (OSError, WebSocketException, TimeoutError) as exc:
            raise TransportError(f"cannot open a WebSocket to {self.url}: {exc}") from None
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        from websockets.exceptions import ConnectionClosed  # noqa: PLC0415

        assert self._socket is not None
        try:
            async for message in self._socket:
                self._inbox.put_nowait((message, time.perf_counter()))
        except ConnectionClosed:
            pass
        close = self._socket.close_code
        self.closed_reason = f"the assistant closed the WebSocket (code {close})"
        self._inbox.put_nowait(None)

    async def exchange(self, event: bytes) -> Reply:
        """Send ``event`` and collect the messages that arrive until the line is quiet."""
        assert self._socket is not None, "open() first"
        if self.closed_reason:
            return Reply(error=self.closed_reason)
        started = time.perf_counter()
        try:
            await self._socket.send(event.decode())
        except Exception as exc:
            return Reply(error=f"sending failed: {exc!r}")
        reply = Reply()
        while True:
            try:
                message = await asyncio.wait_for(self._inbox.get(), self.reply_window)
            except TimeoutError:
                return reply
            if message is None:
                reply.error = self.closed_reason
                return reply
            body, arrived = message
            if not reply.bodies:
                reply.latency = max(arrived - started, 0.0)
            reply.bodies.append(body)

    def pushed(self) -> list[bytes | str]:
        """Messages that came in between events."""
        return [body for body, _ in self.take()]

    def take(self) -> list[tuple[bytes | str, float]]:
        """Messages that came in between events, each with when it arrived (``time.perf_counter``)."""
        messages: list[tuple[bytes | str, float]] = []
        while not self._inbox.empty():
            message = self._inbox.get_nowait()
            if message is not None:
                messages.append(message)
        return messages

    async def wait_pushed(self, seconds: float) -> list[tuple[bytes | str, float]]:
        """Wait up to ``seconds`` for a message, then return all that came, as :meth:`take` does."""
        try:
            first = await asyncio.wait_for(self._inbox.get(), seconds)
        except TimeoutError:
            return []
        return ([first] if first is not None else []) + self.take()

    async def close(self) -> None:
        """Close the connection."""
        if self._socket is not None:
            await self._socket.close()
        if self._reader is not None:
            await self._reader


def describe_target(target: object) -> str:
    """A short, secret-free name for a target, for reports."""
    if isinstance(target, str):
        return target.split("?", 1)[0]
    return type(target).__name__


URL_SCHEMES = ("http://", "https://", "ws://", "wss://")


def resolve_target(spec: str) -> Assistant | str:
    """What ``spec`` names for the emulator: a URL stays a URL; anything else is loaded as
    ``module:attr`` / ``file.py:attr``."""
    if spec.startswith(URL_SCHEMES):
        return spec
    from sipgate_ai_flow.target import load_target  # noqa: PLC0415 - imports user code

    return load_target(spec)


def check_url(url: str) -> str:
    """Return ``url`` if the emulator can reach it, else raise :class:`TargetError`."""
    if url.startswith(URL_SCHEMES):
        return url
    raise TargetError(f"{url!r} is not a target URL; use http(s)://... for a webhook or ws(s)://...")
