"""The console's web app: the page, a JSON API to place and drive calls, a WebSocket feed.

``POST /api/calls`` places a call; ``POST /api/calls/{id}/say|press|hangup`` act as the caller;
``GET /api/calls/{id}`` is the call so far, ``.../recording.jsonl`` its recording for
``aiflow replay``, ``.../scenario.yaml`` its scenario for ``aiflow test``. ``/api/live`` streams
every call's messages to the page, all calls so far first. Commands must be sent as JSON, and the
feed refuses pages from other origins: another site open in the browser cannot drive calls here.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles
from starlette.websockets import WebSocket, WebSocketDisconnect

from sipgate_ai_flow.console.calls import ConsoleCall, Message
from sipgate_ai_flow.console.export import scenario_yaml
from sipgate_ai_flow.testing.emulator import Emulator, EmulatorError
from sipgate_ai_flow.testing.speech import DEFAULT_WORDS_PER_MINUTE
from sipgate_ai_flow.testing.transports import TransportError, describe_target

if TYPE_CHECKING:
    from sipgate_ai_flow.assistant.assistant import Assistant

__all__ = ["LOCAL_HOSTS", "ConsoleState", "create_console_app"]

STATIC = Path(__file__).resolve().parent / "static"
LOCAL_HOSTS = ("127.0.0.1", "localhost")
_KEYS = frozenset("0123456789*#ABCDabcd")


class ApiError(Exception):
    """A request the console refuses, with its HTTP status and the reason in words."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class ConsoleState:
    """The console's calls, the emulator that places them, and the pages listening."""

    def __init__(
        self,
        emulator: Emulator,
        *,
        assistant: Assistant | None,
        transport: str,
        name: str,
        notify: Callable[[str], None] | None = None,
    ) -> None:
        self.emulator = emulator
        self.name = name
        self.assistant = assistant
        self.transport = transport
        self.notify = notify or (lambda _message: None)
        self.calls: dict[str, ConsoleCall] = {}
        self.pages: set[asyncio.Queue[Message]] = set()

    def publish(self, message: Message) -> None:
        """Send ``message`` to every page."""
        for page in self.pages:
            page.put_nowait(message)

    def info(self) -> Message:
        """What the page shows about the target and the emulator's settings."""
        emulator = self.emulator
        return {
            "type": "hello",
            "target": self.name,
            "transport": self.transport,
            "state": self.assistant is not None,
            "deadline_ms": round(emulator.deadline * 1000),
            "words_per_minute": emulator.words_per_minute,
            "flow_number": emulator.flow_number,
            "caller_number": "4915100000",
        }

    async def place(self, settings: dict[str, Any]) -> ConsoleCall:
        """Place a call with the page's settings (direction, caller and flow numbers)."""
        direction = settings.get("direction", "inbound")
        if direction not in ("inbound", "outbound"):
            raise ApiError(400, f"direction: 'inbound' or 'outbound', not {direction!r}")
        caller = _number(settings, "caller_number")
        flow = _number(settings, "flow_number")
        inbound: Literal["inbound", "outbound"] = "inbound" if direction == "inbound" else "outbound"
        call = self.emulator.call(
            direction=inbound,
            from_number=caller if inbound == "inbound" else flow,
            to_number=flow if inbound == "inbound" else caller,
            flow_number=flow,
        )
        number = len(self.calls) + 1
        placed = ConsoleCall(number, call, self.publish, assistant=self.assistant, notify=self.notify)
        self.calls[placed.id] = placed
        self.publish(placed.info())
        try:
            await placed.start()
        except TransportError as exc:
            raise ApiError(502, str(exc)) from None
        return placed

    def find(self, call_id: str) -> ConsoleCall:
        """The call with ``call_id``; 404 if there is none."""
        try:
            return self.calls[call_id]
        except KeyError:
            raise ApiError(404, f"no call {call_id!r}") from None

    async def close(self) -> None:
        """Stop every call's clock and disconnect them."""
        for call in self.calls.values():
            await call.close()


def _number(settings: dict[str, Any], key: str) -> str | None:
    value = settings.get(key)
    if value is None or value == "":
        return None
    text = str(value).strip().removeprefix("+")
    if not text.isdigit():
        raise ApiError(400, f"{key}: a phone number of digits (E.164, '+' allowed), not {value!r}")
    return text


async def _body(request: Request) -> dict[str, Any]:
    if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
        # A plain form post from another site cannot set this type without the browser asking first.
        raise ApiError(415, "send the command as JSON (Content-Type: application/json)")
    try:
        body = json.loads(await request.body() or b"{}")
    except ValueError as exc:
        raise ApiError(400, f"the body is not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise ApiError(400, "the body must be a JSON object")
    return body


def _text(body: dict[str, Any], key: str) -> str:
    value = body.get(key)
    if not isinstance(value, str) or not value.strip():
        raise ApiError(400, f"{key}: a non-empty string is needed")
    return value


def create_console_app(
    target: Assistant | str,
    *,
    assistant: Assistant | None = None,
    token: str | None = None,
    deadline: float = 1.0,
    words_per_minute: float = DEFAULT_WORDS_PER_MINUTE,
    notify: Callable[[str], None] | None = None,
    allowed_hosts: tuple[str, ...] = LOCAL_HOSTS,
    name: str | None = None,
) -> Starlette:
    """The console for ``target`` (an :class:`Assistant`, called in-process, or a URL).

    ``assistant`` is the assistant behind a URL when it runs in this process (its state is shown);
    ``notify`` gets the errors the terminal should show. Calls run in real time; ``deadline`` and
    ``words_per_minute`` are the emulator's. Requests must name one of ``allowed_hosts`` as their
    host (``("*",)``: any), so that a web page cannot reach the console under a name of its own
    (DNS rebinding). ``name`` is how the page and the scenario files name the target (e.g. the
    ``module:attr`` it was loaded from).
    """
    from sipgate_ai_flow.assistant.assistant import Assistant  # noqa: PLC0415

    in_process = isinstance(target, Assistant)
    emulator = Emulator(
        target, token=token, deadline=deadline, realtime=True, words_per_minute=words_per_minute
    )
    state = ConsoleState(
        emulator,
        assistant=target if isinstance(target, Assistant) else assistant,
        transport="in-process" if in_process else _scheme(str(target)),
        name=describe_target(name or target),  # a URL's query may hold a secret
        notify=notify,
    )

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        yield
        await state.close()

    app = Starlette(
        routes=[
            Route("/", _index),
            Route("/health", _health),
            Route("/api/info", _api(_info)),
            Route("/api/calls", _api(_place), methods=["POST"]),
            Route("/api/calls/{id}", _api(_show)),
            Route("/api/calls/{id}/say", _api(_say), methods=["POST"]),
            Route("/api/calls/{id}/press", _api(_press), methods=["POST"]),
            Route("/api/calls/{id}/hangup", _api(_hangup), methods=["POST"]),
            Route("/api/calls/{id}/recording.jsonl", _api(_recording)),
            Route("/api/calls/{id}/scenario.yaml", _api(_scenario)),
            WebSocketRoute("/api/live", _live),
            Mount("/static", StaticFiles(directory=STATIC), name="static"),
        ],
        lifespan=lifespan,
        middleware=[Middleware(TrustedHostMiddleware, allowed_hosts=list(allowed_hosts))],
    )
    app.state.console = state
    return app


Endpoint = Callable[[ConsoleState, Request], Awaitable[Response]]


def _api(handler: Endpoint) -> Callable[[Request], Awaitable[Response]]:
    """A JSON endpoint: refusals become ``{"error": ...}`` with their status."""

    async def endpoint(request: Request) -> Response:
        try:
            return await handler(request.app.state.console, request)
        except ApiError as exc:
            return JSONResponse({"error": str(exc)}, exc.status)
        except EmulatorError as exc:  # e.g. a step on a call that has ended
            return JSONResponse({"error": str(exc)}, 409)

    return endpoint


async def _index(_: Request) -> Response:
    return FileResponse(STATIC / "index.html")


async def _health(_: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def _info(state: ConsoleState, _: Request) -> Response:
    return JSONResponse(state.info())


async def _place(state: ConsoleState, request: Request) -> Response:
    call = await state.place(await _body(request))
    return JSONResponse(call.summary(), 201)


async def _show(state: ConsoleState, request: Request) -> Response:
    return JSONResponse(state.find(request.path_params["id"]).summary())


async def _say(state: ConsoleState, request: Request) -> Response:
    call = state.find(request.path_params["id"])
    await call.say(_text(await _body(request), "text"))
    return JSONResponse(call.status())


async def _press(state: ConsoleState, request: Request) -> Response:
    call = state.find(request.path_params["id"])
    keys = _text(await _body(request), "keys")
    if not set(keys) <= _KEYS:
        raise ApiError(400, f"keys: keypad keys 0-9, *, #, A-D, not {keys!r}")
    await call.press(keys)
    return JSONResponse(call.status())


async def _hangup(state: ConsoleState, request: Request) -> Response:
    call = state.find(request.path_params["id"])
    await _body(request)
    await call.hangup()
    return JSONResponse(call.status())


async def _recording(state: ConsoleState, request: Request) -> Response:
    call = state.find(request.path_params["id"])
    lines = "".join(json.dumps(line, ensure_ascii=False) + "\n" for line in call.call.recording())
    return _download(lines, f"call-{call.id}.jsonl", "application/jsonl")


async def _scenario(state: ConsoleState, request: Request) -> Response:
    call = state.find(request.path_params["id"])
    name = f"console call {call.id}"
    header = f"# {name}, made with aiflow console. Run it with:\n"
    header += f"#   aiflow test call-{call.id}.yaml --target {state.name}\n"
    text = header + scenario_yaml(call.call, name=name, deadline=state.emulator.deadline)
    return _download(text, f"call-{call.id}.yaml", "application/yaml")


async def _live(socket: WebSocket) -> None:
    """Every call's messages for one page: all so far, then each as it happens."""
    origin = socket.headers.get("origin")
    if origin is not None and urlsplit(origin).netloc != socket.headers.get("host"):
        await socket.close(1008)  # another site's page must not read the calls
        return
    state: ConsoleState = socket.app.state.console
    await socket.accept()
    page: asyncio.Queue[Message] = asyncio.Queue()
    state.pages.add(page)
    receiving = asyncio.create_task(_until_closed(socket))
    try:
        backlog = [state.info()]
        for call in state.calls.values():
            backlog += call.snapshot()
        await socket.send_text(json.dumps(backlog))
        while not receiving.done():
            getter = asyncio.create_task(page.get())
            await asyncio.wait({getter, receiving}, return_when=asyncio.FIRST_COMPLETED)
            if not getter.done():
                getter.cancel()
                break
            batch = [getter.result()]
            while not page.empty():
                batch.append(page.get_nowait())
            await socket.send_text(json.dumps(batch))
    except (WebSocketDisconnect, RuntimeError):
        pass  # the page went away while a batch was on its way
    finally:
        state.pages.discard(page)
        receiving.cancel()


async def _until_closed(socket: WebSocket) -> None:
    # The page sends nothing; this only notices when it goes away.
    while (await socket.receive())["type"] != "websocket.disconnect":
        pass


def _scheme(url: str) -> str:
    return "WebSocket" if url.startswith(("ws://", "wss://")) else "HTTP"


def _download(text: str, filename: str, media_type: str) -> Response:
    headers = {"Content-Disposition": f'attachment; filename="{filename}"'}
    return Response(text, media_type=media_type, headers=headers)
