"""Part 1: the SDK's own cost per event, without sockets.

bytes in -> ``parse_event`` -> ``assistant.handle`` -> ``dump_actions`` -> bytes out, for the echo
assistant, against the floor: ``orjson.loads``, a dict lookup and ``orjson.dumps`` of the same
payloads. Runs on uvloop, the loop ``aiflow serve`` uses.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Callable
from typing import Any

import orjson

from benchmarks.servers.aiflow_echo import assistant
from sipgate_ai_flow.protocol.codec import dump_actions, parse_event

SESSION = {
    "id": "bench-inprocess",
    "account_id": "bench-account",
    "phone_number": "4921100000",
    "direction": "inbound",
    "from_phone_number": "4915700000000",
    "to_phone_number": "4921100000",
}
EVENTS: dict[str, dict[str, Any]] = {
    "session_start": {"type": "session_start", "session": SESSION},
    "user_speak": {
        "type": "user_speak",
        "text": "This is round 1 of call 1, please say it back.",
        "session": SESSION,
    },
    "assistant_speech_ended": {"type": "assistant_speech_ended", "session": SESSION},
    "dtmf_received": {"type": "dtmf_received", "digit": "7", "session": SESSION},
    "session_end": {"type": "session_end", "session": SESSION},
}
REPEATS = 5


def _speak(event: dict[str, Any], text: str) -> dict[str, Any]:
    return {"type": "speak", "session_id": event["session"]["id"], "text": text}


FLOOR: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "session_start": lambda e: _speak(e, "Hello! Say something."),
    "user_speak": lambda e: _speak(e, f"You said: {e['text']}"),
    "dtmf_received": lambda e: _speak(e, f"You pressed {e['digit']}"),
}


def _floor(body: bytes, n: int) -> float:
    loads, dumps, table = orjson.loads, orjson.dumps, FLOOR
    started = time.perf_counter_ns()
    for _ in range(n):
        event = loads(body)
        answer = table.get(event["type"])
        if answer is not None:
            dumps(answer(event))
    return (time.perf_counter_ns() - started) / n


async def _ours(body: bytes, n: int) -> float:
    handle = assistant.handle
    started = time.perf_counter_ns()
    for _ in range(n):
        dump_actions(await handle(parse_event(body)))
    return (time.perf_counter_ns() - started) / n


async def _check(body: bytes) -> None:
    # Both sides must answer alike, or the comparison means nothing.
    ours = dump_actions(await assistant.handle(parse_event(body)))
    event = orjson.loads(body)
    answer = FLOOR.get(event["type"])
    floor = None if answer is None else answer(event)
    if (None if ours is None else orjson.loads(ours)) != floor:
        raise AssertionError(f"the SDK answered {ours!r}, the floor {floor!r}")


async def _measure(n: int) -> dict[str, Any]:
    rows = []
    await assistant.handle(parse_event(orjson.dumps(EVENTS["session_start"])))
    for name, event in EVENTS.items():
        body = orjson.dumps(event)
        await _check(body)
        ours = statistics.median([await _ours(body, n) for _ in range(REPEATS)])
        floor = statistics.median([_floor(body, n) for _ in range(REPEATS)])
        rows.append({"event": name, "aiflow_ns": ours, "floor_ns": floor, "ratio": ours / floor})
    total_ours = sum(r["aiflow_ns"] for r in rows) / len(rows)
    total_floor = sum(r["floor_ns"] for r in rows) / len(rows)
    return {
        "events": rows,
        "aiflow_ns": total_ours,
        "floor_ns": total_floor,
        "overall_ratio": total_ours / total_floor,
        "loop": type(asyncio.get_running_loop()).__module__,
    }


def run(n: int) -> dict[str, Any]:
    """Measure on uvloop when it is installed (it is, with uvicorn[standard])."""
    try:
        import uvloop  # noqa: PLC0415
    except ImportError:
        return asyncio.run(_measure(n))
    return uvloop.run(_measure(n))
