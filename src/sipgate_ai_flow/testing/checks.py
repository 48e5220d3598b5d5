"""What the emulator checks of each reply, and how it reports what it finds (violations)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal, NamedTuple

from pydantic import AfterValidator, BaseModel

from sipgate_ai_flow.errors import AiFlowError, FieldError, InvalidActionError, kind_of
from sipgate_ai_flow.protocol.actions import Action
from sipgate_ai_flow.protocol.codec import parse_action
from sipgate_ai_flow.protocol.config import (
    BARGE_IN_STRATEGIES,
    TTS_PROVIDERS,
    BargeInConfig,
    TtsConfig,
)

__all__ = [
    "Problem",
    "Regex",
    "StrictModeError",
    "Violation",
    "ViolationKind",
    "check_action",
    "decode_body",
    "unknown_values",
]

ViolationKind = Literal[
    "invalid_action",
    "missing_session_id",
    "wrong_session_id",
    "text_and_ssml",
    "bad_audio",
    "action_after_end",
    "speech_cut_off",
    "reply_to_session_end",
    "slow_reply",
    "bad_status",
    "not_json",
    "transport_error",
    "unknown_value",
]


def _compiles(value: str) -> str:
    try:
        re.compile(value)
    except re.error as exc:
        raise ValueError(f"not a regular expression: {exc}") from None
    return value


Regex = Annotated[str, AfterValidator(_compiles)]
"""A string field of a test file that must be a regular expression."""


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


class Problem(NamedTuple):
    """One thing wrong with an action; ``path`` is the field (``""`` for the whole action)."""

    kind: ViolationKind
    message: str
    path: str = ""
    fields: tuple[FieldError, ...] = ()
    """For ``invalid_action`` and ``bad_audio``: each invalid field with its own message."""


def check_action(raw: Any, session_id: str | None) -> tuple[Action | None, list[Problem]]:
    """Validate one action as received; return it parsed (if usable) and what is wrong with it.

    ``session_id`` is the call's; ``None`` checks only that the action carries one.
    """
    if not isinstance(raw, dict):
        return None, [Problem("invalid_action", f"an action must be a JSON object, got {kind_of(raw)}")]
    problems: list[Problem] = []
    sid = raw.get("session_id")
    if sid is None:
        problems.append(
            Problem("missing_session_id", f"{raw.get('type', 'action')} has no session_id", "session_id")
        )
    elif session_id is not None and sid != session_id:
        message = f"session_id {sid!r} is not this call's ({session_id!r})"
        problems.append(Problem("wrong_session_id", message, "session_id"))
    if raw.get("type") == "speak" and raw.get("text") is not None and raw.get("ssml") is not None:
        problems.append(Problem("text_and_ssml", "speak sets both 'text' and 'ssml'; set exactly one"))
        return None, problems
    try:
        action = parse_action(raw)
    except InvalidActionError as exc:
        audio = [e for e in exc.errors if e.path.split(".")[-1] == "audio"]
        kind: ViolationKind = "bad_audio" if audio else "invalid_action"
        problems.append(Problem(kind, str(exc), fields=tuple(exc.errors)))
        return None, problems
    problems += [Problem("unknown_value", message, path) for path, message in unknown_values(action)]
    return action, problems


def unknown_values(model: BaseModel, where: str = "") -> list[tuple[str, str]]:
    """Values of open enums in ``model`` that no documented service knows, with their paths (D10).

    The models accept them, so an action for a newer service can be built; the service this
    SDK knows may not play them, so the emulator and ``aiflow validate`` say so.
    """
    found: list[tuple[str, str]] = []
    prefix = f"{where}." if where else ""
    if isinstance(model, TtsConfig) and model.provider not in TTS_PROVIDERS:
        known = ", ".join(TTS_PROVIDERS)
        found.append((f"{prefix}provider", f"{model.provider!r} is not a known TTS provider ({known})"))
    if isinstance(model, BargeInConfig) and model.strategy not in BARGE_IN_STRATEGIES:
        known = ", ".join(BARGE_IN_STRATEGIES)
        found.append((f"{prefix}strategy", f"{model.strategy!r} is not a known barge-in strategy ({known})"))
    for name in type(model).model_fields:
        value = getattr(model, name)
        if isinstance(value, BaseModel):
            found += unknown_values(value, f"{prefix}{name}")
    return found
