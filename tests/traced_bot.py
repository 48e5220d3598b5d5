"""Assistants the tracing tests serve as real ``aiflow serve`` processes.

``assistant``: answers ``slow`` after 0.6 s (its budget is 0.3 s, so the caller is held first),
fails on ``crash``, streams two sentences on ``stream`` and repeats anything else. ``agent``:
an LLM agent with one tool, on the fake model at ``OPENAI_BASE_URL``.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator

from sipgate_ai_flow import Assistant, Call, SessionStart, UserSpeak
from sipgate_ai_flow.llm import Agent, tool

assistant = Assistant(budget=float(os.environ.get("TRACED_BUDGET", "0.3")), hold="One moment, please.")


@assistant.on_session_start
async def greet(event: SessionStart, call: Call) -> str:
    return "Hello."


@assistant.on_user_speak
async def answer(event: UserSpeak, call: Call) -> AsyncIterator[str]:
    call.state["turns"] = call.state.get("turns", 0) + 1
    if event.text == "slow":
        await asyncio.sleep(0.6)
        yield "Sorry for the wait."
    elif event.text == "crash":
        raise RuntimeError("a bug")
    elif event.text == "stream":
        yield "First sentence."
        await asyncio.sleep(0.05)
        yield "Second sentence."
    else:
        yield f"You said {event.text}"


@tool
def opening_hours(day: str) -> str:
    """The opening hours of one day.

    Args:
        day: the weekday in English, lower case
    """
    return "9 to 5"


agent = Agent("You are a receptionist.", model="fake", greeting="Hello.", tools=[opening_hours]).attach(
    Assistant()
)
