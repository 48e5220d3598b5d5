"""Clocks for the emulator: virtual time for tests, real time for a call in the terminal."""

from __future__ import annotations

import asyncio
import time
from typing import Protocol

__all__ = ["Clock", "RealClock", "VirtualClock"]


class Clock(Protocol):
    """What the emulator needs of time: the Unix time in ms, and a way to let time pass."""

    def now(self) -> float:
        """The current Unix time in milliseconds."""
        ...

    async def sleep_until(self, when: float) -> None:
        """Return once :meth:`now` has reached ``when`` (ms)."""
        ...


class VirtualClock:
    """Time that passes only when the emulator says so: playback and silences take no real time."""

    def __init__(self, start_ms: float | None = None) -> None:
        self._now = time.time() * 1000 if start_ms is None else start_ms

    def now(self) -> float:
        """The virtual Unix time in milliseconds."""
        return self._now

    async def sleep_until(self, when: float) -> None:
        """Jump to ``when`` at once (never backwards)."""
        self._now = max(self._now, when)
        await asyncio.sleep(0)  # still a scheduling point, as a real sleep would be


class RealClock:
    """Wall-clock time: playback and silences take as long as they would on the phone."""

    def now(self) -> float:
        """The Unix time in milliseconds."""
        return time.time() * 1000

    async def sleep_until(self, when: float) -> None:
        """Sleep until ``when``."""
        delay = (when - self.now()) / 1000
        await asyncio.sleep(max(delay, 0))
