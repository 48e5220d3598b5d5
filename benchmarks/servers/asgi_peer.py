"""The raw ASGI peer: the echo assistant as a bare ASGI callable with orjson.

uvicorn benchmarks.servers.asgi_peer:app
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from benchmarks.servers.behaviour import answer, authorized

Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

_JSON = [(b"content-type", b"application/json")]


def _token(scope: dict[str, Any]) -> bytes | None:
    for name, value in scope["headers"]:
        if name == b"x-api-token":
            return bytes(value)
    return None


async def _respond(send: Send, status: int, body: bytes = b"") -> None:
    headers = [*_JSON, (b"content-length", str(len(body)).encode())] if body else []
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _http(scope: dict[str, Any], receive: Receive, send: Send) -> None:
    if scope["path"] != "/webhook" or scope["method"] != "POST":
        await _respond(send, 404, b'{"error":"Not found"}')
        return
    if not authorized(_token(scope)):
        await _respond(send, 401, b'{"error":"Unauthorized"}')
        return
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    try:
        reply = answer(body)
    except ValueError:
        await _respond(send, 400, b'{"error":"Invalid event"}')
        return
    if reply is None:
        await _respond(send, 204)
    else:
        await _respond(send, 200, reply)


async def _websocket(scope: dict[str, Any], receive: Receive, send: Send) -> None:
    await receive()  # websocket.connect
    if scope["path"] != "/ws" or not authorized(_token(scope)):
        await send({"type": "websocket.close", "code": 1008})
        return
    await send({"type": "websocket.accept"})
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return
        try:
            reply = answer(message.get("text") or message.get("bytes") or b"")
        except ValueError:
            continue
        if reply is not None:
            await send({"type": "websocket.send", "text": reply.decode()})


async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
    """The ASGI entry point."""
    if scope["type"] == "http":
        await _http(scope, receive, send)
    elif scope["type"] == "websocket":
        await _websocket(scope, receive, send)
