"""In-process state: the default, for one worker process."""

from __future__ import annotations

import asyncio
import time
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field

from sipgate_ai_flow.errors import StateError
from sipgate_ai_flow.state.base import (
    DEFAULT_TTL,
    CallRecord,
    Interrupt,
    InterruptListener,
    PostResult,
    Turn,
    copy_state,
)

__all__ = ["MemoryStore"]


@dataclass(slots=True)
class _Entry:
    # A copy only this store holds, checked to be JSON when saved: a handler always gets a copy
    # of it, as from Redis, so its changes reach the store only when its turn saves them.
    record: CallRecord | None = None
    epoch: int | None = None
    outbox: list[str] = field(default_factory=list)
    playing: int = 0
    holds: int = 0
    opening: int = 0  # 1: the session_start turn runs; 2: it is over, its output still queued
    expires: float = 0.0


class _Turnstile:
    """One call's turn while a second turn waits for it: a FIFO lock (an ``asyncio.Lock``, which
    wakes its waiters first come, first served), taken on behalf of the turn inside when it is
    made. A turn that finds the call's turn free makes none: it only marks the call as held."""

    __slots__ = ("lock", "users")

    def __init__(self) -> None:
        self.lock = asyncio.Lock()
        self.users = 1  # the turn inside


# MemoryStore._turnstiles maps a call whose turn is held to its _Turnstile, or to None while
# nobody waits for the turn.


async def _take_turn(turnstiles: dict[str, _Turnstile | None], session_id: str) -> None:
    if session_id not in turnstiles:
        turnstiles[session_id] = None
        return
    turnstile = turnstiles[session_id]
    if turnstile is None:
        turnstile = turnstiles[session_id] = _Turnstile()
        await turnstile.lock.acquire()  # for the turn inside; free, so this never waits
    turnstile.users += 1
    try:
        await turnstile.lock.acquire()
    except BaseException:
        _drop(turnstiles, session_id, turnstile)  # cancelled while waiting: the lock is the holder's
        raise


def _pass_turn(turnstiles: dict[str, _Turnstile | None], session_id: str) -> None:
    turnstile = turnstiles[session_id]
    if turnstile is None:
        del turnstiles[session_id]
        return
    turnstile.lock.release()
    _drop(turnstiles, session_id, turnstile)


def _drop(turnstiles: dict[str, _Turnstile | None], session_id: str, turnstile: _Turnstile) -> None:
    turnstile.users -= 1
    if not turnstile.users:
        del turnstiles[session_id]


class _MemoryTurn(Turn):
    """A turn in this process, and the context that holds it (one object per event)."""

    __slots__ = ("load", "session_id", "store")

    def __init__(self, store: MemoryStore, session_id: str, load: bool) -> None:
        super().__init__()
        self.store = store
        self.session_id = session_id
        self.load = load

    async def __aenter__(self) -> Turn:
        # Never orphaned: a turn here cannot outlive this process.
        await _take_turn(self.store._turnstiles, self.session_id)
        if self.load:
            self.record = self.store._copy(self.session_id)
        return self

    async def __aexit__(self, kind: type[BaseException] | None, *_: object) -> None:
        try:
            self.store._leave(self)
        except StateError:
            if kind is None:
                raise  # else the turn is failing already: its state stays as it was
        finally:
            _pass_turn(self.store._turnstiles, self.session_id)


class MemoryStore:
    """Keeps call data in this process, dropping calls not touched for ``ttl`` seconds.

    State must be JSON, as in Redis, and every load gives a copy of what was saved, so an
    assistant behaves the same on either backend. The copies are made without a JSON round trip.
    """

    def __init__(self, ttl: float = DEFAULT_TTL) -> None:
        if ttl <= 0:
            raise ValueError("ttl must be positive")
        self.ttl = ttl
        self._entries: dict[str, _Entry] = {}
        self._turnstiles: dict[str, _Turnstile | None] = {}
        self._listeners: list[InterruptListener] = []
        self._next_sweep = time.monotonic() + ttl

    def __len__(self) -> int:
        return len(self._entries)

    def _live(self, session_id: str, now: float | None = None) -> _Entry | None:
        if now is None:
            now = time.monotonic()
        if now >= self._next_sweep:
            # Amortised: one pass per TTL period keeps abandoned calls from piling up.
            self._next_sweep = now + self.ttl
            for key in [k for k, e in self._entries.items() if e.expires <= now]:
                del self._entries[key]
        entry = self._entries.get(session_id)
        if entry is not None and entry.expires <= now:
            del self._entries[session_id]
            return None
        return entry

    def _touch(self, session_id: str) -> _Entry:
        now = time.monotonic()
        entry = self._entries.get(session_id)
        if entry is not None and now < entry.expires and now < self._next_sweep:
            entry.expires = now + self.ttl  # the common case, without _live's call
            return entry
        entry = self._live(session_id, now)
        if entry is None:
            entry = self._entries[session_id] = _Entry()
        entry.expires = now + self.ttl
        return entry

    async def load(self, session_id: str) -> CallRecord | None:
        """The record of a live session, or ``None``."""
        return self._copy(session_id)

    async def save(self, session_id: str, record: CallRecord) -> None:
        """Keep ``record`` for another ``ttl`` seconds."""
        kept = CallRecord(copy_state(record.state), record.starts)
        self._touch(session_id).record = kept

    def _copy(self, session_id: str) -> CallRecord | None:
        entry = self._live(session_id)
        if entry is None or entry.record is None:
            return None
        record = entry.record
        return CallRecord(copy_state(record.state), record.starts)

    def _leave(self, turn: _MemoryTurn) -> None:
        # Everything a turn asked for on leaving, at once; a state that is not JSON changes nothing.
        session_id = turn.session_id
        kept = None
        if turn.save and turn.record is not None:
            kept = CallRecord(copy_state(turn.record.state), turn.record.starts)
        if kept is None and not turn.noted and not turn.collect:
            return
        entry = self._touch(session_id)
        if kept is not None:
            entry.record = kept
        if turn.collect:
            taken = self._take(entry)
            turn.collected = taken
            if taken:
                return  # the holder notes its deliveries together with these
        if turn.noted:
            entry.playing = turn.speeches + (0 if turn.cut else entry.playing)
            entry.holds = 0

    async def delete(self, session_id: str) -> None:
        """Forget a session."""
        self._entries.pop(session_id, None)

    def turn(self, session_id: str, *, load: bool = False) -> AbstractAsyncContextManager[Turn]:
        """The call's turn, first come, first served (never orphaned)."""
        return _MemoryTurn(self, session_id, load)

    async def begin(
        self,
        session_id: str,
        *,
        interrupt: Interrupt | None = None,
        speech_ended: bool = False,
        opening: bool = False,
    ) -> int:
        """Mark the call live; with ``interrupt``, advance its epoch and drop what is queued."""
        entry = self._touch(session_id)
        if entry.epoch is None:
            entry.epoch = 0
        if speech_ended:
            entry.playing = max(entry.playing - 1, 0)
        if interrupt:
            entry.playing = entry.holds = 0
            if interrupt == "always" or not entry.opening:
                entry.epoch += 1
                entry.outbox.clear()
                entry.opening = 0
                for listener in self._listeners:
                    listener(session_id, entry.epoch)
        if opening:
            entry.opening = 1
        return entry.epoch

    async def opened(self, session_id: str) -> None:
        """End the opening, or, if output is queued, when it is collected."""
        entry = self._live(session_id)
        if entry is not None and entry.opening:
            entry.opening = 2 if entry.outbox else 0

    async def epoch(self, session_id: str) -> int | None:
        """The call's epoch, or ``None`` when it is not live."""
        entry = self._live(session_id)
        return None if entry is None else entry.epoch

    async def post(self, session_id: str, epoch: int, payloads: list[str]) -> PostResult:
        """Queue ``payloads`` unless ``epoch`` is stale or the call ended."""
        entry = self._live(session_id)
        if entry is None or entry.epoch is None:
            return "ended"
        if entry.epoch != epoch:
            return "stale"
        entry.outbox.extend(payloads)
        return "queued"

    async def collect(self, session_id: str) -> list[str]:
        """Take every queued payload."""
        entry = self._live(session_id)
        return [] if entry is None else self._take(entry)

    @staticmethod
    def _take(entry: _Entry) -> list[str]:
        if not entry.outbox:
            return []
        taken, entry.outbox = entry.outbox, []
        if entry.opening == 2:
            entry.opening = 0  # the greeting reached the caller
        return taken

    async def delivered(self, session_id: str, speeches: int, *, cut: bool = False) -> None:
        """Note an answer that went out."""
        entry = self._touch(session_id)
        entry.playing = speeches + (0 if cut else entry.playing)
        entry.holds = 0

    async def holds(self, session_id: str) -> int:
        """Holds given in a row since the last answer."""
        entry = self._live(session_id)
        return 0 if entry is None else entry.holds

    async def add_hold(self, session_id: str) -> int:
        """Count a hold if nothing is playing."""
        entry = self._touch(session_id)
        if entry.playing:
            return 0
        entry.playing = 1
        entry.holds += 1
        return entry.holds

    async def listen(self, listener: InterruptListener) -> None:
        """Call ``listener`` on every interrupt (this process is the only one)."""
        if listener not in self._listeners:
            self._listeners.append(listener)

    async def close(self) -> None:
        """Nothing to release."""
