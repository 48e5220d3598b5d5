"""Hooks the runtime calls as it works, for metrics and traces. The default observer does nothing.

Two kinds of hooks: counters (``event``, ``handled``, ``hold``, ...) that take plain values, and
*turn* hooks that take the turn itself (a :class:`Turn`: the event, its handler, when it arrived)
so that an observer can follow one turn from the event to the caller hearing the answer:

``turn_began`` → ``turn_running`` (the handler starts, in the turn's own context) →
``turn_handled`` (it is done) →
``turn_sent`` (output of the turn left for the caller; ``hold=True`` for a hold) /
``turn_queued`` (a webhook turn's output after its reply went: it waits for the next reply) →
``turn_ended`` (with the turn's :data:`Outcome`).

``turn_overdue`` (its budget ran out while it ran) and ``turn_failed`` (its handler raised; the
caller hears the fallback) come in between. A turn keeps a slot for an observer's own data,
``turn.observed`` (``None`` at first), so observers need no table of their own; the helpers
:func:`note` and :func:`outcome_of` keep a turn's story as bits in it.

The default methods do nothing and allocate nothing: with the no-op observer a turn costs a few
method calls more than before these hooks existed (about 0.4 µs); the Prometheus observer keeps a
turn's story in ``turn.observed`` as an int and its figures as plain numbers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal, Protocol

if TYPE_CHECKING:
    from sipgate_ai_flow.assistant.handlers import Handler
    from sipgate_ai_flow.protocol.events import EventBase

__all__ = [
    "ANSWERED",
    "FAILED",
    "HELD",
    "LATE",
    "OVERDUE",
    "SENT",
    "ErrorKind",
    "Observer",
    "ObserverWrapper",
    "Outcome",
    "Turn",
    "note",
    "outcome_of",
]

ErrorKind = Literal["handler", "state", "server", "bad_input"]

Outcome = Literal["answered", "late", "held", "stale", "failed", "silent"]
"""How a turn ended, as the caller experienced it:

- ``answered``: its answer went out within the budget;
- ``late``: its answer went out after the budget ran out (a hold may have covered the wait);
- ``held``: the caller was put on hold and no answer of this turn followed (given up, the caller
  spoke again, or the handler ended without one);
- ``stale``: the caller spoke again (or the call ended) before this turn answered or held;
- ``failed``: the handler raised, or the call state could not be kept: the caller heard the fallback;
- ``silent``: nothing was to be said (a report such as ``assistant_speak``, or no handler).
"""


class Turn(Protocol):
    """What an observer sees of one turn: the runtime's own object, read-only but for
    ``observed``, which belongs to the observer."""

    @property
    def event(self) -> EventBase:
        """The event the turn handles."""
        ...

    @property
    def handler(self) -> Handler | None:
        """The handler that takes it (``None``: no handler is registered for it)."""
        ...

    @property
    def started(self) -> float:
        """When the event arrived (``time.monotonic()``)."""
        ...

    observed: Any
    """An observer's data for this turn; ``None`` until the observer sets it."""

    traced: Any
    """The tracing observer's data for this turn (kept apart from ``observed``, so that it can
    wrap any other observer); ``None`` until it sets it."""


SENT = 1
"""Flag: an action of the turn (a hold included) went out."""
ANSWERED = 2
"""Flag: an answer of the turn went out (or was queued for the next webhook reply)."""
OVERDUE = 4
"""Flag: the turn's budget ran out while it ran."""
HELD = 8
"""Flag: a hold (or the give-up) went out for the turn."""
FAILED = 16
"""Flag: the turn's handler raised, or its state could not be kept."""
LATE = 32
"""Flag: the turn's first answer came after its budget ran out."""


def note(flags: int, happened: int) -> int:
    """``flags`` (a turn's ``observed`` or ``traced`` bits, or ``None`` as 0) with ``happened``
    added; an answer after the budget ran out also sets :data:`LATE`. A helper for observers that
    keep a turn's story in an int (small ints are not allocated)."""
    if happened & ANSWERED and not flags & ANSWERED and flags & OVERDUE:
        happened |= LATE
    return flags | happened


def outcome_of(flags: int, *, stale: bool) -> Outcome:
    """The :data:`Outcome` of a turn from its flags (see :func:`note`) and whether a newer
    turn took over."""
    if flags & FAILED:
        return "failed"
    if flags & ANSWERED:
        return "late" if flags & LATE else "answered"
    if flags & HELD:
        return "held"  # also when given up on, or when the caller spoke again while on hold
    return "stale" if stale else "silent"


class Observer:
    """Subclass and override what you need; :mod:`sipgate_ai_flow.server.metrics` does so for
    Prometheus and :mod:`sipgate_ai_flow.otel` for OpenTelemetry traces. Methods must be quick
    and must not raise: they run on the event path."""

    def event(self, kind: str) -> None:
        """An event of type ``kind`` arrived."""

    def handled(self, handler: str, seconds: float) -> None:
        """``handler`` finished (or failed) after ``seconds``."""

    def overrun(self, handler: str) -> None:
        """An event handled by ``handler`` was not done within its budget."""

    def hold(self) -> None:
        """A hold action was sent for a slow handler."""

    def give_up(self) -> None:
        """A handler was given up on after the last hold."""

    def error(self, kind: ErrorKind) -> None:
        """Something failed: a handler, storing state, the server, or the input."""

    def call_started(self) -> None:
        """A call began (its first ``session_start``)."""

    def call_ended(self) -> None:
        """A call that began here ended."""

    # -- turns ---------------------------------------------------------------------------------

    def turn_began(self, turn: Turn) -> None:
        """An event became a turn (every event but ``session_end``), before it waits for the
        call's earlier turns."""

    def turn_running(self, turn: Turn) -> None:
        """The turn's handler is about to run, in the turn's own context (a copy of the
        transport's): whatever the observer makes current here (a span) is current for the
        handler and everything it awaits, and for nothing else."""

    def turn_handled(self, turn: Turn) -> None:
        """The turn's handler returned, failed or was cancelled (its output is delivered)."""

    def turn_overdue(self, turn: Turn) -> None:
        """The turn's budget ran out while it was still running."""

    def turn_held(self, turn: Turn, *, gave_up: bool) -> None:
        """A hold went out for the turn (``gave_up``: the give-up instead, after the last hold)."""

    def turn_failed(self, turn: Turn) -> None:
        """The turn's handler raised, or its call state could not be kept: the fallback follows."""

    def turn_sent(self, turn: Turn) -> None:
        """Output of the turn left for the caller: through a live call's sender, or in the reply
        to the turn's own webhook request. Holds come to :meth:`turn_held` instead."""

    def turn_queued(self, turn: Turn) -> None:
        """Output of a webhook turn came after its reply: it waits for the next reply (the
        service fetches it after the hold played)."""

    def turn_delivered_late(self, turn: Turn, count: int) -> None:
        """The reply to ``turn``'s webhook carries ``count`` actions queued by earlier turns."""

    def turn_ended(self, turn: Turn, *, stale: bool) -> None:
        """The turn is over (its handler returned, failed or was cancelled, and its reply went);
        ``stale``: a newer turn took over before it ended."""

    def call_finished(self, event: EventBase) -> None:
        """The ``session_end`` ``event`` was handled here (whether or not the call began in this
        process)."""


class ObserverWrapper(Observer):
    """An observer that does its own work and passes every hook on to ``then`` (e.g. the
    Prometheus observer under an OpenTelemetry one). Subclasses override hooks and call
    ``super()`` to pass them on."""

    def __init__(self, then: Observer | None = None) -> None:
        self.then: Observer = then if then is not None else Observer()

    def event(self, kind: str) -> None:
        """Pass it on."""
        self.then.event(kind)

    def handled(self, handler: str, seconds: float) -> None:
        """Pass it on."""
        self.then.handled(handler, seconds)

    def overrun(self, handler: str) -> None:
        """Pass it on."""
        self.then.overrun(handler)

    def hold(self) -> None:
        """Pass it on."""
        self.then.hold()

    def give_up(self) -> None:
        """Pass it on."""
        self.then.give_up()

    def error(self, kind: ErrorKind) -> None:
        """Pass it on."""
        self.then.error(kind)

    def call_started(self) -> None:
        """Pass it on."""
        self.then.call_started()

    def call_ended(self) -> None:
        """Pass it on."""
        self.then.call_ended()

    def turn_began(self, turn: Turn) -> None:
        """Pass it on."""
        self.then.turn_began(turn)

    def turn_running(self, turn: Turn) -> None:
        """Pass it on."""
        self.then.turn_running(turn)

    def turn_handled(self, turn: Turn) -> None:
        """Pass it on."""
        self.then.turn_handled(turn)

    def turn_overdue(self, turn: Turn) -> None:
        """Pass it on."""
        self.then.turn_overdue(turn)

    def turn_held(self, turn: Turn, *, gave_up: bool) -> None:
        """Pass it on."""
        self.then.turn_held(turn, gave_up=gave_up)

    def turn_failed(self, turn: Turn) -> None:
        """Pass it on."""
        self.then.turn_failed(turn)

    def turn_sent(self, turn: Turn) -> None:
        """Pass it on."""
        self.then.turn_sent(turn)

    def turn_queued(self, turn: Turn) -> None:
        """Pass it on."""
        self.then.turn_queued(turn)

    def turn_delivered_late(self, turn: Turn, count: int) -> None:
        """Pass it on."""
        self.then.turn_delivered_late(turn, count)

    def turn_ended(self, turn: Turn, *, stale: bool) -> None:
        """Pass it on."""
        self.then.turn_ended(turn, stale=stale)

    def call_finished(self, event: EventBase) -> None:
        """Pass it on."""
        self.then.call_finished(event)
