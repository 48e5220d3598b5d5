"""Many deadlines of one length, watched by one timer.

Every webhook request has a body deadline. An ``asyncio.timeout`` or a timer per request cost
2-5 µs each on uvloop, several per cent of the server's time per event (``benchmarks/README.md``).
Here arming a deadline is a dict insert: as all deadlines are the same length, the dict stays
ordered by due time, and one timer, running only while deadlines are armed, expires those at its
front. A deadline fires up to a quarter of
its length (at most a second) late.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

__all__ = ["Deadlines"]

K = TypeVar("K", bound=Hashable)


class Deadlines(Generic[K]):
    """Deadlines ``seconds`` after :meth:`arm`; ``expire(key)`` is called for each one missed."""

    __slots__ = ("_due", "_expire", "_loop", "_timer", "period", "seconds")

    def __init__(self, seconds: float, expire: Callable[[K], None]) -> None:
        if not seconds > 0:
            raise ValueError("a deadline must be a positive number of seconds")
        self.seconds = seconds
        self.period = min(1.0, seconds / 4)
        self._expire = expire
        self._due: dict[K, float] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def __len__(self) -> int:
        return len(self._due)

    def arm(self, key: K) -> None:
        """Start (or restart) ``key``'s deadline now."""
        loop = asyncio.get_running_loop()
        due = self._due
        due.pop(key, None)  # re-inserted at the end: the dict stays in due order
        due[key] = loop.time() + self.seconds
        if self._timer is None or self._loop is not loop:
            self._loop = loop
            self._timer = loop.call_later(self.period, self._sweep)

    def disarm(self, key: K) -> None:
        """Forget ``key``'s deadline, if it has one."""
        self._due.pop(key, None)

    def _sweep(self) -> None:
        assert self._loop is not None
        now = self._loop.time()
        due = self._due
        try:
            while due:
                key = next(iter(due))
                if due[key] > now:
                    break
                del due[key]
                self._expire(key)
        finally:
            self._timer = self._loop.call_later(self.period, self._sweep) if due else None
