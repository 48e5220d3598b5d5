"""The ASGI app under a real uvicorn on 127.0.0.1, driven by real HTTP and WebSocket clients."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
import websockets
from starlette.applications import Starlette
from websockets.asyncio.client import ClientConnection, connect

from sipgate_ai_flow import Assistant, Call, Event, Hangup, MemoryStore, Speak, UserSpeak
from sipgate_ai_flow.server import create_app, mount
from tests.helpers import SESSION, event, running_server

TOKEN = "s3cr3t-token"
SID = SESSION["id"]


def build_assistant(store: MemoryStore | None = None) -> Assistant:
    assistant = Assistant(token=TOKEN, store=store)
    ended: list[str] = []

    @assistant.on_session_start
    async def start(ev: Event, call: Call) -> str:
        call.state["turns"] = 0
        return "Welcome"

    @assistant.on_user_speak
    async def speak(ev: UserSpeak, call: Call) -> Any:
        call.state["turns"] = call.state.get("turns", 0) + 1
        if ev.text == "list":
            return [Speak(text="one"), "two"]
        if ev.text == "bye":
            return [Speak(text="Goodbye"), Hangup()]
        if ev.text == "crash":
            raise RuntimeError("handler bug")
        if ev.text == "nothing":
            return None
        if ev.text.startswith("slow"):
            await asyncio.sleep(0.3)
        return f"{call.id}:{ev.text}:{call.state['turns']}"

    @assistant.on_user_barge_in
    async def barge(ev: UserSpeak) -> str:
        return f"barged {ev.text}"

    assistant.on_dtmf_received(lambda ev: f"digit {ev.digit}")
    assistant.on_assistant_speak(lambda ev: None)
    assistant.on_assistant_speech_ended(lambda ev: "next")
    assistant.on_user_input_timeout(lambda ev: "still there?")
    assistant.on_sms_failed(lambda ev: f"sms failed: {ev.reason}")
    assistant.on_user_speech_started(lambda ev: None)
    assistant.on_session_end(lambda ev: ended.append(ev.session.id))
    assistant.on_event(lambda ev: f"unknown {ev.type}")
    assistant.ended = ended  # type: ignore[attr-defined]
    return assistant


@pytest.fixture
def assistant() -> Assistant:
    return build_assistant()


@pytest.fixture
def server(assistant: Assistant) -> Iterator[str]:
    with running_server(assistant) as address:
        yield address


@pytest.fixture
async def http(server: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=f"http://{server}", headers={"X-API-TOKEN": TOKEN}) as client:
        yield client


async def post(http: httpx.AsyncClient, document: Any, **kwargs: Any) -> httpx.Response:
    return await http.post("/webhook", content=json.dumps(document), **kwargs)


# -- HTTP ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        (event("session_start"), {"type": "speak", "session_id": SID, "text": "Welcome"}),
        (event("user_speak", text="hi"), {"type": "speak", "session_id": SID, "text": f"{SID}:hi:1"}),
        (
            event("user_speak", text="hi", barged_in=True),
            {"type": "speak", "session_id": SID, "text": "barged hi"},
        ),
        (event("dtmf_received", digit="#"), {"type": "speak", "session_id": SID, "text": "digit #"}),
        (event("assistant_speech_ended"), {"type": "speak", "session_id": SID, "text": "next"}),
        (event("user_input_timeout"), {"type": "speak", "session_id": SID, "text": "still there?"}),
        (
            event("sms_failed", reason="no_sms_extension"),
            {"type": "speak", "session_id": SID, "text": "sms failed: no_sms_extension"},
        ),
        (event("mystery_event"), {"type": "speak", "session_id": SID, "text": "unknown mystery_event"}),
    ],
)
async def test_every_event_type_over_http(http: httpx.AsyncClient, document: Any, expected: Any) -> None:
    response = await post(http, document)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json() == expected


@pytest.mark.parametrize("kind", ["assistant_speak", "session_end", "user_speech_started"])
async def test_events_without_reply_get_204(http: httpx.AsyncClient, kind: str) -> None:
    response = await post(http, event(kind))
    assert response.status_code == 204
    assert response.content == b""


async def test_open_values_do_not_cost_the_call(http: httpx.AsyncClient) -> None:
    # A fractional speech_started_at (the seeds say "number") and a direction newer services
    # may send are accepted, not answered with 400.
    spoken = event("assistant_speak", text="hi", duration_ms=500.5, speech_started_at=1712345678901.5)
    assert (await post(http, spoken)).status_code == 204
    sideways = event("session_start")
    sideways["session"] = {**sideways["session"], "direction": "sideways"}
    response = await post(http, sideways)
    assert response.status_code == 200
    assert response.json()["text"] == "Welcome"


async def test_return_forms_over_http(http: httpx.AsyncClient) -> None:
    listed = await post(http, event("user_speak", text="list"))
    assert listed.json() == [
        {"type": "speak", "session_id": SID, "text": "one"},
        {"type": "speak", "session_id": SID, "text": "two"},
    ]
    bye = await post(http, event("user_speak", text="bye"))
    assert [a["type"] for a in bye.json()] == ["speak", "hangup"]
    nothing = await post(http, event("user_speak", text="nothing"))
    assert nothing.status_code == 204


async def test_state_over_http_and_session_end_cleanup(http: httpx.AsyncClient, assistant: Assistant) -> None:
    await post(http, event("session_start"))
    await post(http, event("user_speak", text="a"))
    second = await post(http, event("user_speak", text="b"))
    assert second.json()["text"] == f"{SID}:b:2"
    assert (await post(http, event("session_end"))).status_code == 204
    assert await assistant.store.load(SID) is None
    assert assistant.ended == [SID]  # type: ignore[attr-defined]


async def test_handler_exception_gets_the_fallback_not_a_500(
    http: httpx.AsyncClient, assistant: Assistant
) -> None:
    response = await post(http, event("user_speak", text="crash"))
    assert response.status_code == 200
    assert response.json() == {"type": "speak", "session_id": SID, "text": assistant.fallback}
    assert (await post(http, event("user_speak", text="after"))).status_code == 200  # still serving


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({"X-API-TOKEN": TOKEN}, 200),
        ({"x-api-token": TOKEN}, 200),
        ({"X-Api-Token": TOKEN}, 200),
        ({"X-API-TOKEN": "wrong"}, 401),
        ({"X-API-TOKEN": TOKEN + "x"}, 401),
        ({}, 401),
    ],
)
async def test_token_header_over_http(server: str, headers: dict[str, str], status: int) -> None:
    async with httpx.AsyncClient(base_url=f"http://{server}") as client:
        response = await client.post("/webhook", json=event("session_start"), headers=headers)
    assert response.status_code == status
    if status == 401:
        assert response.json() == {"error": "missing or wrong X-API-TOKEN"}


async def test_query_token_is_not_accepted_over_http(server: str) -> None:
    async with httpx.AsyncClient(base_url=f"http://{server}") as client:
        response = await client.post(f"/webhook?token={TOKEN}", json=event("session_start"))
    assert response.status_code == 401


@pytest.mark.parametrize(
    ("body", "path", "words"),
    [
        (b"this is not json", "", "not valid JSON"),
        (b"", "", "not valid JSON"),
        (b"\xff\xfe\xfd", "", "not valid JSON"),
        (b"[1, 2, 3]", "", "expected a JSON object"),
        (b'"user_speak"', "", "expected a JSON object"),
        (b'{"session": {"id": "x"}}', "type", "missing"),
        (b'{"type": "user_speak", "text": "hi", "session": {}}', "session.id", "Field required"),
        (b'{"type": "user_speak", "text": "hi"}', "session", "Field required"),
        (b'{"type": "user_speak", "text": 42, "session": {"id": "x"}}', "text", "valid string"),
        (
            b'{"type": "assistant_speak", "duration_ms": "long", "speech_started_at": 1, '
            b'"session": {"id": "x"}}',
            "duration_ms",
            "",
        ),
    ],
)
async def test_malformed_events_get_400_with_the_field(
    http: httpx.AsyncClient, body: bytes, path: str, words: str
) -> None:
    response = await http.post("/webhook", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 400
    document = response.json()
    assert document["error"] == "invalid event"
    assert path in [d["path"] for d in document["details"]]
    assert any(words in d["message"] for d in document["details"])


async def test_oversized_bodies_get_413(http: httpx.AsyncClient) -> None:
    huge = event("user_speak", text="x" * (1024 * 1024 + 10))
    response = await post(http, huge)
    assert response.status_code == 413
    assert "over 1048576 bytes" in response.json()["error"]

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: counted while streaming
        for _ in range(300):
            yield b"x" * 4096

    streamed = await http.post("/webhook", content=chunks())
    assert streamed.status_code == 413
    assert (await post(http, event("session_start"))).status_code == 200


async def test_health_and_wrong_methods(http: httpx.AsyncClient) -> None:
    assert (await http.get("/health")).json() == {"status": "ok"}
    assert (await http.get("/webhook")).status_code == 405


# -- WebSocket ----------------------------------------------------------------------------------


async def receive_json(ws: ClientConnection) -> Any:
    return json.loads(await asyncio.wait_for(ws.recv(), 5))


async def assert_silent(ws: ClientConnection, seconds: float = 0.3) -> None:
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(ws.recv(), seconds)


def ws_url(server: str, query: str = "") -> str:
    return f"ws://{server}/ws{query}"


async def test_every_event_type_over_websocket(server: str) -> None:
    async with connect(ws_url(server), additional_headers={"X-API-TOKEN": TOKEN}) as ws:
        await ws.send(json.dumps(event("session_start")))
        assert await receive_json(ws) == {"type": "speak", "session_id": SID, "text": "Welcome"}
        await ws.send(json.dumps(event("user_speech_started")))
        await ws.send(json.dumps(event("user_speak", text="list")))
        assert [a["text"] for a in await receive_json(ws)] == ["one", "two"]
        await ws.send(json.dumps(event("user_speak", text="hey", barged_in=True)))
        assert (await receive_json(ws))["text"] == "barged hey"
        for kind, text in [
            ("dtmf_received", "digit 1"),
            ("assistant_speech_ended", "next"),
            ("user_input_timeout", "still there?"),
            ("sms_failed", "sms failed: unknown"),
            ("brand_new_event", "unknown brand_new_event"),
        ]:
            await ws.send(json.dumps(event(kind)))
            assert (await receive_json(ws))["text"] == text
        await ws.send(json.dumps(event("assistant_speak")))
        await ws.send(json.dumps(event("user_speak", text="nothing")))
        await ws.send(json.dumps(event("session_end")))
        await assert_silent(ws)  # no frame for "no action", nor for session_end


async def test_two_calls_interleaved_on_one_socket(server: str, assistant: Assistant) -> None:
    async with connect(ws_url(server, f"?token={TOKEN}")) as ws:
        for sid in ("call-a", "call-b"):
            await ws.send(json.dumps(event("session_start", sid)))
            assert (await receive_json(ws))["session_id"] == sid
        # A slow turn of call A must not hold up call B; replies are routed by session id.
        await ws.send(json.dumps(event("user_speak", "call-a", text="slow-a")))
        await ws.send(json.dumps(event("user_speak", "call-b", text="fast-b")))
        await ws.send(json.dumps(event("dtmf_received", "call-a", digit="7")))
        replies = [await receive_json(ws) for _ in range(3)]
        assert [r["text"] for r in replies] == ["call-b:fast-b:1", "call-a:slow-a:1", "digit 7"]
        await ws.send(json.dumps(event("session_end", "call-a")))
        await ws.send(json.dumps(event("user_speak", "call-b", text="still")))
        assert (await receive_json(ws))["text"] == "call-b:still:2"
    await asyncio.sleep(0.2)
    # call-a ended by its session_end, call-b by the closed connection (D16): both cleaned up.
    assert sorted(assistant.ended) == ["call-a", "call-b"]  # type: ignore[attr-defined]
    assert await assistant.store.load("call-b") is None


async def test_malformed_frames_are_dropped_and_the_socket_stays_up(
    server: str, caplog: pytest.LogCaptureFixture
) -> None:
    async with connect(ws_url(server), additional_headers={"X-API-TOKEN": TOKEN}) as ws:
        with caplog.at_level(logging.WARNING, "sipgate_ai_flow"):
            for frame in [
                "not json",
                "[1,2]",
                '{"session": {"id": "x"}}',
                '{"type": "user_speak", "session": {}}',
            ]:
                await ws.send(frame)
            await ws.send(b'{"type": "dtmf_received", "digit": "nope", "session": {"id": "x"}}')
            await ws.send("x" * (1024 * 1024 + 1))
            await assert_silent(ws)
            await ws.send(json.dumps(event("dtmf_received", digit="5")))
            assert (await receive_json(ws))["text"] == "digit 5"
        assert caplog.text.count("dropped a malformed WebSocket frame") == 5
        assert "dropped a WebSocket frame of 1048577 bytes" in caplog.text


async def test_handler_exception_over_websocket_gets_the_fallback(server: str, assistant: Assistant) -> None:
    async with connect(ws_url(server), additional_headers={"X-API-TOKEN": TOKEN}) as ws:
        await ws.send(json.dumps(event("user_speak", text="crash")))
        assert (await receive_json(ws))["text"] == assistant.fallback
        await ws.send(json.dumps(event("user_speak", text="ok")))
        assert (await receive_json(ws))["text"].endswith(":ok:2")


@pytest.mark.parametrize(
    ("query", "headers"),
    [("", {}), ("?token=wrong", {}), ("", {"X-API-TOKEN": "wrong"}), ("?token=", {})],
)
async def test_websocket_upgrade_refused_without_the_token(
    server: str, query: str, headers: dict[str, str]
) -> None:
    with pytest.raises(websockets.exceptions.InvalidStatus) as info:
        async with connect(ws_url(server, query), additional_headers=headers):
            pass
    assert info.value.response.status_code == 401
    assert json.loads(info.value.response.body or b"{}") == {"error": "missing or wrong X-API-TOKEN"}


async def test_websocket_header_token_name_is_case_insensitive(server: str) -> None:
    async with connect(ws_url(server), additional_headers={"x-api-token": TOKEN}) as ws:
        await ws.send(json.dumps(event("session_start")))
        assert (await receive_json(ws))["text"] == "Welcome"


async def test_websocket_answers_pings(server: str) -> None:
    async with connect(ws_url(server, f"?token={TOKEN}")) as ws:
        latency = await asyncio.wait_for(await ws.ping(), 5)
        assert latency >= 0


# -- configuration and mounting -----------------------------------------------------------------


async def test_no_token_serves_everyone_and_warns(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, "sipgate_ai_flow"):
        app = create_app(Assistant(on_session_start=lambda ev: "open"))
    assert "NO TOKEN CONFIGURED" in caplog.text
    with running_server(app) as address:
        async with httpx.AsyncClient() as client:
            response = await client.post(f"http://{address}/webhook", json=event("session_start"))
    assert response.json()["text"] == "open"


async def test_paths_token_override_and_size_limit_are_configurable() -> None:
    app = create_app(
        Assistant(token="ignored", on_session_start=lambda ev: "custom"),
        token="override",
        webhook_path="/aiflow/events",
        websocket_path="/aiflow/stream",
        health_path="/up",
        max_message_size=2000,
    )
    with running_server(app) as address:
        async with httpx.AsyncClient(
            base_url=f"http://{address}", headers={"X-API-TOKEN": "override"}
        ) as client:
            assert (await client.post("/aiflow/events", json=event("session_start"))).json()[
                "text"
            ] == "custom"
            assert (await client.post("/webhook", json=event("session_start"))).status_code == 404
            assert (await client.get("/up")).status_code == 200
            big = await client.post("/aiflow/events", json=event("user_speak", text="x" * 3000))
            assert big.status_code == 413
        async with connect(f"ws://{address}/aiflow/stream?token=override") as ws:
            await ws.send(json.dumps(event("session_start")))
            assert (await receive_json(ws))["text"] == "custom"


async def test_mount_into_an_existing_starlette_app() -> None:
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    async def home(request: Any) -> PlainTextResponse:
        return PlainTextResponse("home")

    app = Starlette(routes=[Route("/", home)])
    mount(app, Assistant(token=TOKEN, on_session_start=lambda ev: "mounted"), "/voice")
    with running_server(app) as address:
        async with httpx.AsyncClient(base_url=f"http://{address}", headers={"X-API-TOKEN": TOKEN}) as client:
            assert (await client.get("/")).text == "home"
            assert (await client.post("/voice/webhook", json=event("session_start"))).json()[
                "text"
            ] == "mounted"
        async with connect(f"ws://{address}/voice/ws", additional_headers={"X-API-TOKEN": TOKEN}) as ws:
            await ws.send(json.dumps(event("session_start")))
            assert (await receive_json(ws))["text"] == "mounted"


async def test_mount_into_fastapi() -> None:
    from fastapi import FastAPI

    app = FastAPI()

    @app.get("/status")
    async def status() -> dict[str, str]:
        return {"app": "mine"}

    mount(app, Assistant(token=TOKEN, on_user_speak=lambda ev: f"fastapi heard {ev.text}"), "/aiflow")
    with running_server(app) as address:
        async with httpx.AsyncClient(base_url=f"http://{address}", headers={"X-API-TOKEN": TOKEN}) as client:
            assert (await client.get("/status")).json() == {"app": "mine"}
            reply = await client.post("/aiflow/webhook", json=event("user_speak", text="hi"))
            assert reply.json()["text"] == "fastapi heard hi"
            assert (
                await client.post("/aiflow/webhook", json=event("user_speak"), headers={"X-API-TOKEN": "x"})
            ).status_code == 401
        async with connect(f"ws://{address}/aiflow/ws?token={TOKEN}") as ws:
            await ws.send(json.dumps(event("user_speak", text="there")))
            assert (await receive_json(ws))["text"] == "fastapi heard there"


class BrokenStore(MemoryStore):
    """A store whose reads and writes of state fail, as a lost Redis connection would."""

    async def load(self, session_id: str) -> Any:
        raise ConnectionError("store unreachable")

    async def save(self, session_id: str, record: Any) -> None:
        raise ConnectionError("store unreachable")

    def turn(self, session_id: str, *, load: bool = False) -> Any:
        # The turn itself works (it keeps the order); loading the state with it does not.
        return _Unreachable() if load else super().turn(session_id)


class _Unreachable:
    async def __aenter__(self) -> Any:
        raise ConnectionError("store unreachable")

    async def __aexit__(self, *_: object) -> None:
        return None


async def test_a_failure_outside_the_handler_still_gets_the_fallback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # The handler takes `call`, so its turn reads and writes the call state, and that fails.
    assistant = Assistant(token=TOKEN, store=BrokenStore(), on_user_speak=lambda ev, call: "never delivered")
    with running_server(assistant) as address, caplog.at_level(logging.ERROR, "sipgate_ai_flow"):
        async with httpx.AsyncClient(base_url=f"http://{address}", headers={"X-API-TOKEN": TOKEN}) as client:
            response = await post(client, event("user_speak"))
            assert response.status_code == 200
            assert response.json() == {"type": "speak", "session_id": SID, "text": assistant.fallback}
            assert (await post(client, event("session_end"))).status_code == 204
        async with connect(ws_url(address, f"?token={TOKEN}")) as ws:
            await ws.send(json.dumps(event("user_speak")))
            assert (await receive_json(ws))["text"] == assistant.fallback
            await ws.send(json.dumps(event("user_speech_started")))
            await assert_silent(ws)  # no fallback where the service takes no actions
    assert "store unreachable" in caplog.text


async def test_a_handler_without_call_does_not_touch_the_call_state() -> None:
    # It cannot reach call.state, so its turn skips the state round trip: a store whose state
    # reads fail does not stand between it and the caller.
    assistant = Assistant(store=BrokenStore(), on_user_speak=lambda ev: "answered")
    with running_server(assistant) as address:
        async with httpx.AsyncClient(base_url=f"http://{address}") as client:
            response = await post(client, event("user_speak"))
            assert response.json()["text"] == "answered"


async def test_a_closed_socket_does_not_cut_short_a_session_end_cleanup() -> None:
    finished: list[str] = []

    async def end(ev: Event) -> None:
        await asyncio.sleep(0.3)  # still cleaning up when the connection goes
        finished.append(ev.session.id)

    assistant = Assistant(on_session_end=end)
    with running_server(assistant) as address:
        async with connect(ws_url(address)) as ws:
            await ws.send(json.dumps(event("session_start", "ending")))
            await ws.send(json.dumps(event("session_end", "ending")))
        for _ in range(50):
            if finished:
                break
            await asyncio.sleep(0.05)
    assert finished == ["ending"]


async def test_a_closed_socket_stops_the_slow_turn_its_first_reader_runs() -> None:
    """The connection's own task runs the first slow turn once a new task reads on; when the
    peer goes, that turn is still cancelled and the call cleaned up, without waiting for it."""
    cancelled: list[str] = []
    ended: list[str] = []

    async def slow(ev: UserSpeak) -> str:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.append(ev.text)
            raise
        return "never"

    assistant = Assistant(
        hold=None,
        on_session_start=lambda ev: "Hi.",
        on_user_speak=slow,
        on_dtmf_received=lambda ev: f"Key {ev.digit}.",
        on_session_end=lambda ev: ended.append(ev.session.id),
    )
    with running_server(assistant) as address:
        async with connect(ws_url(address)) as ws:
            await ws.send(json.dumps(event("session_start", "slow-call")))
            assert (await receive_json(ws))["text"] == "Hi."
            await ws.send(json.dumps(event("user_speak", "slow-call", text="think")))
            await ws.send(json.dumps(event("session_start", "other-call")))
            assert (await receive_json(ws))["text"] == "Hi."  # read on while "think" runs
            await ws.send(json.dumps(event("dtmf_received", "other-call", digit="4")))
            assert (await receive_json(ws))["text"] == "Key 4."
        for _ in range(40):
            if len(ended) == 2:
                break
            await asyncio.sleep(0.05)
    assert cancelled == ["think"]
    assert sorted(ended) == ["other-call", "slow-call"]
