"""The per-call context a handler receives as its second argument."""

from __future__ import annotations

from typing import Any

from sipgate_ai_flow.protocol.session import SessionInfo

__all__ = ["Call"]


class Call:
    """One phone call, as seen while handling one of its events.

    ``state`` is a mutable mapping that lives from ``session_start`` to ``session_end``; keep
    values JSON-serialisable so the state can later move to a shared store such as Redis.
    """

    __slots__ = ("is_return", "session", "state")

    def __init__(self, session: SessionInfo, state: dict[str, Any], *, is_return: bool = False) -> None:
        self.session = session
        self.state = state
        self.is_return = is_return
        """True when ``session_start`` came again for this call: a transfer with ``timeout`` failed (D15)."""

    @property
    def id(self) -> str:
        """The session id."""
        return self.session.id

    def __repr__(self) -> str:
        # Phone numbers stay out of reprs: they end up in logs and tracebacks.
        return f"Call(id={self.session.id!r}, is_return={self.is_return})"
