"""Instructions per event, for A/B comparisons that a busy machine cannot blur.

``valgrind --tool=callgrind python -m benchmarks.turn_instructions prom 5`` and the same with
``25``: the difference of the two totals over the 4,000 extra events is the cost of one stateful
``user_speak`` through ``Assistant.serve`` (the webhook path, no sockets), with the served
default's Prometheus observer (``prom``) or the no-op one (``noop``). Run each once before
timing it, so that both runs find the ``.pyc`` files already written.
"""

from __future__ import annotations

import sys
from typing import Any

import orjson
import uvloop

from sipgate_ai_flow import Assistant, Call, UserSpeak
from sipgate_ai_flow.protocol.codec import dump_actions, parse_event
from sipgate_ai_flow.server.metrics import PrometheusObserver

CALLS = 200


def main() -> None:
    """Drive ``CALLS`` calls' ``user_speak`` events ``rounds`` times."""
    observer, rounds = sys.argv[1], int(sys.argv[2])
    assistant = Assistant()

    @assistant.on_user_speak
    async def counting(event: UserSpeak, call: Call) -> str:
        call.state["turns"] = call.state.get("turns", 0) + 1
        return f"You said: {event.text}"

    if observer == "prom":
        assistant.observer = PrometheusObserver()
    bodies = [
        orjson.dumps({"type": "user_speak", "text": "hello there", "session": {"id": f"call-{n}"}})
        for n in range(CALLS)
    ]

    answered = 0

    async def reply(actions: list[Any]) -> None:
        nonlocal answered
        answered += dump_actions(actions) is not None

    async def drive() -> None:
        for _ in range(rounds):
            for body in bodies:
                await assistant.serve(parse_event(body), reply=reply)

    uvloop.run(drive())
    print(f"{answered} of {rounds * CALLS} events answered")


if __name__ == "__main__":
    main()
