"""What a production deployment relies on: Prometheus metrics, several workers, graceful shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import signal
from pathlib import Path

import httpx
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from sipgate_ai_flow import Assistant, Call, UserSpeak
from sipgate_ai_flow.testing import Emulator
from tests.helpers import aiflow_serve, event, running_server

TARGET = "tests/served_bot.py:assistant"


def metric(text: str, name: str, labels: str = "") -> float:
    """The value of one sample in a Prometheus text page (0 when it is not there)."""
    pattern = re.escape(name) + (re.escape("{" + labels + "}") if labels else "") + r" ([0-9.e+-]+)"
    match = re.search("^" + pattern + "$", text, re.M)
    return float(match.group(1)) if match else 0.0


async def test_metrics_count_what_the_runtime_does() -> None:
    async def speak(ev: UserSpeak, call: Call) -> str:
        if ev.text == "crash":
            raise RuntimeError("bug")
        if ev.text == "slow":
            await asyncio.sleep(0.4)
        return "ok"

    assistant = Assistant(budget=0.2, on_user_speak=speak)
    with running_server(assistant) as address:
        emulator = Emulator(f"http://{address}/webhook")
        async with httpx.AsyncClient(base_url=f"http://{address}") as client:
            async with emulator.call() as call:
                await call.say("slow")
                await call.listen()
                await call.say("crash")
                await call.say("hi")
                during = (await client.get("/metrics")).text
            after = (await client.get("/metrics")).text
            await client.post("/webhook", content=b"not json")
            bad = (await client.get("/metrics")).text
    assert metric(during, "aiflow_active_calls") == 1
    assert metric(after, "aiflow_active_calls") == 0
    assert metric(during, "aiflow_events_total", 'type="user_speak"') == 3
    assert metric(after, "aiflow_events_total", 'type="session_end"') == 1
    assert metric(during, "aiflow_holds_total") == 1
    assert metric(during, "aiflow_budget_overruns_total", 'handler="on_user_speak"') == 1
    assert metric(during, "aiflow_handler_seconds_count", 'handler="on_user_speak"') == 3
    assert metric(during, "aiflow_handler_seconds_bucket", 'handler="on_user_speak",le="0.25"') == 2
    assert metric(during, "aiflow_errors_total", 'kind="handler"') == 1
    assert metric(bad, "aiflow_errors_total", 'kind="bad_input"') == 1


async def test_metrics_can_be_switched_off() -> None:
    from sipgate_ai_flow.server import create_app

    with running_server(create_app(Assistant(), metrics_path=None)) as address:
        async with httpx.AsyncClient(base_url=f"http://{address}") as client:
            assert (await client.get("/metrics")).status_code == 404


async def test_workers_share_redis_and_sum_their_metrics(redis_url: str, tmp_path: Path) -> None:
    args = ("--workers", "2", "--redis", redis_url)
    with aiflow_serve(TARGET, *args, log=tmp_path / "serve.log") as (base, _):
        emulator = Emulator(f"http://{base}/webhook")
        calls = 6
        for n in range(calls):  # new connections: the kernel spreads them over the workers
            async with emulator.call(session_id=f"w{n}") as call:
                await call.say("hello")
                await call.press("1")
                assert call.last_said == "Log: start, hello, key 1"
        async with httpx.AsyncClient(base_url=f"http://{base}") as client:
            page = (await client.get("/metrics")).text
    log = (tmp_path / "serve.log").read_text()
    assert "2 worker(s)" in log
    assert metric(page, "aiflow_events_total", 'type="session_start"') == calls  # all workers' counts
    assert metric(page, "aiflow_events_total", 'type="user_speak"') == calls


async def test_shutdown_finishes_requests_in_flight_and_ends_open_calls(tmp_path: Path) -> None:
    ended = tmp_path / "ended.txt"
    env = {"ENDED_FILE": str(ended)}
    with aiflow_serve(TARGET, log=tmp_path / "serve.log", env=env) as (base, process):
        async with connect(f"ws://{base}/ws") as ws, httpx.AsyncClient(base_url=f"http://{base}") as client:
            await ws.send(json.dumps(event("session_start", "ws-call")))
            assert json.loads(await ws.recv())["text"] == "Welcome."
            await client.post("/webhook", json=event("session_start", "http-call"))
            # A request whose handler is still working when the server is told to stop...
            in_flight = asyncio.create_task(
                client.post("/webhook", json=event("user_speak", "http-call", text="slow 0.25"), timeout=10)
            )
            await asyncio.sleep(0.1)
            process.send_signal(signal.SIGTERM)
            response = await in_flight
            # ...is answered in full; the open WebSocket call is closed and its cleanup runs.
            assert response.status_code == 200
            assert response.json()["text"] == "Slow answer 2."
            with contextlib.suppress(ConnectionClosed):
                await asyncio.wait_for(ws.recv(), 10)
        # uvicorn shuts down cleanly, then re-raises the signal so the exit status tells of it.
        assert process.wait(20) == -signal.SIGTERM
    assert ended.read_text().split() == ["ws-call"]
    log = (tmp_path / "serve.log").read_text()
    assert "Application shutdown complete" in log
    assert "Traceback" not in log


async def test_workers_leave_no_metrics_directory_behind(redis_url: str, tmp_path: Path) -> None:
    temp = tmp_path / "temp"
    temp.mkdir()
    args = ("--workers", "2", "--redis", redis_url)
    with aiflow_serve(TARGET, *args, log=tmp_path / "serve.log", env={"TMPDIR": str(temp)}) as (
        base,
        process,
    ):
        async with httpx.AsyncClient(base_url=f"http://{base}") as client:
            assert (await client.post("/webhook", json=event("session_start", "m"))).status_code == 200
            assert "aiflow_events_total" in (await client.get("/metrics")).text
        assert [path.name[:15] for path in temp.iterdir()] == ["aiflow-metrics-"]  # in use now
        process.send_signal(signal.SIGTERM)
        process.wait(20)
    assert list(temp.iterdir()) == []
