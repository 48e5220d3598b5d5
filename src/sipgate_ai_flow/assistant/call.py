"""The per-call context a handler receives as its second argument."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from sipgate_ai_flow.errors import AiFlowError

if TYPE_CHECKING:
    from sipgate_ai_flow.assistant.replies import Reply
    from sipgate_ai_flow.protocol.session import SessionInfo

__all__ = ["Call", "Outlet"]


class Outlet(Protocol):
    """Where a call's actions go; the runtime provides one per event."""

    @property
    def ended(self) -> bool:
        """Whether the call has ended."""
        ...

    async def send(self, reply: Reply) -> None:
        """Deliver ``reply`` now (WebSocket) or with the next webhook reply."""
        ...


class Call:
    """One phone call, as seen while handling one of its events.

    ``state`` is a mutable mapping that lives from ``session_start`` to ``session_end``. It is
    stored as JSON (in memory or in Redis), so keep its values to str, int, float, bool, None,
    lists and dicts; anything else is reported with a :class:`~sipgate_ai_flow.errors.StateError`.
    """

    __slots__ = ("_outlet", "is_return", "session", "state")

    def __init__(
        self,
        session: SessionInfo,
        state: dict[str, Any],
        *,
        is_return: bool = False,
        outlet: Outlet | None = None,
    ) -> None:
        self.session = session
        self.state = state
        self.is_return = is_return
        """True when ``session_start`` came again for this call: a transfer with ``timeout`` failed (D15)."""
        self._outlet = outlet

    @property
    def id(self) -> str:
        """The session id."""
        return self.session.id

    @property
    def ended(self) -> bool:
        """Whether the call has ended (``session_end`` came, or its WebSocket closed)."""
        return self._outlet is not None and self._outlet.ended

    async def send(self, reply: Reply) -> None:
        """Send ``reply`` (text to speak, an action, or a list) now, from anywhere in a live call.

        Over WebSocket it goes out at once; over HTTP it joins the reply to the current event, or,
        once that has gone, the reply to the next one. A reply of a turn the caller has since
        interrupted is dropped. Raises :class:`~sipgate_ai_flow.errors.CallEndedError` when the
        call has ended.
        """
        if self._outlet is None:
            raise AiFlowError("this Call was made by hand; only calls the runtime made can send")
        await self._outlet.send(reply)

    def __repr__(self) -> str:
        # Phone numbers stay out of reprs: they end up in logs and tracebacks.
        return f"Call(id={self.session.id!r}, is_return={self.is_return})"
