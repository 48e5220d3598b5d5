"""An assistant the tests serve as real ``aiflow serve`` processes.

Its state records which process handled each event, so the multi-worker test can tell that the
events of one call really went to different workers and still saw one state. Ended calls are
written to the file named by ``ENDED_FILE``, for the shutdown test.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from typing import Any

from sipgate_ai_flow import Assistant, Call, DtmfReceived, SessionEnd, SessionStart, UserSpeak

assistant = Assistant(budget=0.3)


def note(call: Call, what: str) -> None:
    call.state.setdefault("log", []).append(what)
    call.state.setdefault("pids", []).append(os.getpid())


@assistant.on_session_start
async def start(event: SessionStart, call: Call) -> str:
    if event.session.from_phone_number.endswith("999"):
        await asyncio.sleep(0.9)  # a slow CRM lookup, longer than the budget
    note(call, "start")
    return "Welcome."


@assistant.on_user_speak
async def speak(event: UserSpeak, call: Call) -> Any:
    note(call, event.text)
    command, _, arg = event.text.partition(" ")
    if command == "slow":
        try:
            await asyncio.sleep(float(arg))
        except asyncio.CancelledError:
            note(call, f"cancelled {event.text}")
            raise
        return f"Slow answer {len(call.state['log'])}."
    if command == "stream":
        return stream(call)
    return f"Answer {len(call.state['log'])}: {event.text}."


async def stream(call: Call) -> AsyncIterator[str]:
    for n in range(1, 4):
        await asyncio.sleep(0.2)
        yield f"Part {n}."
    note(call, "streamed")


@assistant.on_dtmf_received
async def press(event: DtmfReceived, call: Call) -> str:
    if event.digit == "#":
        return f"Workers: {len(set(call.state['pids']))}."
    note(call, f"key {event.digit}")
    return "Log: " + ", ".join(call.state["log"])


@assistant.on_session_end
def end(event: SessionEnd) -> None:
    if "ENDED_FILE" in os.environ:
        with open(os.environ["ENDED_FILE"], "a", encoding="utf-8") as ended:
            ended.write(event.session.id + "\n")
