"""The assistant the soak serves: answers that name the call, so a lost or misrouted action shows,
plus ``GET /debug/counts`` with what the server holds (RSS, tasks, per-call objects)."""

from __future__ import annotations

import asyncio
import gc
import os
from collections import Counter

import psutil
from starlette.requests import Request
from starlette.responses import JSONResponse

from sipgate_ai_flow import Assistant, Call, DtmfReceived, SessionStart, UserSpeak
from sipgate_ai_flow.server import create_app

assistant = Assistant(token=os.environ.get("AIFLOW_TOKEN"))


@assistant.on_session_start
async def start(event: SessionStart, call: Call) -> str:
    call.state["turns"] = 0
    return f"hello {call.id}"


@assistant.on_user_speak
async def speak(event: UserSpeak, call: Call) -> str:
    call.state["turns"] += 1
    if event.text.startswith("wait"):
        await asyncio.sleep(0.01)  # some calls take a trip through the event loop
    return f"{call.id} {call.state['turns']} {event.text}"


@assistant.on_dtmf_received
async def press(event: DtmfReceived, call: Call) -> str:
    return f"{call.id} key {event.digit} after {call.state['turns']}"


async def counts(_: Request) -> JSONResponse:
    """What this process holds right now, after a full garbage collection."""
    gc.collect()
    ours: Counter[str] = Counter()
    for obj in gc.get_objects():
        module = getattr(type(obj), "__module__", None)  # not always a str on C types
        if isinstance(module, str) and module.startswith("sipgate_ai_flow."):
            ours[type(obj).__qualname__] += 1
    return JSONResponse(
        {
            "rss": psutil.Process().memory_info().rss,
            "tasks": len(asyncio.all_tasks()),
            "calls_in_store": len(assistant.store),  # type: ignore[arg-type]
            "objects": dict(ours),
        }
    )


app = create_app(assistant)
app.add_route("/debug/counts", counts)
