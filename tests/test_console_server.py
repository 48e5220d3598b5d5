"""The console's server without a browser: its JSON API and live feed, on real uvicorn servers.

The support bot is called in-process, over HTTP and over WebSocket (served in the same event
loop, so the console reads its call.state); calls run in real time at 400 words per minute.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket
from websockets.asyncio.client import ClientConnection, connect

from sipgate_ai_flow import Assistant, Speak
from sipgate_ai_flow.cli.serve import uvicorn_ws_protocol
from sipgate_ai_flow.console import create_console_app
from sipgate_ai_flow.testing import Emulator, load_recording, load_scenarios, replay, run_scenario
from tests.helpers import AIFLOW, ROOT, aiflow_serve, free_port
from tests.test_examples import load

WPM = 400


@asynccontextmanager
async def serving(app: Any) -> AsyncIterator[str]:
    """``app`` under uvicorn on 127.0.0.1 in this event loop; yields ``host:port``."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(app, log_level="warning", ws=uvicorn_ws_protocol())
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            assert not task.done(), "uvicorn did not start"
            await asyncio.sleep(0.01)
        yield f"127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        with suppress(asyncio.CancelledError):
            await task
        sock.close()


class Feed:
    """The console's live feed as a page gets it."""

    def __init__(self, socket: ClientConnection) -> None:
        self.socket = socket
        self.messages: list[dict[str, Any]] = []

    async def until(self, found: Callable[[dict[str, Any]], bool], seconds: float = 20) -> dict[str, Any]:
        for message in self.messages:
            if found(message):
                return message
        async with asyncio.timeout(seconds):
            while True:
                batch = json.loads(await self.socket.recv())
                self.messages += batch
                for message in batch:
                    if found(message):
                        return message

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [m for m in self.messages if m["type"] == kind]


@asynccontextmanager
async def console(target: Assistant | str, **options: Any) -> AsyncIterator[tuple[httpx.AsyncClient, Feed]]:
    app = create_console_app(target, words_per_minute=WPM, **options)
    async with (
        serving(app) as address,
        httpx.AsyncClient(base_url=f"http://{address}", timeout=30) as client,
        connect(f"ws://{address}/api/live") as socket,
    ):
        yield client, Feed(socket)


@asynccontextmanager
async def support_bot(via: str) -> AsyncIterator[tuple[Assistant, Assistant | str]]:
    """The support bot, and how the console reaches it."""
    assistant: Assistant = load("support_bot").assistant
    if via == "inprocess":
        yield assistant, assistant
        return
    async with serving(assistant) as address:
        yield assistant, f"http://{address}/webhook" if via == "http" else f"ws://{address}/ws"


def playing(message: dict[str, Any]) -> bool:
    return message["type"] == "status" and message["playing"] is not None


@pytest.mark.parametrize("via", ["inprocess", "http", "ws"])
async def test_a_call_driven_through_the_api_is_recorded_as_it_went(via: str, tmp_path: Path) -> None:
    async with (
        support_bot(via) as (assistant, target),
        console(target, assistant=assistant) as (client, feed),
    ):
        hello = await feed.until(lambda m: m["type"] == "hello")
        assert hello["transport"] == {"inprocess": "in-process", "http": "HTTP", "ws": "WebSocket"}[via]
        placed = await client.post("/api/calls", json={"caller_number": "+4917012345"})
        assert placed.status_code == 201
        assert placed.json()["session"]["from_phone_number"] == "4917012345"
        await feed.until(playing)
        await asyncio.sleep(0.8)  # past the greeting's allow_after_ms: the caller barges in
        said = await client.post("/api/calls/1/say", json={"text": "text me please"})
        assert said.status_code == 200
        sent = await feed.until(lambda m: m["type"] == "status" and bool(m["sms"]))
        assert sent["sms"][0]["to"] == "4917012345"
        await feed.until(lambda m: m["type"] == "entry" and m.get("event", {}).get("barged_in") is True)
        await feed.until(
            lambda m: m["type"] == "entry" and m.get("event", {}).get("type") == "assistant_speech_ended"
        )
        assert (await client.post("/api/calls/1/press", json={"keys": "1"})).status_code == 200
        await feed.until(lambda m: m["type"] == "status" and m["ended"])
        call = (await client.get("/api/calls/1")).json()

        assert call["status"]["end_reason"] == "transferred"
        assert call["status"]["transferred_to"] == "4921100200"
        assert call["status"]["violations"] == 0
        # A turn per event the bot answered with actions, each with its latency.
        events = {m["index"]: m["event"]["type"] for m in feed.of("entry") if m["kind"] == "event"}
        assert [events[t["event"]] for t in call["turns"]] == ["session_start", "user_speak", "dtmf_received"]
        assert all(t["latency_ms"] >= 0 for t in call["turns"])
        # The feed carried every entry of the transcript, and the bot's state after its turns.
        assert len(feed.of("entry")) == len(call["transcript"])
        assert feed.of("state")[-1]["state"]["sms_to"] == "4917012345"
        assert feed.of("state")[-1]["state"]["interruptions"] == 1

        recording = tmp_path / "call.jsonl"
        recording.write_bytes((await client.get("/api/calls/1/recording.jsonl")).content)
        scenario = tmp_path / "call.yaml"
        scenario.write_bytes((await client.get("/api/calls/1/scenario.yaml")).content)

    fresh = load("support_bot").assistant
    replayed = await replay(load_recording(recording), Emulator(fresh))
    assert replayed.same, replayed.differences
    [loaded] = load_scenarios([scenario])
    result = await run_scenario(loaded, Emulator(load("support_bot").assistant))
    assert result.passed, result.failures
    assert loaded.call.from_number == "4917012345"
    assert [s.kind for s in loaded.steps].count("expect") == 3


async def test_the_scenario_of_a_call_fails_when_the_bot_answers_differently(tmp_path: Path) -> None:
    async with console(load("support_bot").assistant) as (client, _):
        await client.post("/api/calls", json={})
        await client.post("/api/calls/1/press", json={"keys": "2"})
        await client.post("/api/calls/1/hangup", json={})
        scenario = tmp_path / "call.yaml"
        scenario.write_bytes((await client.get("/api/calls/1/scenario.yaml")).content)
    [loaded] = load_scenarios([scenario])
    assert (await run_scenario(loaded, Emulator(load("support_bot").assistant))).passed
    changed = load("support_bot")
    changed.MENU = "Press 9 for nothing."
    result = await run_scenario(loaded, Emulator(changed.assistant))
    assert not result.passed
    assert "Press 1 or say agent" in " ".join(result.failures)


async def test_bad_commands_get_a_clear_answer_and_the_call_goes_on() -> None:
    async with console(load("support_bot").assistant) as (client, _):
        assert (await client.post("/api/calls", json={"direction": "sideways"})).json() == {
            "error": "direction: 'inbound' or 'outbound', not 'sideways'"
        }
        refused = await client.post("/api/calls", json={"flow_number": "49 211 x"})
        assert refused.status_code == 400
        assert "flow_number" in refused.json()["error"]
        assert (await client.post("/api/calls", json={"direction": "outbound"})).status_code == 201
        empty = await client.post("/api/calls/1/say", json={"text": "  "})
        assert (empty.status_code, empty.json()["error"]) == (400, "text: a non-empty string is needed")
        keys = await client.post("/api/calls/1/press", json={"keys": "1x"})
        assert keys.status_code == 400
        assert "keypad keys" in keys.json()["error"]
        form = await client.post(
            "/api/calls/1/say", content="text=hi", headers={"content-type": "text/plain"}
        )
        assert form.status_code == 415
        assert (await client.post("/api/calls/7/say", json={"text": "hi"})).status_code == 404
        assert (await client.post("/api/calls/1/say", json={"text": "bye"})).status_code == 200
        assert (await client.post("/api/calls/1/hangup", json={})).status_code == 200
        late = await client.post("/api/calls/1/say", json={"text": "hello?"})
        assert late.status_code == 409
        assert "ended" in late.json()["error"]
        call = (await client.get("/api/calls/1")).json()
        assert call["session"]["direction"] == "outbound"
        assert call["status"]["end_reason"] == "caller_hangup"


async def test_an_unreachable_target_is_reported_on_the_page_and_in_the_terminal() -> None:
    lines: list[str] = []
    url = f"http://127.0.0.1:{free_port()}/webhook"
    async with console(url, notify=lines.append) as (client, feed):
        placed = await client.post("/api/calls", json={})
        assert placed.status_code == 502
        assert f"cannot reach {url}" in placed.json()["error"]
        error = await feed.until(lambda m: m["type"] == "error")
        assert f"cannot reach {url}" in error["message"]
        assert any(f"cannot reach {url}" in line for line in lines)
        assert (await client.get("/api/info")).status_code == 200  # the console itself goes on


def violating_webhook() -> Starlette:
    """A webhook that breaks the protocol in a new way for each kind of event."""

    async def webhook(request: Request) -> Response:
        event = await request.json()
        sid = event["session"]["id"]
        match event["type"]:
            case "session_start":
                return JSONResponse({"type": "speak", "session_id": sid, "text": "Hello."})
            case "user_speak":
                return JSONResponse(
                    [{"type": "speak", "text": "no session"}, {"type": "dance", "session_id": sid}]
                )
            case "dtmf_received":
                return Response("not json", media_type="text/plain")
        return Response(status_code=204)

    return Starlette(routes=[Route("/webhook", webhook, methods=["POST"])])


async def test_violations_are_shown_and_the_call_goes_on() -> None:
    async with (
        serving(violating_webhook()) as address,
        console(f"http://{address}/webhook") as (client, feed),
    ):
        await client.post("/api/calls", json={})
        assert (await client.post("/api/calls/1/say", json={"text": "hi"})).status_code == 200
        assert (await client.post("/api/calls/1/press", json={"keys": "5"})).status_code == 200
        assert (await client.post("/api/calls/1/say", json={"text": "still there?"})).status_code == 200
        await feed.until(lambda m: m["type"] == "status" and m["violations"] == 5)
        call = (await client.get("/api/calls/1")).json()
    violations = [m["violation"] for m in feed.of("entry") if m["kind"] == "violation"]
    kinds = [v["kind"] for v in violations]
    assert kinds == [
        "missing_session_id",
        "invalid_action",
        "not_json",
        "missing_session_id",
        "invalid_action",
    ]
    assert all(v["message"] for v in violations)
    assert call["status"]["violations"] == 5
    assert not call["status"]["ended"]


@pytest.mark.parametrize("scheme", ["http", "ws"])
async def test_a_target_that_dies_mid_call_ends_the_call_with_a_reason(scheme: str, tmp_path: Path) -> None:
    lines: list[str] = []
    with aiflow_serve("examples/support_bot.py:assistant", log=tmp_path / "serve.log") as (address, process):
        url = f"http://{address}/webhook" if scheme == "http" else f"ws://{address}/ws"
        async with console(url, notify=lines.append) as (client, feed):
            assert (await client.post("/api/calls", json={})).status_code == 201
            process.kill()
            process.wait(10)
            if scheme == "http":
                lost = await client.post("/api/calls/1/say", json={"text": "hello"})
                assert lost.status_code == 409
                assert "cannot reach" in lost.json()["error"]
            error = await feed.until(lambda m: m["type"] == "error")
            status = (await client.get("/api/calls/1")).json()["status"]
            again = await client.post("/api/calls", json={})
    assert ("cannot reach" if scheme == "http" else "closed the WebSocket") in error["message"]
    assert status["ended"]
    assert status["error"] == error["message"]
    assert any(error["message"] in line for line in lines)
    assert again.status_code == 502  # a new call says the target is gone; the console goes on


async def test_the_feed_refuses_other_sites_and_the_page_loads_nothing_from_outside() -> None:
    async with console(load("support_bot").assistant) as (client, _):
        address = str(client.base_url).removeprefix("http://")
        page = await client.get("/")
        assert page.status_code == 200
        assert '<script src="/static/app.js"' in page.text
        for name in ("app.js", "style.css"):
            assert (await client.get(f"/static/{name}")).status_code == 200
        with pytest.raises(Exception, match=r"1008|rejected|closed"):
            async with connect(f"ws://{address}/api/live", origin="http://evil.example") as socket:
                await socket.recv()
        rebound = await client.get("/api/info", headers={"host": "evil.example"})
        assert rebound.status_code == 400
    static = ROOT / "src" / "sipgate_ai_flow" / "console" / "static"
    for path in static.iterdir():
        text = path.read_text()
        assert "https://" not in text
        assert "http://" not in text.replace("http://www.w3.org/2000/svg", "")


def aiflow_console(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(AIFLOW), "console", *args, "--no-browser"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        check=False,
        env={**os.environ, "COLUMNS": "200", "NO_COLOR": "1"},
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["examples/nothing_here.py"], "no such file: examples/nothing_here.py"),
        (["ftp://example.com"], "no module named"),
        (["http://127.0.0.1:9/webhook", "--ws"], "a URL target is called at its URL"),
        (["examples/support_bot.py", "--http", "--ws"], "choose one of --http and --ws"),
    ],
)
def test_a_bad_target_exits_2_with_a_reason(args: list[str], message: str) -> None:
    result = aiflow_console(*args)
    assert result.returncode == 2
    assert message in result.stderr


def test_a_taken_port_exits_2_with_a_reason() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = aiflow_console("examples/support_bot.py", "--port", str(port))
    assert result.returncode == 2, result.stderr
    assert f"cannot serve the console on 127.0.0.1:{port}" in result.stderr


async def test_what_the_call_does_between_the_callers_steps_replays_the_same(tmp_path: Path) -> None:
    # The console's clock fires an input timeout while the caller does nothing; a replay must meet
    # it at the same step, or the reprompt would count as an answer to the hang-up.
    def patient() -> Assistant:
        assistant = Assistant()

        @assistant.on_session_start
        async def greet(event: Any) -> Speak:
            return Speak(text="Hi.", user_input_timeout_seconds=0.3)

        @assistant.on_user_input_timeout
        async def nudge(event: Any) -> str:
            return "Still there?"

        return assistant

    async with console(patient()) as (client, feed):
        await client.post("/api/calls", json={})
        await feed.until(lambda m: m["type"] == "entry" and m.get("action", {}).get("text") == "Still there?")
        await client.post("/api/calls/1/hangup", json={})
        recording = tmp_path / "call.jsonl"
        recording.write_bytes((await client.get("/api/calls/1/recording.jsonl")).content)
    steps = [
        line["step"] for line in map(json.loads, recording.read_text().splitlines()) if line["kind"] == "step"
    ]
    assert any("wait_until" in step for step in steps)
    replayed = await replay(load_recording(recording), Emulator(patient()))
    assert replayed.same, replayed.differences


async def test_a_hold_and_the_late_answer_after_it_are_marked() -> None:
    assistant = Assistant(budget=0.2, hold="One moment, please.")

    @assistant.on_session_start
    async def greet(event: Any) -> str:
        return "Hi."

    @assistant.on_user_speak
    async def think(event: Any) -> str:
        await asyncio.sleep(0.5)
        return "Here it is."

    async with console(assistant) as (client, feed):
        await client.post("/api/calls", json={})
        await client.post("/api/calls/1/say", json={"text": "a hard question"})
        late = await feed.until(
            lambda m: m["type"] == "entry" and m.get("action", {}).get("text") == "Here it is."
        )
    hold = next(m for m in feed.of("entry") if m.get("action", {}).get("text") == "One moment, please.")
    greeting = next(m for m in feed.of("entry") if m.get("action", {}).get("text") == "Hi.")
    assert (hold["tag"], late["tag"], greeting["tag"]) == ("hold", "late", None)


async def test_a_websocket_answer_after_the_reply_window_still_counts_as_the_turn() -> None:
    assistant = Assistant()

    @assistant.on_user_speak
    async def slow(event: Any) -> str:
        await asyncio.sleep(0.3)  # well past the emulator's 50 ms window, within the budget
        return "There you are."

    async with (
        serving(assistant) as address,
        console(f"ws://{address}/ws", assistant=assistant) as (client, feed),
    ):
        await client.post("/api/calls", json={})
        await client.post("/api/calls/1/say", json={"text": "hello"})
        await feed.until(
            lambda m: m["type"] == "entry" and m.get("action", {}).get("text") == "There you are."
        )
        call = (await client.get("/api/calls/1")).json()
    [turn] = call["turns"]
    assert call["transcript"][turn["event"]]["event"]["type"] == "user_speak"
    assert turn["latency_ms"] >= 300  # the wait the caller had, not the window's


def closing_websocket() -> Starlette:
    """Greets, then hangs up the connection when its greeting starts to play."""

    async def endpoint(socket: WebSocket) -> None:
        await socket.accept()
        async for text in socket.iter_text():
            event = json.loads(text)
            if event["type"] == "session_start":
                speak = {"type": "speak", "session_id": event["session"]["id"], "text": "Hi there."}
                await socket.send_text(json.dumps(speak))
            elif event["type"] == "assistant_speak":
                await socket.close()
                return

    return Starlette(routes=[WebSocketRoute("/ws", endpoint)])


async def test_a_connection_lost_while_an_event_is_delivered_fails_the_call_with_its_reason() -> None:
    lines: list[str] = []
    async with (
        serving(closing_websocket()) as address,
        console(f"ws://{address}/ws", notify=lines.append) as (
            client,
            feed,
        ),
    ):
        assert (await client.post("/api/calls", json={})).status_code == 201
        error = await feed.until(lambda m: m["type"] == "error")
        status = (await client.get("/api/calls/1")).json()["status"]
    assert error["message"].startswith("the assistant closed the WebSocket")
    assert (status["ended"], status["end_reason"], status["error"]) == (
        True,
        "connection_lost",
        error["message"],
    )
    assert lines == [f"call 1: {error['message']}"]
