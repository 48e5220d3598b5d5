"""An assistant whose speed the caller's words choose, for the latency tests (served by them too).

It answers ``fast`` at once, ``slow`` after 600 ms, ``crawl`` after 1.5 s and ``nothing`` never;
of the keypad only ``#``, at once (the keys before it are a PIN being typed).
"""

from __future__ import annotations

import asyncio

from sipgate_ai_flow import Assistant, DtmfReceived, SessionStart, Speak, UserSpeak

SLOW_S = 0.6
DELAYS = {"slow": SLOW_S, "crawl": 1.5}


def make_bot(*, budget: float = 1.0) -> Assistant:
    """A fresh bot; with a ``budget`` below a delay the caller hears the hold first."""
    bot = Assistant(budget=budget)

    @bot.on_session_start
    async def greet(event: SessionStart) -> str:
        return "Hello."

    @bot.on_user_speak
    async def answer(event: UserSpeak) -> Speak | None:
        if event.text == "nothing":
            return None
        await asyncio.sleep(DELAYS.get(event.text, 0))
        return Speak(text=f"You said {event.text}.")

    @bot.on_dtmf_received
    async def keypad(event: DtmfReceived) -> str | None:
        return "Thank you." if event.digit == "#" else None

    return bot


assistant = make_bot()
