"""The sipgate REST API's outbound-call endpoint, emulated: a dial rings an emulated phone.

``POST /v3/ai-flows/{aiFlowId}/call`` answers as the documented API does (201, 400 for a flow
without a phone number, 401, 403, 404) and then places an outbound :class:`EmulatedCall` to the
assistant: it gets ``session_start`` with ``direction: "outbound"``. Tests can make the next
requests fail (429, 5xx) to see how a client copes.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from sipgate_ai_flow.testing.emulator import EmulatedCall, Emulator
from sipgate_ai_flow.testing.serving import serving

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response

__all__ = ["EmulatedApi", "ReceivedDial"]


@dataclass(frozen=True, slots=True)
class ReceivedDial:
    """A dial request as the emulated API received it, and what it answered."""

    ai_flow_id: str
    body: Any
    status: int
    authorization: str | None


@dataclass(slots=True)
class _Fault:
    status: int
    times: int
    retry_after: str | None


class EmulatedApi:
    """The outbound-call API for tests: serve it with ``async with api.serve() as base_url``.

    ``flows`` maps each AI flow id to its phone number (``None``: the flow has none, which the API
    answers with 400). ``token`` is the bearer token it accepts; ``outbound_allowed=False`` makes it
    answer 403, as for an account whose outbound calls sipgate has not approved. Every request is
    kept in :attr:`received`; every call placed comes out of :meth:`next_call`, already started,
    and is disconnected when :meth:`serve` ends.
    Call options (``transfer_answers``, ...) for the placed calls go in ``call_options``.
    """

    def __init__(
        self,
        emulator: Emulator,
        *,
        token: str = "api-token",
        flows: Mapping[str, str | None] | None = None,
        outbound_allowed: bool = True,
        call_options: Mapping[str, Any] | None = None,
    ) -> None:
        self.emulator = emulator
        self.token = token
        self.flows = dict(flows) if flows is not None else {"flow-1": emulator.flow_number}
        self.outbound_allowed = outbound_allowed
        self.call_options = dict(call_options or {})
        self.received: list[ReceivedDial] = []
        self.calls: list[EmulatedCall] = []
        self._placed: asyncio.Queue[EmulatedCall] = asyncio.Queue()
        self._faults: list[_Fault] = []
        self._tasks: set[asyncio.Task[None]] = set()
        # Imported here: `import sipgate_ai_flow.testing` (the pytest plugin) stays light.
        from starlette.applications import Starlette  # noqa: PLC0415
        from starlette.routing import Route  # noqa: PLC0415

        self.app = Starlette(routes=[Route("/v3/ai-flows/{flow_id}/call", self._dial, methods=["POST"])])

    def fail_next(self, status: int, *, times: int = 1, retry_after: str | None = None) -> None:
        """Answer the next ``times`` dials with ``status`` (and ``Retry-After``); place no call."""
        self._faults.append(_Fault(status, times, retry_after))

    async def next_call(self) -> EmulatedCall:
        """The next call a dial placed, once its ``session_start`` has been answered (wrap it in
        ``asyncio.timeout`` to bound the wait)."""
        return await self._placed.get()

    @asynccontextmanager
    async def serve(self, host: str = "127.0.0.1", port: int = 0) -> AsyncIterator[str]:
        """Run the API under uvicorn in this event loop; yields its base URL."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        try:
            async with serving(self.app, sock, what="the emulated API", lifespan="off"):
                yield f"http://{host}:{sock.getsockname()[1]}"
        finally:
            for pending in list(self._tasks):
                pending.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            for call in self.calls:
                await call.close()

    async def _dial(self, request: Request) -> Response:
        from starlette.responses import JSONResponse, Response  # noqa: PLC0415

        flow_id = request.path_params["flow_id"]
        authorization = request.headers.get("authorization")
        body: Any = None
        with suppress(ValueError):
            body = await request.json()
        status, payload, headers = self._decide(flow_id, authorization, body)
        self.received.append(ReceivedDial(flow_id, body, status, authorization))
        if status != 201:
            return JSONResponse(payload, status, headers=headers)
        task = asyncio.create_task(self._place(self.flows[flow_id] or "", payload.to_phone_number))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return Response(status_code=201)

    def _decide(self, flow_id: str, authorization: str | None, body: Any) -> tuple[int, Any, dict[str, str]]:
        if self._faults:
            fault = self._faults[0]
            fault.times -= 1
            if fault.times <= 0:
                self._faults.pop(0)
            headers = {"Retry-After": fault.retry_after} if fault.retry_after is not None else {}
            return fault.status, {"message": f"emulated failure {fault.status}"}, headers
        from sipgate_ai_flow.server.auth import token_matches  # noqa: PLC0415

        if not token_matches(authorization, f"Bearer {self.token}"):
            return 401, {"message": "Unauthorized"}, {}
        if flow_id not in self.flows:
            return 404, {"message": f"AI flow {flow_id} not found"}, {}
        if not self.outbound_allowed:
            return 403, {"message": "outbound calls are not enabled for this account"}, {}
        if self.flows[flow_id] is None:
            return 400, {"message": "the AI flow has no phone_number configured"}, {}
        from sipgate_ai_flow.client.outbound import DialRequest  # noqa: PLC0415

        try:
            dial = DialRequest.model_validate(body)
        except ValidationError as exc:
            fields = ", ".join(".".join(map(str, e["loc"])) or "body" for e in exc.errors())
            return 400, {"message": f"invalid request body: {fields}"}, {}
        return 201, dial, {}

    async def _place(self, flow_number: str, to: str) -> None:
        call = self.emulator.call(
            direction="outbound", flow_number=flow_number, to_number=to, **self.call_options
        )
        self.calls.append(call)
        try:
            await call.start()
        finally:  # a call that failed to start is handed out too: its violations say why
            self._placed.put_nowait(call)
