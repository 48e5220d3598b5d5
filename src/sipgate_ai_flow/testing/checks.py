"""What the emulator checks of each reply, and how it reports what it finds (violations)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Literal

from sipgate_ai_flow.errors import AiFlowError, InvalidActionError
from sipgate_ai_flow.protocol.actions import Action
from sipgate_ai_flow.protocol.codec import parse_action

__all__ = ["StrictModeError", "Violation", "ViolationKind", "check_action", "decode_body"]

ViolationKind = Literal[
    "invalid_action",
    "missing_session_id",
    "wrong_session_id",
    "text_and_ssml",
    "bad_audio",
    "action_after_end",
    "reply_to_session_end",
    "slow_reply",
    "bad_status",
    "not_json",
    "transport_error",
]


@dataclass(frozen=True, slots=True)
class Violation:
    """One thing the assistant did that the AI Flow service would not accept.

    ``event`` is the type of the event the offending reply answered (``None`` for a WebSocket
    message sent on the assistant's own initiative), ``action`` the offending action as received.
    """

    kind: ViolationKind
    message: str
    event: str | None = None
    action: dict[str, Any] | None = field(default=None, compare=False)
    at_ms: float = field(default=0.0, compare=False)

    def __str__(self) -> str:
        where = f" (in reply to {self.event})" if self.event else ""
        return f"{self.kind}{where}: {self.message}"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form, as written to recordings."""
        return {
            "kind": self.kind,
            "message": self.message,
            "event": self.event,
            "action": self.action,
            "at_ms": round(self.at_ms, 1),
        }


class StrictModeError(AiFlowError, AssertionError):
    """A strict emulator met a violation; the call was failed at that point."""

    def __init__(self, violation: Violation) -> None:
        super().__init__(f"strict mode: {violation}")
        self.violation = violation


def decode_body(body: bytes | str) -> tuple[list[Any], str | None]:
    """Split a reply body into raw actions; the second item says why the body is not usable."""
    try:
        value = json.loads(body)
    except ValueError as exc:
        text = body if isinstance(body, str) else body.decode("utf-8", "replace")
        return [], f"the reply is not JSON ({exc}): {text[:80]!r}"
    if isinstance(value, list):
        return value, None
    return [value], None


def check_action(raw: Any, session_id: str) -> tuple[Action | None, list[tuple[ViolationKind, str]]]:
    """Validate one action as received; return it parsed (if usable) and what is wrong with it."""
    if not isinstance(raw, dict):
        return None, [("invalid_action", f"an action must be a JSON object, got {type(raw).__name__}")]
    problems: list[tuple[ViolationKind, str]] = []
    sid = raw.get("session_id")
    if sid is None:
        problems.append(("missing_session_id", f"{raw.get('type', 'action')} has no session_id"))
    elif sid != session_id:
        problems.append(("wrong_session_id", f"session_id {sid!r} is not this call's ({session_id!r})"))
    if raw.get("type") == "speak" and raw.get("text") is not None and raw.get("ssml") is not None:
        problems.append(("text_and_ssml", "speak sets both 'text' and 'ssml'; set exactly one"))
        return None, problems
    try:
        action = parse_action(raw)
    except InvalidActionError as exc:
        audio = [e for e in exc.errors if e.path.split(".")[-1] == "audio"]
        kind: ViolationKind = "bad_audio" if audio else "invalid_action"
        problems.append((kind, str(exc)))
        return None, problems
    return action, problems
