"""Turn latency as the service sees it: from sending an event the caller waits on to the first
action that answers it.

A *turn* starts with each event after which a caller waits to hear something: ``session_start``,
``user_speak``, ``dtmf_received`` and ``user_input_timeout``. Its latency is real (wall-clock)
time, also when the call's clock is virtual: playback and silences take no time there, but the
assistant's work does. The first action is whatever arrives first, a hold included (that is what
the caller hears first). Over HTTP and in-process the event's reply answers the turn or leaves it
unanswered (204); over a WebSocket the first message that arrives before the next such event does.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["AWAITED_EVENTS", "Latency", "StepLatency", "Turn", "percentile"]

AWAITED_EVENTS = frozenset({"session_start", "user_speak", "dtmf_received", "user_input_timeout"})
"""Events after which the caller waits for an answer: each starts a :class:`Turn`."""


@dataclass(slots=True)
class Turn:
    """One event the caller waits on, and when the first action answering it arrived."""

    event: str
    """The event's type."""
    step: int
    """The call's step it belongs to (as in :attr:`Entry.step <.emulator.Entry.step>`)."""
    at_ms: float
    """When it was sent, in ms since the call started (on the call's clock)."""
    latency_ms: float | None = None
    """Real ms from sending the event to the first action; ``None`` while (or if) none came."""
    action: str | None = None
    """The type of that first action."""

    @property
    def answered(self) -> bool:
        """Whether an action answered the event."""
        return self.latency_ms is not None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form."""
        latency = None if self.latency_ms is None else round(self.latency_ms, 1)
        return {
            "event": self.event,
            "at_ms": round(self.at_ms, 1),
            "latency_ms": latency,
            "action": self.action,
        }


def percentile(values: Iterable[float], fraction: float) -> float | None:
    """The nearest-rank percentile (``fraction`` 0.5 for p50, 0.95 for p95): a value that was
    measured, never one between two; ``None`` for no values."""
    ordered = sorted(values)
    if not ordered:
        return None
    rank = max(math.ceil(fraction * len(ordered)), 1)
    return ordered[rank - 1]


@dataclass(frozen=True, slots=True)
class Latency:
    """p50, p95 and the maximum of first-action latencies (ms), and how many turns were answered
    or not."""

    count: int
    unanswered: int
    p50: float | None
    p95: float | None
    max: float | None

    @classmethod
    def of(cls, turns: Iterable[Turn]) -> Latency:
        """The figures of ``turns`` (unanswered ones are counted apart)."""
        listed = list(turns)
        values = [t.latency_ms for t in listed if t.latency_ms is not None]
        return cls.of_values(values, unanswered=len(listed) - len(values))

    @classmethod
    def of_values(cls, values: Iterable[float], *, unanswered: int = 0) -> Latency:
        """The figures of latencies in ms."""
        listed = list(values)
        return cls(
            len(listed),
            unanswered,
            percentile(listed, 0.5),
            percentile(listed, 0.95),
            max(listed, default=None),
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form (ms, rounded to 0.1)."""

        def rounded(value: float | None) -> float | None:
            return None if value is None else round(value, 1)

        return {
            "count": self.count,
            "unanswered": self.unanswered,
            "p50": rounded(self.p50),
            "p95": rounded(self.p95),
            "max": rounded(self.max),
        }

    def __str__(self) -> str:
        if self.p50 is None or self.p95 is None:
            return "no answered turns"
        return f"p50 {self.p50:.0f} ms, p95 {self.p95:.0f} ms"


@dataclass(slots=True)
class StepLatency:
    """The turns one caller step of a scenario started (step 0: the call's start), and the
    ``within_ms`` limit its expectation set, if any."""

    number: int
    description: str
    turns: list[Turn] = field(default_factory=list)
    within_ms: float | None = None

    @property
    def turn(self) -> Turn | None:
        """The step's turn: its last event the caller waits on (after the last key of "1234#")."""
        return self.turns[-1] if self.turns else None

    @property
    def latency_ms(self) -> float | None:
        """The first-action latency of :attr:`turn` (``None``: nothing answered it)."""
        return self.turns[-1].latency_ms if self.turns else None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form."""
        latency = self.latency_ms
        return {
            "step": self.number,
            "description": self.description,
            "latency_ms": None if latency is None else round(latency, 1),
            "within_ms": self.within_ms,
            "turns": [turn.to_dict() for turn in self.turns],
        }
