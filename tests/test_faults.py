"""Faults: the caller hangs up mid-handler, the WebSocket drops, Redis restarts, a worker is
killed, a handler raises, hangs or returns garbage. Real servers, real Redis, real processes."""

from __future__ import annotations

import asyncio
import json
import signal
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.requests import Request
from starlette.responses import JSONResponse
from websockets.asyncio.client import connect

from sipgate_ai_flow import Assistant, Call, UserSpeak
from sipgate_ai_flow.assistant.assistant import DEFAULT_FALLBACK, DEFAULT_GIVE_UP, DEFAULT_HOLD
from sipgate_ai_flow.server import create_app
from sipgate_ai_flow.server.app import AiFlowApp
from sipgate_ai_flow.testing import Emulator
from tests.helpers import aiflow_serve, event, free_port, redis_server, running_server

SERVED = "tests/served_bot.py:assistant"


class Witness:
    """An assistant whose slow handler reports what happened to it, served with a route that
    counts the server's asyncio tasks."""

    def __init__(self) -> None:
        self.log: list[str] = []
        self.assistant = Assistant(budget=0.2)
        self.assistant.on_session_start(lambda ev: "Welcome")
        self.assistant.on_user_speak(self.speak)
        self.assistant.on_session_end(self.end)
        self.app: AiFlowApp = create_app(self.assistant)

        async def tasks(_: Request) -> JSONResponse:
            return JSONResponse(len(asyncio.all_tasks()))

        self.app.add_route("/tasks", tasks)

    async def speak(self, ev: UserSpeak, call: Call) -> str:
        call.state["heard"] = ev.text
        self.log.append("started")
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            self.log.append("cancelled")
            raise
        finally:
            self.log.append("cleanup")
        return "never"

    async def end(self, ev: Any, call: Call) -> None:
        self.log.append(f"ended with {call.state.get('heard')}")

    @property
    def connections(self) -> int:
        return self.app._websocket[1].connections


@pytest.fixture
def witness() -> Iterator[tuple[Witness, str]]:
    w = Witness()
    with running_server(w.app) as address:
        yield w, address


async def _settled(witness: Witness, client: httpx.AsyncClient, baseline: int) -> None:
    # Until the server is back to the tasks it had before the call (and at most 5 s).
    for _ in range(100):
        if (await client.get("/tasks")).json() <= baseline and "cleanup" in witness.log:
            return
        await asyncio.sleep(0.05)


async def test_a_hangup_over_http_cancels_the_running_handler_and_cleans_up(
    witness: tuple[Witness, str],
) -> None:
    w, address = witness
    async with httpx.AsyncClient(base_url=f"http://{address}", timeout=10) as client:
        baseline = (await client.get("/tasks")).json()
        assert (await client.post("/webhook", json=event("session_start"))).json()["text"] == "Welcome"
        held = await client.post("/webhook", json=event("user_speak", text="a question"))
        assert held.json()["text"] == DEFAULT_HOLD  # the handler runs on past the budget
        assert w.log == ["started"]
        assert (await client.post("/webhook", json=event("session_end"))).status_code == 204
        await _settled(w, client, baseline)
        assert (await client.get("/tasks")).json() <= baseline
    assert w.log == ["started", "cancelled", "cleanup", "ended with a question"]
    assert len(w.assistant.store) == 0  # type: ignore[arg-type]


async def test_a_hangup_over_websocket_cancels_the_running_handler_and_cleans_up(
    witness: tuple[Witness, str],
) -> None:
    w, address = witness
    async with httpx.AsyncClient(base_url=f"http://{address}") as client:
        baseline = (await client.get("/tasks")).json()
        async with connect(f"ws://{address}/ws") as ws:
            await ws.send(json.dumps(event("session_start")))
            assert json.loads(await ws.recv())["text"] == "Welcome"
            await ws.send(json.dumps(event("user_speak", text="a question")))
            assert json.loads(await asyncio.wait_for(ws.recv(), 5))["text"] == DEFAULT_HOLD
            await ws.send(json.dumps(event("session_end")))
            await _settled(w, client, baseline + 1)  # + the open connection's own task
        await _settled(w, client, baseline)
        assert (await client.get("/tasks")).json() <= baseline
    assert w.log == ["started", "cancelled", "cleanup", "ended with a question"]
    assert len(w.assistant.store) == 0  # type: ignore[arg-type]
    assert w.connections == 0


async def test_a_dropped_websocket_ends_its_calls_and_leaks_nothing(witness: tuple[Witness, str]) -> None:
    w, address = witness
    async with httpx.AsyncClient(base_url=f"http://{address}") as client:
        baseline = (await client.get("/tasks")).json()
        ws = await connect(f"ws://{address}/ws")
        for call in ("one", "two"):
            await ws.send(json.dumps(event("session_start", call)))
            assert json.loads(await asyncio.wait_for(ws.recv(), 5))["text"] == "Welcome"
            await ws.send(json.dumps(event("user_speak", call, text=f"{call} asks")))
            assert json.loads(await asyncio.wait_for(ws.recv(), 5))["text"] == DEFAULT_HOLD
        assert w.connections == 1
        ws.transport.abort()  # no close frame: the network went away
        await _settled(w, client, baseline)
        for _ in range(50):
            if len(w.log) == 8:
                break
            await asyncio.sleep(0.05)
        assert (await client.get("/tasks")).json() <= baseline
    each = ["started", "cancelled", "cleanup"]
    assert sorted(w.log) == sorted([*each, *each, "ended with one asks", "ended with two asks"])
    assert len(w.assistant.store) == 0  # type: ignore[arg-type]
    assert w.connections == 0


# -- handlers that misbehave ---------------------------------------------------------------------


def _unruly() -> Assistant:
    assistant = Assistant(budget=0.2, max_holds=1)

    @assistant.on_user_speak
    async def speak(ev: UserSpeak, call: Call) -> Any:
        call.state["n"] = call.state.get("n", 0) + 1
        if ev.text == "raise":
            raise KeyError("bug")
        if ev.text == "garbage":
            return {"not": "an action"}
        if ev.text == "objects":
            return [object()]
        if ev.text == "hang":
            await asyncio.Event().wait()
        return f"answer {call.state['n']}"

    return assistant


@pytest.mark.parametrize("transport", ["http", "ws"])
async def test_a_handler_that_raises_hangs_or_returns_garbage_does_not_end_the_call(transport: str) -> None:
    with running_server(create_app(_unruly())) as address:
        url = f"http://{address}/webhook" if transport == "http" else f"ws://{address}/ws"
        async with Emulator(url, deadline=2.0, reply_window=0.5).call() as call:
            await call.say("raise")
            assert call.last_said == DEFAULT_FALLBACK
            await call.say("garbage")
            assert call.last_said == DEFAULT_FALLBACK
            await call.say("objects")
            assert call.last_said == DEFAULT_FALLBACK
            await call.say("hang")
            assert call.last_said == DEFAULT_HOLD
            await call.listen()  # the hold plays; still nothing: the give-up
            assert call.said[-1] == DEFAULT_GIVE_UP
            await call.say("fine")  # the hung handler was given up on; the call goes on
            assert call.last_said == "answer 5"


# -- Redis restarts, workers die ---------------------------------------------------------------


@pytest.mark.parametrize("transport", ["http", "ws"])
async def test_a_redis_restart_mid_call_fails_one_turn_clearly_and_keeps_the_state(
    tmp_path: Path, transport: str
) -> None:
    port = free_port()
    data = tmp_path / "redis"
    data.mkdir()
    first = ExitStack()
    url = first.enter_context(redis_server(port, data_dir=data))
    log = tmp_path / "server.log"
    with aiflow_serve(SERVED, "--redis", url, log=log) as (base, _):
        target = f"http://{base}/webhook" if transport == "http" else f"ws://{base}/ws"
        async with Emulator(target, timeout=15).call() as call:
            await call.say("hello")
            assert call.last_said == "Answer 2: hello."
            first.close()  # Redis goes away mid-call
            await call.say("lost")
            assert call.last_said == DEFAULT_FALLBACK  # this turn fails, the caller hears why not
            with redis_server(port, data_dir=data):  # back, from its append-only file
                await call.say("after")
                # start + hello were written before the restart and are there after it.
                assert call.last_said == "Answer 3: after."
                await call.hangup()
    text = log.read_text()
    assert "the call state could not be loaded or stored" in text or "failed in session" in text
    assert "Connection" in text  # the logged reason names the lost connection


async def test_a_killed_worker_mid_call_leaves_the_call_to_the_other(redis_url: str, tmp_path: Path) -> None:
    with ExitStack() as stack:
        a, proc_a = stack.enter_context(aiflow_serve(SERVED, "--redis", redis_url, log=tmp_path / "a.log"))
        b, _ = stack.enter_context(aiflow_serve(SERVED, "--redis", redis_url, log=tmp_path / "b.log"))
        call = "killed-worker-call"
        async with httpx.AsyncClient(timeout=10) as client:

            async def send(worker: str, kind: str, **fields: Any) -> str | None:
                reply = await client.post(f"http://{worker}/webhook", json=event(kind, call, **fields))
                return reply.json()["text"] if reply.status_code == 200 else None

            assert await send(a, "session_start") == "Welcome."
            assert await send(a, "user_speak", text="hello") == "Answer 2: hello."
            assert await send(a, "user_speak", text="slow 30") == DEFAULT_HOLD  # A holds the turn
            proc_a.send_signal(signal.SIGKILL)
            proc_a.wait(10)
            started = asyncio.get_running_loop().time()
            answer = await send(b, "user_speak", text="after")
            while answer is None or answer == DEFAULT_HOLD:
                await asyncio.sleep(1.0)  # the hold plays, then the service says it ended
                answer = await send(b, "assistant_speech_ended")
                assert asyncio.get_running_loop().time() - started < 15, "B waited for the dead worker"
            # A's state up to its last completed turn, then B's answer: the call goes on.
            assert answer == "Answer 3: after."
            assert await send(b, "dtmf_received", digit="1") == "Log: start, hello, after, key 1"
    assert "has a live lease" in (tmp_path / "b.log").read_text()  # the dead worker's turn
