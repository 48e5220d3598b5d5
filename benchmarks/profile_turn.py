"""Where the time of one event goes: ``python -m benchmarks.profile_turn``.

Drives ``user_speak`` events of many calls through ``Assistant.serve`` (the webhook's path, no
sockets) on uvloop, for the echo handler taking ``(event)`` and the same handler taking
``(event, call)`` and counting turns in ``call.state``. Prints CPU µs per event for both, the pieces
of a stateful turn timed alone, then, from ``cProfile``, the functions of the stateful turn that
cost the most (inclusive time per event, inflated by the profiler).
"""

from __future__ import annotations

import cProfile
import pstats
import statistics
import time
import timeit
from collections.abc import Callable
from typing import Any

import orjson
import uvloop

from sipgate_ai_flow import Assistant, Call, Speak, UserSpeak
from sipgate_ai_flow.protocol.codec import dump_actions, parse_event
from sipgate_ai_flow.state.base import CallRecord, dump_record, load_record

CALLS = 200
ROUNDS = 50


def _assistants() -> dict[str, Assistant]:
    stateless, stateful = Assistant(), Assistant()

    @stateless.on_user_speak
    async def echo(event: UserSpeak) -> str:
        return f"You said: {event.text}"

    @stateful.on_user_speak
    async def counting(event: UserSpeak, call: Call) -> str:
        call.state["turns"] = call.state.get("turns", 0) + 1
        return f"You said: {event.text}"

    return {"(event)": stateless, "(event, call) + call.state": stateful}


def _bodies(kind: str, **fields: Any) -> list[bytes]:
    return [orjson.dumps({"type": kind, "session": {"id": f"call-{n}"}, **fields}) for n in range(CALLS)]


async def _per_event(assistant: Assistant, bodies: list[bytes]) -> float:
    sent: list[bytes | None] = []

    async def reply(actions: list[Any]) -> None:
        sent.append(dump_actions(actions))

    # CPU time of this process: on a shared machine, time spent waiting for a core is not counted.
    started = time.process_time_ns()
    for _ in range(ROUNDS):
        for body in bodies:
            await assistant.serve(parse_event(body), reply=reply)
    return (time.process_time_ns() - started) / (ROUNDS * len(bodies)) / 1000


async def _main() -> None:
    speak = _bodies("user_speak", text="This is round 1 of call 1, please say it back.")
    assistants = _assistants()
    for assistant in assistants.values():
        for body in _bodies("session_start"):
            await assistant.serve(parse_event(body), reply=_ignore)
        await _per_event(assistant, speak)  # warm up
    runs: dict[str, list[float]] = {name: [] for name in assistants}
    for _ in range(7):  # alternating, so a busy moment of the machine weighs on both
        for name, assistant in assistants.items():
            runs[name].append(await _per_event(assistant, speak))
    for name, times in runs.items():
        print(
            f"user_speak, handler {name}: {statistics.median(times):.1f} µs per event "
            f"(best of 7: {min(times):.1f})"
        )
    _pieces(speak[0])
    profile = cProfile.Profile()
    profile.enable()
    await _per_event(assistants["(event, call) + call.state"], speak)
    profile.disable()
    events = ROUNDS * CALLS
    rows = [
        (
            f.cumtime / events * 1e6,
            int(f.ncalls.split("/")[0]) / events,
            f"{_short(f.file_name)}:{f.line_number} {name}",
        )
        for name, f in pstats.Stats(profile).get_stats_profile().func_profiles.items()
        if "sipgate_ai_flow" in f.file_name or "json" in f.file_name or "pydantic" in f.file_name
    ]
    print("\ninclusive µs per event (under cProfile, so inflated), calls per event, function:")
    for cost, calls, where in sorted(rows, reverse=True)[:40]:
        print(f"{cost:8.2f} {calls:6.1f}  {where}")


def _short(path: str) -> str:
    return path.rsplit("site-packages/", 1)[-1].rsplit("/src/", 1)[-1]


def _pieces(body: bytes) -> None:
    event = parse_event(body)
    record = CallRecord(state={"turns": 3}, starts=1)
    text = dump_record(record)
    session = event.session
    speak = Speak(text="You said: hi", session_id=session.id)
    pieces: dict[str, Callable[[], object]] = {
        "parse_event (bytes -> UserSpeak)": lambda: parse_event(body),
        "load_record (the memory store's load)": lambda: load_record(text),
        "dump_record (the memory store's save)": lambda: dump_record(record),
        "Call(...) for the handler": lambda: Call(session, record.state),
        "Speak(...) from the str reply": lambda: Speak(text="You said: hi", session_id=session.id),
        "dump_actions (reply -> bytes)": lambda: dump_actions([speak]),
    }
    print("\npieces of a stateful turn, timed alone (µs):")
    for name, piece in pieces.items():
        print(f"{min(timeit.repeat(piece, number=20000, repeat=5)) / 20000 * 1e6:8.2f}  {name}")


async def _ignore(actions: list[Any]) -> None:
    return None


if __name__ == "__main__":
    uvloop.run(_main())
