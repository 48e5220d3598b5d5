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

    async def _read_body(self, receive: Receive, send: Send, limit: int) -> bytes | None:
        # The body, or None when there is nothing more to do (answered here, or the client left).
        task = asyncio.current_task()
        assert task is not None
        self._bodies.arm(task)
        body: bytes = b""
        try:
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    return None  # the service gave up on this request; nobody is left to answer
                body += message.get("body", b"")
                if len(body) > limit:
                    await _reply(send, 413, _json({"error": f"request body over {limit} bytes"}))
                    return None
                if not message.get("more_body", False):
                    return body
        except asyncio.CancelledError:
            if task not in self._too_slow_tasks:
                raise
            task.uncancel()
            patience = self._bodies.seconds
            logger.warning("a webhook request body did not arrive within %g s; answered 408", patience)
            await _reply(send, 408, _json({"error": f"request body not complete within {patience:g} s"}))
            return None
        finally:
            self._bodies.disarm(task)
            self._too_slow_tasks.discard(task)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        endpoint = self.endpoint
        token: bytes | None = None
        declared: bytes | None = None
        media: bytes | None = None
        for name, value in scope["headers"]:
            if name == _TOKEN:
                token = value
            elif name == b"content-length":
                declared = value
            elif name == b"content-type":
                media = value
        if not token_matches(token, endpoint.token):
            await _reply(send, 401, _json({"error": "missing or wrong X-API-TOKEN"}))
            return
        if media is not None and not _is_json(media):
            shown = media.decode("latin-1")[:100]
            await _reply(send, 415, _json({"error": f"Content-Type must be application/json, not {shown!r}"}))
            return
        limit = endpoint.max_message_size
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await _reply(send, 413, _json({"error": f"request body over {limit} bytes"}))
            return
        body = await self._read_body(receive, send, limit)
        if body is None:
            return
        try:
            event = parse_event(body)
        except InvalidEventError as exc:
            endpoint.assistant.observer.error("bad_input")
            logger.info("rejected a webhook request: %s", exc.summary)
            await _reply(send, 400, _json(exc.to_dict()))
            return
        await endpoint.assistant.serve(event, reply=_Answer(send))


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


async def _reply(send: Send, status: int, body: bytes) -> None:
    headers = [_JSON, (b"content-length", str(len(body)).encode())] if body else []
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
