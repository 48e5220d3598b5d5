"""An assistant for the Redis fault tests: it numbers its answers from the call's state.

Each ``user_speak`` answers ``Turn N.`` with N counted in ``call.state``, so two answers with one
number mean a lost update; ``dtmf_received`` says the count. With ``COUNTING_REDIS`` set it keeps
its state in that Redis through a pool of ``COUNTING_POOL`` connections (``aiflow serve`` without
``--redis``): a small pool makes commands wait for a connection, where cancels land.
"""

from __future__ import annotations

import asyncio
import os

from sipgate_ai_flow import Assistant, Call, DtmfReceived, UserSpeak

assistant = Assistant(budget=float(os.environ.get("COUNTING_BUDGET", "0.3")))
if "COUNTING_REDIS" in os.environ:
    from sipgate_ai_flow.state.redis import RedisStore

    assistant.store = RedisStore(
        os.environ["COUNTING_REDIS"], max_connections=int(os.environ.get("COUNTING_POOL", "100"))
    )


@assistant.on_user_speak
async def speak(event: UserSpeak, call: Call) -> str:
    call.state["turns"] = call.state.get("turns", 0) + 1
    if event.text.startswith("slow "):
        await asyncio.sleep(float(event.text.split()[1]))
    return f"Turn {call.state['turns']}."


@assistant.on_dtmf_received
async def press(event: DtmfReceived, call: Call) -> str:
    return f"Count {call.state.get('turns', 0)}."
