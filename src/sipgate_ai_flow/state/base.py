"""The interface every state backend implements, and the record it keeps per call.

A store holds more than ``call.state``: everything the runtime must share between the worker
processes that serve one flow. Per call that is

- the **record** (the user's state and how often the call started), saved after each event;
- a **turn** lock that lets the events of the call run one at a time, in arrival order; taking
  it can load the record, and leaving it stores the record, notes what was delivered and takes
  the outbox, so an event costs few calls (in Redis, round trips);
- an **epoch** that a newer ``user_speak`` advances, so output of older turns is dropped;
- an **outbox** of actions waiting for the next webhook reply (the async-hold pattern);
- what is **playing** (speeches sent, less those that ended) and the **holds** given in a row.

Every backend passes the same contract tests (``tests/test_store_contract.py``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

from sipgate_ai_flow.errors import StateError, kind_of

__all__ = [
    "DEFAULT_TTL",
    "CallRecord",
    "Interrupt",
    "InterruptListener",
    "PostResult",
    "SessionStore",
    "Turn",
    "copy_state",
    "dump_record",
    "load_record",
]

DEFAULT_TTL = 4 * 3600.0
"""Seconds a call's data outlives its last event (calls can end without ``session_end`` reaching us)."""

PostResult = Literal["queued", "stale", "ended"]
"""What :meth:`SessionStore.post` did: queued the actions, dropped them (a newer turn began), or
refused them (the call has ended)."""

Interrupt = Literal["spoke", "always"]
"""Why :meth:`SessionStore.begin` advances a call's epoch: the caller ``spoke`` (skipped while the
call is opening, so a caller's first words never cancel the greeting), or ``always`` (the call
ended, or the runtime gave up on a late answer)."""

InterruptListener = Callable[[str, int], None]
"""Called with ``(session_id, epoch)`` when a call's epoch advanced, in whichever process."""


@dataclass(slots=True)
class CallRecord:
    """What the SDK keeps per call between events: the user's ``state`` and how often it started."""

    state: dict[str, Any] = field(default_factory=dict)
    starts: int = 0


class Turn:
    """One event's hold on its call's turn: what :meth:`SessionStore.turn` yields.

    The store fills in ``orphaned`` and, when asked to load, ``record``. The holder then says
    what leaving the turn should do, all in one step: store ``record`` (``save``), note the
    deliveries made meanwhile (:meth:`note`), and take the outbox (``collect``; the payloads are
    in ``collected`` afterwards, and the deliveries are then left for the caller to note together
    with them).
    """

    __slots__ = ("collect", "collected", "cut", "noted", "orphaned", "record", "save", "speeches")

    def __init__(self, *, orphaned: bool = False, record: CallRecord | None = None) -> None:
        self.orphaned = orphaned
        self.record = record
        self.save = False
        self.collect = False
        self.collected: list[str] | None = None
        self.noted = False  # whether note() was called
        self.speeches = 0
        self.cut = False

    def note(self, speeches: int, *, cut: bool = False) -> None:
        """Note on leaving, as :meth:`SessionStore.delivered` would now, an answer that went out."""
        if cut:
            self.speeches, self.cut = speeches, True  # what played before this is cut off
        else:
            self.speeches += speeches
        self.noted = True


# What json.dumps(..., allow_nan=False) would build on every call.
_ENCODER = json.JSONEncoder(allow_nan=False)


def dump_record(record: CallRecord) -> str:
    """``record`` as JSON; raises :class:`StateError` naming the first value JSON cannot hold."""
    # json.dumps would turn int keys into str ones silently, so the state would come back changed.
    found = _first_unserialisable(record.state)
    if found is not None:
        where, value = found
        raise StateError(
            # The value itself stays out of the message: it may be what the caller said.
            f"call.state{where} is {kind_of(value)}, which cannot be stored as JSON; "
            "keep call.state to str, int, float, bool, None, lists and dicts with str keys"
        )
    return _ENCODER.encode({"state": record.state, "starts": record.starts})


def copy_state(state: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``state`` as a JSON round trip would give it back (tuples become lists), without
    the round trip; raises :class:`StateError` like :func:`dump_record` for what JSON cannot hold."""
    try:
        copied: dict[str, Any] = _copied(state)
    except _NotJsonError:
        dump_record(CallRecord(state=state))  # raises the error that names the value's path
        raise StateError("call.state cannot be stored as JSON") from None
    return copied


class _NotJsonError(Exception):
    pass


def _copied(value: Any) -> Any:
    # Exact types first: the state holds mostly these, and a subclass (an IntEnum, a bool, a str
    # subclass) takes the slower path that converts it as json.dumps would.
    kind = type(value)
    if kind is str or kind is int or value is None or kind is bool:
        return value
    if kind is dict:
        copied = {}
        for key, item in value.items():
            if type(key) is not str:
                raise _NotJsonError
            copied[key] = _copied(item)
        return copied
    if kind is list or kind is tuple:
        return [_copied(item) for item in value]
    if kind is float:
        if not math.isfinite(value):
            raise _NotJsonError
        return value
    return _converted(value)


def _converted(value: Any) -> Any:
    # Subclasses of the JSON types: what a round trip through json would give back.
    if isinstance(value, str | int | float | dict | list | tuple) and _first_unserialisable(value) is None:
        copied: Any = json.loads(_ENCODER.encode(value))
        return copied
    raise _NotJsonError


def load_record(text: str | bytes) -> CallRecord:
    """The inverse of :func:`dump_record`; raises :class:`StateError` for anything else."""
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    if isinstance(data, dict) and isinstance(data.get("state"), dict) and type(data.get("starts")) is int:
        return CallRecord(state=data["state"], starts=data["starts"])
    raise StateError(
        "the stored call record is not JSON this SDK wrote; was the key written by something else?"
    )


def _first_unserialisable(value: object) -> tuple[str, object] | None:
    # The path to the bad value (e.g. "['items'][2]") is built only once one is found: the
    # state is checked after every turn, and is nearly always fine.
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                return f" key {key!r}", key
            found = _first_unserialisable(item)
            if found is not None:
                return f"[{key!r}]{found[0]}", found[1]
        return None
    if isinstance(value, list | tuple):
        for index, item in enumerate(value):
            found = _first_unserialisable(item)
            if found is not None:
                return f"[{index}]{found[0]}", found[1]
        return None
    if value is None or isinstance(value, str | int | bool):
        return None
    if isinstance(value, float) and math.isfinite(value):
        return None
    return "", value


@runtime_checkable
class SessionStore(Protocol):
    """Per-call data shared by every process serving a flow. All methods take the session id.

    Keys not touched for the store's TTL expire. :meth:`delete` forgets everything of a call.
    """

    async def load(self, session_id: str) -> CallRecord | None:
        """The record of a session, or ``None`` for an unknown (or expired) one."""
        ...

    async def save(self, session_id: str, record: CallRecord) -> None:
        """Store the record (raises :class:`StateError` for state that is not JSON). Cancelled
        meanwhile, it still stores the record before the cancel goes on: a turn's state never
        lands after the next turn has begun."""
        ...

    async def delete(self, session_id: str) -> None:
        """Forget a session: record, epoch, outbox, playing and holds (after ``session_end``)."""
        ...

    def turn(self, session_id: str, *, load: bool = False) -> AbstractAsyncContextManager[Turn]:
        """Hold the call's turn: one holder at a time, granted in the order the turns were asked for.

        Entering yields a :class:`Turn`: ``orphaned`` says whether it went ahead because a turn
        before it was held by a process that died (so whatever that turn was to say never comes);
        with ``load``, ``record`` is the call's record as :meth:`load` gives it (a copy; ``None``
        for an unknown call). Cancelled at any point before it is granted, it leaves the queue as
        if never asked for.

        Leaving it does what the holder set on the :class:`Turn`, then passes the turn on: with
        ``save``, it stores ``record`` as :meth:`save` does (a :class:`StateError` is raised after
        the turn passed on, with nothing else done); it notes what :meth:`Turn.note` gathered as
        :meth:`delivered` does, and with ``collect`` takes the outbox into ``collected`` as
        :meth:`collect` does, except that when the outbox held something, the noted deliveries
        are left for the holder to note together with it. Cancelled meanwhile, it still does all
        of that before the cancel goes on."""
        ...

    async def begin(
        self,
        session_id: str,
        *,
        interrupt: Interrupt | None = None,
        speech_ended: bool = False,
        opening: bool = False,
    ) -> int:
        """Mark the call live and return its epoch.

        ``interrupt`` forgets what was playing and the hold count; then it advances the epoch,
        drops the outbox and the opening mark and tells every listener, except that ``"spoke"``
        does not while the call is opening. ``speech_ended`` notes that one speech finished
        playing. ``opening`` (a ``session_start``) marks the call as opening until :meth:`opened`.
        """
        ...

    async def opened(self, session_id: str) -> None:
        """The ``session_start`` turn is over: the call stops opening now, or, when output is
        queued, once :meth:`collect` takes it (the greeting reached the caller)."""
        ...

    async def epoch(self, session_id: str) -> int | None:
        """The call's epoch, or ``None`` when the call is not live (never began, or ended)."""
        ...

    async def post(self, session_id: str, epoch: int, payloads: list[str]) -> PostResult:
        """Queue action JSON for the next reply, unless ``epoch`` is stale or the call ended."""
        ...

    async def collect(self, session_id: str) -> list[str]:
        """Take every queued payload, oldest first."""
        ...

    async def delivered(self, session_id: str, speeches: int, *, cut: bool = False) -> None:
        """Note that an answer went out with ``speeches`` speak/audio actions: the hold count
        restarts. ``cut`` (a ``barge_in`` went out first) means nothing plays any more."""
        ...

    async def holds(self, session_id: str) -> int:
        """The holds counted in a row since the last :meth:`delivered` (0: the caller is not
        waiting for a late answer)."""
        ...

    async def add_hold(self, session_id: str) -> int:
        """If nothing is playing, count one more hold in a row (it plays now) and return the
        count; else return 0: the caller is not waiting in silence."""
        ...

    async def listen(self, listener: InterruptListener) -> None:
        """Call ``listener`` whenever any process interrupts a call (see :meth:`begin`)."""
        ...

    async def close(self) -> None:
        """Release connections and background tasks."""
        ...
