"""``POST /webhook``: one event per request, answered with actions or 204.

A plain ASGI app rather than a Starlette endpoint: every event of every call comes through here,
and the request and response objects were a measurable part of the time per event. The event's
turn runs in the request's own task (:meth:`Assistant.serve`): a slow turn runs on after the
reply went out at the budget.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from starlette.types import Receive, Scope, Send

from sipgate_ai_flow.errors import InvalidEventError
from sipgate_ai_flow.protocol.actions import Action
from sipgate_ai_flow.protocol.codec import dump_actions, parse_event
from sipgate_ai_flow.server.auth import TOKEN_HEADER, token_matches
from sipgate_ai_flow.server.deadlines import Deadlines
from sipgate_ai_flow.server.settings import Endpoint, logger

__all__ = ["Webhook"]

_TOKEN = TOKEN_HEADER.encode()
_JSON = (b"content-type", b"application/json")
_CLOSE = (b"connection", b"close")
# A refused request's body is read and dropped up to this size (or twice the size limit).
_DRAIN_BYTES = 16 * 1024 * 1024


class Webhook:
    """The ASGI app for webhook events of ``endpoint.assistant``."""

    def __init__(self, endpoint: Endpoint) -> None:
        self.endpoint = endpoint
        # A slow client must not hold a request open for good (slowloris).
        self._bodies: Deadlines[asyncio.Task[Any]] = Deadlines(endpoint.body_timeout, self._too_slow)
        self._too_slow_tasks: set[asyncio.Task[Any]] = set()

    def _too_slow(self, task: asyncio.Task[Any]) -> None:
        self._too_slow_tasks.add(task)
        task.cancel()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = await self._body(receive, send, self._refusal(scope))
        if body is None:
            return
        endpoint = self.endpoint
        try:
            event = parse_event(body)
        except InvalidEventError as exc:
            endpoint.assistant.observer.error("bad_input")
            logger.info("rejected a webhook request: %s", exc.summary)
            await _reply(send, 400, _json(exc.to_dict()))
            return
        await endpoint.assistant.serve(event, reply=_Answer(send))

    def _refusal(self, scope: Scope) -> tuple[int, str] | None:
        # The status and error for a request its headers already refuse.
        # A dict built in one step, rather than a loop over the headers: for a repeated header,
        # the last one counts either way.
        headers = dict(scope["headers"])
        token = headers.get(_TOKEN)
        declared = headers.get(b"content-length")
        media = headers.get(b"content-type")
        if not token_matches(token, self.endpoint.token):
            return 401, "missing or wrong X-API-TOKEN"
        if media is not None and not _is_json(media):
            return 415, f"Content-Type must be application/json, not {media.decode('latin-1')[:100]!r}"
        limit = self.endpoint.max_message_size
        if declared is not None and declared.isdigit() and int(declared) > limit:
            return 413, f"request body over {limit} bytes"
        return None

    async def _body(self, receive: Receive, send: Send, refusal: tuple[int, str] | None) -> bytes | None:
        # The body, or None when there is nothing more to do (answered here, or the client left).
        task = asyncio.current_task()
        assert task is not None
        # A slow client must not hold a request open for good (slowloris): reading the body,
        # or draining it after a refusal, ends at the body deadline.
        self._bodies.arm(task)
        answered = False
        limit = self.endpoint.max_message_size
        try:
            if refusal is None:
                body = await _read(receive, limit)
                if body is None or len(body) <= limit:
                    return body  # None: the service gave up on this request, nobody is left to answer
                refusal = 413, f"request body over {limit} bytes"
            status, error = refusal
            await _reply(send, status, _json({"error": error}), close=True, more=True)
            answered = True
            await _drain(receive, max(_DRAIN_BYTES, 2 * limit))
            await send({"type": "http.response.body", "body": b""})
            return None
        except asyncio.CancelledError:
            if task not in self._too_slow_tasks:
                raise
            task.uncancel()
            if answered:  # the refusal is out; the rest of its body is not worth waiting for
                await send({"type": "http.response.body", "body": b""})
                return None
            patience = self._bodies.seconds
            logger.warning("a webhook request body did not arrive within %g s; answered 408", patience)
            error = f"request body not complete within {patience:g} s"
            await _reply(send, 408, _json({"error": error}), close=True)
            return None
        finally:
            self._bodies.disarm(task)
            self._too_slow_tasks.discard(task)


async def _read(receive: Receive, limit: int) -> bytes | None:
    # The body, as much of it as shows it is over `limit`, or None when the client left.
    body: bytes = b""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        body += message.get("body", b"")
        if len(body) > limit or not message.get("more_body", False):
            return body


async def _drain(receive: Receive, limit: int) -> None:
    # Read and drop the rest of a refused request's body, up to `limit` bytes, before the
    # connection closes: a socket closed with unread data sends a reset, and a client still
    # sending its body then gets that reset instead of the answer waiting for it.
    drained = 0
    while drained <= limit:
        message = await receive()
        if message["type"] == "http.disconnect" or not message.get("more_body", False):
            return
        drained += len(message.get("body", b""))


class _Answer:
    """The reply to one webhook event: 200 with the actions, or 204 for none."""

    __slots__ = ("send",)

    def __init__(self, send: Send) -> None:
        self.send = send

    async def __call__(self, actions: list[Action]) -> None:
        payload = dump_actions(actions)
        if payload is None:
            await _reply(self.send, 204, b"")
        else:
            await _reply(self.send, 200, payload)


def _is_json(media: bytes) -> bool:
    kind = media.partition(b";")[0].strip().lower()
    return kind == b"application/json" or kind.endswith(b"+json")


def _json(content: object) -> bytes:
    # As Starlette's JSONResponse renders it, which this endpoint used to send.
    return json.dumps(content, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode()


async def _reply(send: Send, status: int, body: bytes, *, close: bool = False, more: bool = False) -> None:
    # `close`: the connection closes after this answer; `more`: the response stays open (the
    # body is complete, but the request's own body is still being drained).
    headers = [_JSON, (b"content-length", str(len(body)).encode())] if body else []
    if close:
        headers.append(_CLOSE)
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": more})
