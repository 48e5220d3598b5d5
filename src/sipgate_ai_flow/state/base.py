"""The interface every state backend implements."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

__all__ = ["CallRecord", "SessionStore"]


@dataclass(slots=True)
class CallRecord:
    """What the SDK keeps per call between events: the user's ``state`` and how often it started."""

    state: dict[str, Any] = field(default_factory=dict)
    starts: int = 0


@runtime_checkable
class SessionStore(Protocol):
    """Keeps a :class:`CallRecord` per session id from ``session_start`` to ``session_end``.

    ``load`` returns ``None`` for an unknown (or expired) session. Backends expire records after a
    TTL because a call can end without its ``session_end`` ever reaching us.
    """

    async def load(self, session_id: str) -> CallRecord | None:
        """The record of a session, or ``None``."""
        ...

    async def save(self, session_id: str, record: CallRecord) -> None:
        """Store the record after an event was handled."""
        ...

    async def delete(self, session_id: str) -> None:
        """Forget a session (after ``session_end``)."""
        ...
