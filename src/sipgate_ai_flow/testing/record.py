"""Recordings of calls (JSON Lines) and replaying their caller side against an assistant.

A recording holds the caller's steps with their timing and everything the assistant answered.
Replaying plays the same steps again, in virtual time, and reports each step where the
assistant's actions now differ: a regression test made from a real conversation.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from sipgate_ai_flow.errors import FieldError
from sipgate_ai_flow.protocol.session import SessionInfo
from sipgate_ai_flow.testing.checks import StrictModeError
from sipgate_ai_flow.testing.emulator import EmulatedCall, Emulator, EmulatorError
from sipgate_ai_flow.testing.scenario import ScenarioError, Step
from sipgate_ai_flow.testing.transports import TransportError

__all__ = ["Difference", "Recording", "ReplayResult", "load_recording", "replay"]


@dataclass
class Recording:
    """A recorded call: its header, the caller's steps, and the actions that answered each step."""

    header: dict[str, Any]
    steps: list[dict[str, Any]]
    actions: list[list[dict[str, Any]]]
    end: dict[str, Any]

    @property
    def session(self) -> SessionInfo:
        """The recorded call's session."""
        return SessionInfo.model_validate(self.header["session"])


@dataclass(frozen=True)
class Difference:
    """A step after which the assistant now answers differently."""

    step: int
    description: str
    recorded: list[dict[str, Any]]
    replayed: list[dict[str, Any]]

    def __str__(self) -> str:
        return f"step {self.step} ({self.description}): {_explain(self.recorded, self.replayed)}"


@dataclass
class ReplayResult:
    """The differences found (none means the assistant behaves as recorded) and the new call."""

    call: EmulatedCall
    differences: list[Difference] = field(default_factory=list)
    error: str | None = None

    @property
    def same(self) -> bool:
        """Whether the replay matched the recording."""
        return not self.differences and self.error is None


def load_recording(path: str | Path) -> Recording:
    """Read a recording written by ``EmulatedCall.save`` or ``aiflow call --record``."""
    lines: list[dict[str, Any]] = []
    for number, text in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not text.strip():
            continue
        try:
            line = json.loads(text)
        except ValueError as exc:
            raise ScenarioError(
                f"{path}: not a recording", [FieldError(f"line {number}", str(exc))]
            ) from None
        if not isinstance(line, dict) or "kind" not in line:
            raise ScenarioError(
                f"{path}: not a recording",
                [FieldError(f"line {number}", "expected a JSON object with 'kind'")],
            )
        lines.append(line)
    if not lines or lines[0]["kind"] != "call":
        raise ScenarioError(
            f"{path}: not a recording", [FieldError("line 1", "expected the 'call' header line")]
        )
    steps = [line["step"] for line in lines if line["kind"] == "step"]
    for number, step in enumerate(steps):
        try:
            if "start" not in step:
                Step.model_validate(step)
        except ValidationError as exc:
            error = ScenarioError.from_validation_error(f"{path}: not a recording", exc)
            raise ScenarioError(
                error.summary, [FieldError(f"step {number}.{e.path}", e.message) for e in error.errors]
            ) from None
    actions: list[list[dict[str, Any]]] = [[] for _ in steps]
    for line in lines:
        if line["kind"] == "action" and 0 <= line.get("step", -1) < len(steps):
            actions[line["step"]].append(line["action"])
    end = next((line for line in lines if line["kind"] == "end"), {"at_ms": None})
    return Recording(lines[0], steps, actions, end)


async def replay(recording: Recording, emulator: Emulator) -> ReplayResult:
    """Play the recording's caller steps against the emulator's target and compare the answers."""
    options = recording.header.get("options", {})
    call = emulator.call(
        session=recording.session,
        transfer_answers=options.get("transfer_answers", True),
        sms_failure=options.get("sms_failure"),
    )
    call.options.words_per_minute = options.get("words_per_minute", call.options.words_per_minute)
    result = ReplayResult(call)
    try:
        for step in recording.steps:
            await (call.start() if "start" in step else Step.model_validate(step).run(call))
        if recording.end.get("at_ms") is not None and not call.ended:
            await call.wait_until(recording.end["at_ms"])
    except (StrictModeError, EmulatorError, TransportError) as exc:
        result.error = f"{type(exc).__name__}: {exc}"
    finally:
        if not call.ended:
            await call.hangup()
        await call.close()
    replayed: list[list[dict[str, Any]]] = [[] for _ in recording.steps]
    for entry in call.transcript:
        if entry.kind == "action" and entry.step < len(replayed):
            replayed[entry.step].append(entry.data)
    for index, step in enumerate(recording.steps):
        before, now = _comparable(recording.actions[index]), _comparable(replayed[index])
        if before != now:
            result.differences.append(Difference(index, _describe(step), before, now))
    return result


def _comparable(actions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    # Session ids differ between recordings of the same conversation; nothing else should.
    return [{k: v for k, v in a.items() if k != "session_id"} for a in actions]


def _describe(step: dict[str, Any]) -> str:
    return "call start" if "start" in step else Step.model_validate(step).describe()


def _short(action: dict[str, Any]) -> str:
    detail = (
        action.get("text") or action.get("ssml") or action.get("target_phone_number") or action.get("message")
    )
    return f"{action.get('type')} {detail!r}" if detail else str(action.get("type"))


def _explain(recorded: list[dict[str, Any]], replayed: list[dict[str, Any]]) -> str:
    for index, (before, now) in enumerate(zip(recorded, replayed, strict=False)):
        if before != now:
            return f"action {index + 1} was {_short(before)}, now {_short(now)}"
    if len(recorded) > len(replayed):
        return "missing now: " + ", ".join(_short(a) for a in recorded[len(replayed) :])
    return "new now: " + ", ".join(_short(a) for a in replayed[len(recorded) :])
