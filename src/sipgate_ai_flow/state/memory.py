"""In-process state: the default, for one worker process."""

from __future__ import annotations

import time

from sipgate_ai_flow.state.base import CallRecord

__all__ = ["MemoryStore"]


class MemoryStore:
    """Keeps call records in a dict, dropping those not touched for ``ttl`` seconds."""

    def __init__(self, ttl: float = 4 * 3600) -> None:
        if ttl <= 0:
            raise ValueError("ttl must be positive")
        self.ttl = ttl
        self._records: dict[str, tuple[CallRecord, float]] = {}
        self._next_sweep = time.monotonic() + ttl

    def __len__(self) -> int:
        return len(self._records)

    async def load(self, session_id: str) -> CallRecord | None:
        """The record of a live session, or ``None``."""
        now = time.monotonic()
        self._sweep(now)
        entry = self._records.get(session_id)
        if entry is None or entry[1] <= now:
            return None
        return entry[0]

    async def save(self, session_id: str, record: CallRecord) -> None:
        """Keep ``record`` for another ``ttl`` seconds."""
        self._records[session_id] = (record, time.monotonic() + self.ttl)

    async def delete(self, session_id: str) -> None:
        """Forget a session."""
        self._records.pop(session_id, None)

    def _sweep(self, now: float) -> None:
        # Amortised: one pass per TTL period keeps abandoned calls from piling up.
        if now < self._next_sweep:
            return
        self._next_sweep = now + self.ttl
        for key in [k for k, (_, expires) in self._records.items() if expires <= now]:
            del self._records[key]
