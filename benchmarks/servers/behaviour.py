"""The echo behaviour every assistant in the benchmark has, for the hand-written Python peers."""

from __future__ import annotations

import hmac
import os
from typing import Any

import orjson

TOKEN = os.environ.get("BENCH_TOKEN", "bench-token").encode()
GREETING = "Hello! Say something."


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
