"""Our echo assistant, built with the SDK: what every peer in the benchmark does, written as users
write it: the handler takes ``(event, call)`` and keeps a turn counter in ``call.state``.

aiflow serve benchmarks/servers/aiflow_echo.py:assistant
BENCH_DELAY_MS=50 makes each user_speak handler await that much simulated I/O first.
"""

from __future__ import annotations

import asyncio
import os

from sipgate_ai_flow import Assistant, Call, DtmfReceived, SessionStart, UserSpeak

DELAY = int(os.environ.get("BENCH_DELAY_MS", "0")) / 1000

assistant = Assistant(token=os.environ.get("BENCH_TOKEN", "bench-token"))


@assistant.on_session_start
async def greet(event: SessionStart) -> str:
    return "Hello! Say something."


@assistant.on_user_speak
async def echo(event: UserSpeak, call: Call) -> str:
    call.state["turns"] = call.state.get("turns", 0) + 1
    if DELAY:
        await asyncio.sleep(DELAY)
    return f"You said: {event.text}"


@assistant.on_dtmf_received
async def key(event: DtmfReceived) -> str:
    return f"You pressed {event.digit}"
