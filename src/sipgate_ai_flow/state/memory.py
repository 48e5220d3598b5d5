"""In-process state: the default, for one worker process."""

from __future__ import annotations

import asyncio
import time
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field

from sipgate_ai_flow.state.base import (
    DEFAULT_TTL,
    CallRecord,
    Interrupt,
    InterruptListener,
    PostResult,
    dump_record,
    load_record,
)

__all__ = ["MemoryStore"]


@dataclass(slots=True)
class _Entry:
    record: str | None = None  # JSON, as Redis would hold it: state is copied, never shared
    epoch: int | None = None
    outbox: list[str] = field(default_factory=list)
    playing: int = 0
    holds: int = 0
    opening: int = 0  # 1: the session_start turn runs; 2: it is over, its output still queued
    expires: float = 0.0


class _Turnstile:
    """One call's turn: a FIFO lock that removes itself from the store when nobody uses it.

    Most turns find it free: the lock (an ``asyncio.Lock``, which wakes its waiters first come,
    first served) is made only when a second turn comes while one runs, and then taken on
    behalf of the one inside.
    """

    __slots__ = ("lock", "session_id", "turnstiles", "users")

    def __init__(self, turnstiles: dict[str, _Turnstile], session_id: str) -> None:
        self.lock: asyncio.Lock | None = None
        self.users = 0
        self.turnstiles = turnstiles
        self.session_id = session_id

    async def __aenter__(self) -> bool:
        self.users += 1
        if self.users == 1:
            return False
        try:
            if self.lock is None:
                self.lock = asyncio.Lock()
                await self.lock.acquire()  # for the turn inside; free, so this never waits
            await self.lock.acquire()
        except BaseException:
            self._leave()
            raise
        return False  # a turn in this process cannot outlive it: never orphaned

    async def __aexit__(self, *_: object) -> None:
        if self.lock is not None:
            self.lock.release()
        self._leave()

    def _leave(self) -> None:
        self.users -= 1
        if not self.users:
            del self.turnstiles[self.session_id]


class MemoryStore:
    """Keeps call data in this process, dropping calls not touched for ``ttl`` seconds.

    State is stored as JSON, like in Redis, so an assistant behaves the same on either backend.
    """

    def __init__(self, ttl: float = DEFAULT_TTL) -> None:
        if ttl <= 0:
            raise ValueError("ttl must be positive")
        self.ttl = ttl
        self._entries: dict[str, _Entry] = {}
        self._turnstiles: dict[str, _Turnstile] = {}
        self._listeners: list[InterruptListener] = []
        self._next_sweep = time.monotonic() + ttl

    def __len__(self) -> int:
        return len(self._entries)

    def _live(self, session_id: str) -> _Entry | None:
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
        entry = self._live(session_id)
        if entry is None:
            entry = self._entries[session_id] = _Entry()
        entry.expires = time.monotonic() + self.ttl
        return entry

    async def load(self, session_id: str) -> CallRecord | None:
        """The record of a live session, or ``None``."""
        entry = self._live(session_id)
        if entry is None or entry.record is None:
            return None
        return load_record(entry.record)

    async def save(self, session_id: str, record: CallRecord) -> None:
        """Keep ``record`` for another ``ttl`` seconds."""
        text = dump_record(record)
        self._touch(session_id).record = text

    async def delete(self, session_id: str) -> None:
        """Forget a session."""
        self._entries.pop(session_id, None)

    def turn(self, session_id: str) -> AbstractAsyncContextManager[bool]:
        """The call's turn, first come, first served (never orphaned)."""
        turnstile = self._turnstiles.get(session_id)
        if turnstile is None:
            turnstile = self._turnstiles[session_id] = _Turnstile(self._turnstiles, session_id)
        return turnstile

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
        if entry is None or not entry.outbox:
            return []
        taken, entry.outbox = entry.outbox, []
        if entry.opening == 2:
            entry.opening = 0
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
