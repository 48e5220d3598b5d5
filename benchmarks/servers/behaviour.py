"""The echo behaviour every assistant in the benchmark has, for the hand-written Python peers."""

from __future__ import annotations

import hmac
import os
from typing import Any

import orjson

TOKEN = os.environ.get("BENCH_TOKEN", "bench-token").encode()
GREETING = "Hello! Say something."
ROUNDS = 10


def authorized(given: bytes | None) -> bool:
    """Constant-time check of the shared secret."""
    return given is not None and hmac.compare_digest(given, TOKEN)


def answer(body: bytes | str) -> bytes | None:
    """The reply to one event: JSON bytes, or ``None`` for no action. ``ValueError`` if bad."""
    event: Any = orjson.loads(body)
    try:
        kind = event["type"]
        session_id = event["session"]["id"]
    except (KeyError, TypeError):
        raise ValueError("not an event") from None
    if kind == "session_start":
        text = GREETING
    elif kind == "user_speak":
        text = f"You said: {event['text']}"
    elif kind == "dtmf_received":
        text = f"You pressed {event['digit']}"
    else:
        return None
    return orjson.dumps({"type": "speak", "session_id": session_id, "text": text})


def call_script(call: int, prefix: str = "call") -> list[tuple[dict[str, Any], str | None]]:
    """One call as the load generator (``benchmarks/node/loadgen.js``) plays it: each event, and
    the text of the ``speak`` it must get (``None``: no answer)."""
    session = {"id": f"{prefix}-{call}", "account_id": "a", "phone_number": "+4921100000"}
    steps: list[tuple[dict[str, Any], str | None]] = [
        ({"type": "session_start", "session": session}, GREETING)
    ]
    for n in range(ROUNDS):
        text = f"This is round {n} of call {call}, please say it back."
        steps.append(({"type": "user_speak", "text": text, "session": session}, f"You said: {text}"))
        steps.append(({"type": "assistant_speech_ended", "session": session}, None))
    steps.append(({"type": "dtmf_received", "digit": "7", "session": session}, "You pressed 7"))
    steps.append(({"type": "session_end", "session": session}, None))
    return steps
