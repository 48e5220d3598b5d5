"""The Redis runtime under faults, through real processes: `aiflow serve --redis` workers on a real
`redis-server`, bursts and floods of one call's events, workers killed with SIGKILL, Redis stopped
and started again. What the caller hears in each case is in docs/reliability.md."""

from __future__ import annotations

import asyncio
import json
import signal
from collections.abc import AsyncIterator
from contextlib import ExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis
from websockets.asyncio.client import connect

from sipgate_ai_flow.assistant.assistant import DEFAULT_GIVE_UP, DEFAULT_HOLD
from sipgate_ai_flow.state.base import CallRecord
from sipgate_ai_flow.state.redis import RedisStore
from tests.helpers import aiflow_serve, event, free_port, redis_server

SERVED = "tests/served_bot.py:assistant"
COUNTING = "tests/counting_bot.py:assistant"
ORPHANED = "has a live lease"  # the log line of a turn that went ahead past a dead worker's

# Keeps Redis busy for ARGV[1] ms, as a slow command does: commands sent meanwhile wait in line.
STALL = """
local start = redis.call('TIME')
local function ms(t) return tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000 end
while ms(redis.call('TIME')) - ms(start) < tonumber(ARGV[1]) do end
return 1
"""


async def say(client: httpx.AsyncClient, worker: str, kind: str, call: str, **fields: Any) -> list[str]:
    """Send one event as the service does; the texts of the speak actions in the reply."""
    reply = await client.post(f"http://{worker}/webhook", json=event(kind, call, **fields))
    if reply.status_code == 204:
        return []
    assert reply.status_code == 200, reply.text
    body = reply.json()
    return [action["text"] for action in (body if isinstance(body, list) else [body]) if "text" in action]


@asynccontextmanager
async def inspecting(url: str) -> AsyncIterator[Redis]:
    """A plain client on the test's Redis, to look at a call's turn queue."""
    client = Redis.from_url(url)
    try:
        yield client
    finally:
        await client.aclose()


async def queue(redis: Redis, call: str, prefix: str = "aiflow:") -> tuple[int, int, list[bytes]]:
    """The call's last ticket drawn, last ticket served, and the leases still alive."""
    base = f"{prefix}{{{call}}}:"
    ticket, served = await redis.mget(base + "ticket", base + "served")
    alive = [key async for key in redis.scan_iter(match=base + "alive:*")]
    return int(ticket or 0), int(served or 0), alive


# -- 1. a stale turn cancelled while it draws its ticket ------------------------------------------


async def test_a_turn_cancelled_while_its_ticket_is_drawn_gives_the_ticket_back(redis_url: str) -> None:
    store = RedisStore(redis_url, prefix="cancelled-draw:")
    try:
        async with inspecting(redis_url) as redis:
            stall = asyncio.create_task(redis.eval(STALL, 0, 300))
            await asyncio.sleep(0.05)

            async def enter() -> None:
                async with store.turn("s"):
                    raise AssertionError("cancelled before its turn")

            entering = asyncio.create_task(enter())
            await asyncio.sleep(0.1)  # the draw waits in Redis behind the slow command
            entering.cancel()
            with pytest.raises(asyncio.CancelledError):
                await entering
            await stall
            ticket, served, alive = await queue(redis, "s", prefix="cancelled-draw:")
        assert (ticket, served, alive) == (1, 1, [])  # drawn, and given back: nobody waits for it
    finally:
        await store.close()


async def test_two_words_at_the_same_moment_get_the_answer_and_leave_the_queue_clean(
    redis_url: str, tmp_path: Path
) -> None:
    log = tmp_path / "serve.log"
    with aiflow_serve(SERVED, "--redis", redis_url, log=log) as (base, _):
        async with httpx.AsyncClient(timeout=10) as client, inspecting(redis_url) as redis:
            for n in range(20):
                call = f"burst-{n}"
                assert await say(client, base, "session_start", call) == ["Welcome."]
                # Redis is slow for a moment (a slow command) as the two events come in.
                stall = asyncio.create_task(redis.eval(STALL, 0, 100))
                await asyncio.sleep(0.005)
                first, second = await asyncio.gather(
                    say(client, base, "user_speak", call, text="one"),
                    say(client, base, "user_speak", call, text="two"),
                )
                await stall
                # Each is answered, or cancelled by the other (204): never held up.
                assert DEFAULT_HOLD not in first + second, (n, first, second)
                assert len(first + second) in (1, 2), (n, first, second)
                ticket, served, alive = await queue(redis, call)
                assert (ticket, alive) == (served, []), n  # no ticket left behind
                [log_line] = await say(client, base, "dtmf_received", call, digit="1")
                assert log_line.startswith("Log: start"), n  # at once: nobody waits for a lease
    assert ORPHANED not in log.read_text()  # no worker died, and none is said to have


async def test_a_flood_of_words_for_one_call_leaves_its_next_event_nothing_to_wait_for(
    redis_url: str, tmp_path: Path
) -> None:
    env = {"COUNTING_REDIS": redis_url, "COUNTING_BUDGET": "0.5"}
    log = tmp_path / "serve.log"
    with aiflow_serve(COUNTING, log=log, env=env) as (base, _):
        # Idle connections are dropped well before uvicorn's 5 s keep-alive ends: a request on a
        # connection the server is closing at that moment fails (on a busy machine, between rounds).
        limits = httpx.Limits(max_connections=200, keepalive_expiry=1.0)
        async with httpx.AsyncClient(timeout=30, limits=limits) as client, inspecting(redis_url) as redis:
            for n in range(3):
                call = f"flood-{n}"
                assert await say(client, base, "session_start", call) == []
                stall = asyncio.create_task(redis.eval(STALL, 0, 100))
                await asyncio.sleep(0.005)
                flood = [say(client, base, "user_speak", call, text="hi") for _ in range(200)]
                heard = [text for texts in await asyncio.gather(*flood) for text in texts]
                await stall
                texts = await say(client, base, "dtmf_received", call, digit="1")
                assert DEFAULT_HOLD not in heard + texts, (n, texts)  # nobody waited for a lease
                assert texts[-1].startswith("Count "), (n, texts)
                ticket, served, alive = await queue(redis, call)
                assert (ticket, alive) == (served, []), n
    assert ORPHANED not in log.read_text()


# -- 2. a worker killed after the hold --------------------------------------------------------


async def until_answered(client: httpx.AsyncClient, worker: str, call: str, texts: list[str]) -> list[str]:
    """While the caller hears holds: each plays (about a second), then the service says so."""
    for _ in range(10):
        if texts != [DEFAULT_HOLD]:
            return texts
        await asyncio.sleep(1.0)
        texts = await say(client, worker, "assistant_speech_ended", call)
    raise AssertionError("holds without end")


async def test_a_worker_killed_after_the_hold_leaves_the_caller_the_give_up(
    redis_url: str, tmp_path: Path
) -> None:
    call = "killed-after-the-hold"
    with ExitStack() as stack:
        a, proc_a = stack.enter_context(aiflow_serve(SERVED, "--redis", redis_url, log=tmp_path / "a.log"))
        b, _ = stack.enter_context(aiflow_serve(SERVED, "--redis", redis_url, log=tmp_path / "b.log"))
        async with httpx.AsyncClient(timeout=10) as client:
            assert await say(client, a, "session_start", call) == ["Welcome."]
            assert await say(client, a, "user_speak", call, text="slow 2.5") == [DEFAULT_HOLD]
            proc_a.send_signal(signal.SIGKILL)
            proc_a.wait(10)
            # The next events go to the live worker: another hold at most, then the give-up.
            assert await until_answered(client, b, call, [DEFAULT_HOLD]) == [DEFAULT_GIVE_UP]
            # The call goes on with the state of its last finished turn (A never saved "slow").
            texts = await say(client, b, "user_speak", call, text="after")
            assert await until_answered(client, b, call, texts) == ["Answer 2: after."]
    assert ORPHANED in (tmp_path / "b.log").read_text()


async def test_words_after_a_worker_died_before_its_hold_are_answered_without_a_give_up(
    redis_url: str, tmp_path: Path
) -> None:
    call = "killed-before-the-hold"
    with ExitStack() as stack:
        a, proc_a = stack.enter_context(aiflow_serve(SERVED, "--redis", redis_url, log=tmp_path / "a.log"))
        b, _ = stack.enter_context(aiflow_serve(SERVED, "--redis", redis_url, log=tmp_path / "b.log"))
        async with httpx.AsyncClient(timeout=10) as client:
            assert await say(client, a, "session_start", call) == ["Welcome."]
            lost = asyncio.create_task(say(client, a, "user_speak", call, text="slow 30"))
            await asyncio.sleep(0.1)  # A runs the handler; its budget has not run out
            proc_a.send_signal(signal.SIGKILL)
            proc_a.wait(10)
            with pytest.raises(httpx.TransportError):
                await lost  # the service gets no answer to that event
            texts = await say(client, b, "user_speak", call, text="again")  # B waits out A's lease
            assert await until_answered(client, b, call, texts) == ["Answer 2: again."]
    assert ORPHANED in (tmp_path / "b.log").read_text()


# -- 3. Redis restarts: every pooled connection is stale ------------------------------------------


@pytest.mark.parametrize("persistent", [True, False], ids=["append-only", "no-persistence"])
async def test_after_a_redis_restart_the_first_turns_of_every_call_are_answered(
    tmp_path: Path, persistent: bool
) -> None:
    port, data = free_port(), tmp_path / "redis"
    data.mkdir()
    first = ExitStack()
    url = first.enter_context(redis_server(port, data_dir=data if persistent else None))
    calls = [f"restart-{n}" for n in range(20)]
    with aiflow_serve(SERVED, "--redis", url, log=tmp_path / "serve.log") as (base, _):
        async with httpx.AsyncClient(timeout=10, limits=httpx.Limits(max_connections=50)) as client:

            async def everyone(text: str) -> list[list[str]]:
                return await asyncio.gather(*(say(client, base, "user_speak", c, text=text) for c in calls))

            await asyncio.gather(*(say(client, base, "session_start", c) for c in calls))
            assert await everyone("before") == [["Answer 2: before."]] * len(calls)  # a pool full
            first.close()
            await asyncio.sleep(2.0)  # Redis is away; no event comes meanwhile
            with redis_server(port, data_dir=data if persistent else None):
                # With its append-only file Redis has the calls back; without, they start afresh.
                expected = "Answer 3: after." if persistent else "Answer 1: after."
                assert await everyone("after") == [[expected]] * len(calls)
    assert "Traceback" not in (tmp_path / "serve.log").read_text()


# -- 4. Redis fails while a late answer is on its way -----------------------------------------


async def test_a_late_answer_over_websocket_reaches_the_caller_when_redis_fails_meanwhile(
    tmp_path: Path,
) -> None:
    first = ExitStack()
    url = first.enter_context(redis_server())
    log = tmp_path / "serve.log"
    with aiflow_serve(SERVED, "--redis", url, log=log) as (base, _), first:
        async with connect(f"ws://{base}/ws") as ws:

            async def heard() -> str:
                return str(json.loads(await asyncio.wait_for(ws.recv(), 10))["text"])

            await ws.send(json.dumps(event("session_start", "ws-late")))
            assert await heard() == "Welcome."
            await ws.send(json.dumps(event("user_speak", "ws-late", text="slow 1.5")))
            assert await heard() == DEFAULT_HOLD
            first.close()  # Redis goes away while the handler works
            assert await heard() == "Slow answer 2."  # the answer, not silence
    assert "could not note an answer in the store" in log.read_text()


async def test_an_answer_over_websocket_is_not_followed_by_the_fallback_when_redis_fails_before_the_hold(
    tmp_path: Path,
) -> None:
    first = ExitStack()
    url = first.enter_context(redis_server())
    with aiflow_serve(SERVED, "--redis", url, log=tmp_path / "serve.log") as (base, _), first:
        async with connect(f"ws://{base}/ws") as ws:
            await ws.send(json.dumps(event("session_start", "ws-no-hold")))
            assert json.loads(await asyncio.wait_for(ws.recv(), 10))["text"] == "Welcome."
            await ws.send(json.dumps(event("user_speak", "ws-no-hold", text="slow 1")))
            await asyncio.sleep(0.1)
            first.close()  # Redis goes away before the budget runs out: no hold can be counted
            assert json.loads(await asyncio.wait_for(ws.recv(), 10))["text"] == "Slow answer 2."
            with pytest.raises(TimeoutError):  # the caller heard the answer: no apology after it
                await asyncio.wait_for(ws.recv(), 1.0)


# -- 5. a save cancelled while it waits for a connection ----------------------------------------


async def test_a_save_cancelled_while_it_waits_for_a_connection_is_stored_before_the_cancel(
    redis_url: str,
) -> None:
    store = RedisStore(redis_url, prefix="cancelled-save:", max_connections=1)
    try:
        busy = asyncio.create_task(store.redis.blpop(["nothing"], timeout=0.3))  # the one connection
        await asyncio.sleep(0.05)
        saving = asyncio.create_task(store.save("s", CallRecord(state={"turns": 1})))
        await asyncio.sleep(0.05)
        saving.cancel()  # the caller spoke again: the turn is stale
        with pytest.raises(asyncio.CancelledError):
            await saving
        record = await store.load("s")  # the next turn's load: the state is there
        await busy
        assert record is not None
        assert record.state == {"turns": 1}
    finally:
        await store.close()


async def test_a_turn_cancelled_while_its_save_waits_for_a_connection_keeps_its_state(
    redis_url: str, tmp_path: Path
) -> None:
    # The server's pool has 2 connections: one holds the interrupt subscription, so commands take
    # turns on the other. The second words' begin takes it while Redis is slow; the first turn's
    # save waits for it; the begin comes back and cancels the first turn as stale.
    env = {"COUNTING_REDIS": redis_url, "COUNTING_POOL": "2", "COUNTING_BUDGET": "5"}
    with aiflow_serve(COUNTING, log=tmp_path / "serve.log", env=env) as (base, _):
        async with httpx.AsyncClient(timeout=30) as client, inspecting(redis_url) as redis:
            for round_ in range(5):
                call = f"save-{round_}"
                await say(client, base, "session_start", call)
                first = asyncio.create_task(say(client, base, "user_speak", call, text="slow 0.3"))
                await asyncio.sleep(0.1)  # the first turn's handler runs
                stall = asyncio.create_task(redis.eval(STALL, 0, 400))
                await asyncio.sleep(0.05)
                second = asyncio.create_task(say(client, base, "user_speak", call, text="hi"))
                texts = [*await first, *await second]
                await stall
                texts += await say(client, base, "dtmf_received", call, digit="1")
                # Each answer counts from the state the one before it left.
                assert texts == ["Turn 1.", "Turn 2.", "Count 2."], (round_, texts)
