"""WebSocket ``/ws``: events in, actions out, routed by ``session.id`` (D16).

One connection may carry several calls. Events of one call are handled in order, different calls
concurrently. Malformed frames are logged and dropped; the connection stays up. When the
connection closes, every call it carried that did not end gets its ``session_end`` cleanup.
"""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.responses import JSONResponse
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket

from sipgate_ai_flow.assistant import eager
from sipgate_ai_flow.errors import InvalidEventError
from sipgate_ai_flow.protocol.actions import Action
from sipgate_ai_flow.protocol.codec import dump_actions, parse_event
from sipgate_ai_flow.protocol.events import SessionEnd
from sipgate_ai_flow.protocol.session import SessionInfo
from sipgate_ai_flow.server.auth import is_authorized
from sipgate_ai_flow.server.settings import Endpoint, logger

__all__ = ["WebSocketEndpoint"]


class WebSocketEndpoint:
    """The ASGI app for WebSocket connections of ``endpoint.assistant``."""

    def __init__(self, endpoint: Endpoint) -> None:
        self.endpoint = endpoint
        self.connections = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        websocket = WebSocket(scope, receive, send)  # for the handshake; frames go raw, it is faster
        if not is_authorized(websocket, self.endpoint.token, allow_query=True):
            # D4: HTTP 401 where the server can send one, else close with 1008 (policy violation).
            await _refuse(websocket, 401, "missing or wrong X-API-TOKEN", 1008)
            return
        limit = self.endpoint.max_connections
        if self.connections >= limit:
            logger.warning("refused a WebSocket connection: %d are open (limit %d)", self.connections, limit)
            # 1013: try again later.
            await _refuse(websocket, 503, f"too many open WebSocket connections (limit {limit})", 1013)
            return
        self.connections += 1
        try:
            await websocket.accept()
            await _Connection(self.endpoint, receive, send).run()
        finally:
            self.connections -= 1


async def _refuse(websocket: WebSocket, status: int, error: str, close_code: int) -> None:
    if "websocket.http.response" in websocket.scope.get("extensions", {}):
        await websocket.send_denial_response(JSONResponse({"error": error}, status_code=status))
    else:
        await websocket.close(code=close_code)


class _Connection:
    """One open connection. Its frames are read by one task at a time: at first uvicorn's task
    for the connection; when a turn waits for something, the task running it hands the reading
    to a new one, so no event ever waits for another call's slow turn and a turn that does not
    wait costs no task."""

    def __init__(self, endpoint: Endpoint, receive: Receive, send: Send) -> None:
        self.endpoint = endpoint
        self.receive = receive
        self.send = send
        self.closed = False
        self.open_calls: dict[str, SessionInfo] = {}
        self.endings: set[asyncio.Task[None]] = set()  # session_end work: never cancelled (D12)
        self.send_lock = asyncio.Lock()
        self.reader: asyncio.Task[Any] | None = None  # the task reading frames now
        self.readers: set[asyncio.Task[None]] = set()  # the ones this connection started
        self.finished = asyncio.Event()  # the peer went and the calls it carried are ended

    async def run(self) -> None:
        """Serve the connection; return once it is over (uvicorn then closes it)."""
        self.reader = asyncio.current_task()
        try:
            if not await self._read():  # another task reads now: the connection is not over
                await self.finished.wait()
        finally:
            reader = self.reader
            if reader is not None and reader is not asyncio.current_task():
                reader.cancel()  # only if this task was cancelled: the server is stopping
            await self._close()

    async def _read_on(self) -> None:
        try:
            await self._read()
        except Exception:
            logger.exception("reading the WebSocket connection failed")
            await self._close()

    def _hand_off(self) -> None:
        # The turn this task runs waits for something: a new task reads the next frames.
        task = self.reader = asyncio.create_task(self._read_on())
        self.readers.add(task)
        task.add_done_callback(self.readers.discard)

    async def _read(self) -> bool:
        # Frames until the peer goes (True, the connection is finished) or this task's turn
        # waits and the reading moved on (False).
        limit = self.endpoint.max_message_size
        assistant = self.endpoint.assistant
        while True:
            message = await self.receive()
            if message["type"] == "websocket.disconnect":
                await self._close()
                return True
            data = message.get("text")
            if data is None:
                data = message.get("bytes") or b""
            if len(data) > limit:
                logger.warning("dropped a WebSocket frame of %d bytes (limit %d)", len(data), limit)
                continue
            try:
                event = parse_event(data)
            except InvalidEventError as exc:
                assistant.observer.error("bad_input")
                logger.warning("dropped a malformed WebSocket frame: %s", exc)
                continue
            session_id = event.session.id
            ending = isinstance(event, SessionEnd)
            if ending:
                self.open_calls.pop(session_id, None)
            elif (
                session_id in self.open_calls or len(self.open_calls) < self.endpoint.max_calls_per_connection
            ):
                self.open_calls[session_id] = event.session
            else:
                logger.warning(
                    "dropped an event of session %s: this connection already carries %d calls (limit)",
                    session_id,
                    len(self.open_calls),
                )
                continue
            if ending:
                # session_end waits for the call's running turns: other calls must not wait too.
                task = eager.start(assistant.serve(event, send=self._send))
                if not task.done():
                    self.endings.add(task)
                    task.add_done_callback(self.endings.discard)
            else:
                await assistant.serve(event, send=self._send, waits=self._hand_off)
                if self.reader is not asyncio.current_task():
                    return False

    async def _send(self, actions: list[Action]) -> None:
        # The runtime calls this for replies, holds, streamed items and call.send, at any time.
        payload = dump_actions(actions)
        if payload is None:
            return
        lock = self.send_lock
        await lock.acquire()  # not `async with`: two calls fewer per frame
        try:
            if self.closed:
                logger.info("connection closed before actions for session %s", actions[0].session_id)
                return
            try:
                await self.send({"type": "websocket.send", "text": payload.decode()})
            except Exception:  # the peer went away between our check and the send
                logger.info("could not send actions for session %s", actions[0].session_id)
        finally:
            lock.release()

    async def _close(self) -> None:
        # Once, by whichever task sees the connection go: no more sends, the calls' cleanup.
        if self.closed:
            return
        self.closed = True
        try:
            # Calls that sent session_end still get their cleanup in full.
            await asyncio.gather(*self.endings, return_exceptions=True)
            # The replies of the others can no longer be delivered: ending them stops their handlers.
            for session in list(self.open_calls.values()):
                await self.endpoint.assistant.end_call(session)
            self.open_calls.clear()
        finally:
            self.finished.set()
