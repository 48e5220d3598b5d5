"""The Assistant: a registry of handlers and the one transport-free entry point, ``handle``."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from sipgate_ai_flow.assistant.call import Call
from sipgate_ai_flow.assistant.handlers import EVENT_HANDLERS, Handler, check_handler_name
from sipgate_ai_flow.assistant.replies import Reply, to_actions
from sipgate_ai_flow.errors import AiFlowError
from sipgate_ai_flow.protocol.actions import Action
from sipgate_ai_flow.protocol.codec import JsonInput, parse_event
from sipgate_ai_flow.protocol.events import (
    EventBase,
    SessionEnd,
    SessionStart,
    UserSpeak,
    UserSpeechStarted,
)
from sipgate_ai_flow.protocol.session import SessionInfo
from sipgate_ai_flow.state.base import CallRecord, SessionStore
from sipgate_ai_flow.state.memory import MemoryStore

if TYPE_CHECKING:
    from starlette.types import Receive, Scope, Send

__all__ = ["DEFAULT_FALLBACK", "Assistant"]

logger = logging.getLogger("sipgate_ai_flow")

DEFAULT_FALLBACK = "Sorry, something went wrong on our side. Could you say that again?"
F = TypeVar("F", bound=Callable[..., Any])
_PROBE_SESSION = SessionInfo(id="fallback-check")
# Event type -> handler name; on_user_barge_in is chosen by the barged_in flag, not by type.
_HANDLER_FOR_TYPE = {
    kind: name for name, kind in EVENT_HANDLERS.items() if kind and name != "on_user_barge_in"
}


class _Turnstile:
    """A per-call lock and how many events of that call are waiting for or holding it."""

    __slots__ = ("lock", "users")

    def __init__(self) -> None:
        self.lock = asyncio.Lock()
        self.users = 0


class Assistant:
    """A voice assistant: handlers for AI Flow events, served over HTTP and WebSocket.

    Register handlers as keywords (``Assistant(on_user_speak=f)``) or decorators
    (``@assistant.on_user_speak``). A handler takes ``(event)`` or ``(event, call)``, may be sync or
    async, and returns ``None``, a ``str`` (spoken), an action, or a list of those.

    ``token`` is the shared secret the service sends as ``X-API-TOKEN``. ``fallback`` is what a call
    hears when a handler raises or returns something invalid (``None`` for silence). ``store``
    keeps per-call state (in memory by default).

    An ``Assistant`` is itself an ASGI app: ``uvicorn app:assistant`` serves it.
    """

    def __init__(
        self,
        *,
        token: str | None = None,
        fallback: Reply = DEFAULT_FALLBACK,
        store: SessionStore | None = None,
        on_session_start: Callable[..., Any] | None = None,
        on_user_speech_started: Callable[..., Any] | None = None,
        on_user_speak: Callable[..., Any] | None = None,
        on_user_barge_in: Callable[..., Any] | None = None,
        on_dtmf_received: Callable[..., Any] | None = None,
        on_assistant_speak: Callable[..., Any] | None = None,
        on_assistant_speech_ended: Callable[..., Any] | None = None,
        on_user_input_timeout: Callable[..., Any] | None = None,
        on_sms_failed: Callable[..., Any] | None = None,
        on_session_end: Callable[..., Any] | None = None,
        on_event: Callable[..., Any] | None = None,
    ) -> None:
        self.token = token or None
        to_actions(fallback, _PROBE_SESSION)  # fail now, not in the middle of a call
        self.fallback: Reply = fallback
        self.store: SessionStore = store if store is not None else MemoryStore()
        self._handlers: dict[str, Handler] = {}
        self._turnstiles: dict[str, _Turnstile] = {}
        self._warned: set[str] = set()
        self._asgi: Any = None
        given = {
            "on_session_start": on_session_start,
            "on_user_speech_started": on_user_speech_started,
            "on_user_speak": on_user_speak,
            "on_user_barge_in": on_user_barge_in,
            "on_dtmf_received": on_dtmf_received,
            "on_assistant_speak": on_assistant_speak,
            "on_assistant_speech_ended": on_assistant_speech_ended,
            "on_user_input_timeout": on_user_input_timeout,
            "on_sms_failed": on_sms_failed,
            "on_session_end": on_session_end,
            "on_event": on_event,
        }
        for name, func in given.items():
            if func is not None:
                self.add_handler(name, func)

    # -- registration -------------------------------------------------------------------------

    def add_handler(self, name: str, func: Callable[..., Any]) -> None:
        """Register ``func`` as the handler called ``name`` (e.g. ``"on_user_speak"``)."""
        check_handler_name(name)
        if name in self._handlers:
            raise AiFlowError(f"{name} is already registered; an assistant has one handler per event")
        self._handlers[name] = Handler.inspect(name, func)

    @property
    def handlers(self) -> Mapping[str, Callable[..., Any]]:
        """The registered handler functions by name (a copy)."""
        return {name: h.func for name, h in self._handlers.items()}

    def _decorator(self, name: str, func: F) -> F:
        self.add_handler(name, func)
        return func

    def on_session_start(self, func: F) -> F:
        """Register the handler for ``session_start`` (a call begins, or comes back, D15)."""
        return self._decorator("on_session_start", func)

    def on_user_speech_started(self, func: F) -> F:
        """Register the handler for ``user_speech_started`` (WebSocket only; return ignored)."""
        return self._decorator("on_user_speech_started", func)

    def on_user_speak(self, func: F) -> F:
        """Register the handler for ``user_speak`` (and barge-ins, if no barge-in handler)."""
        return self._decorator("on_user_speak", func)

    def on_user_barge_in(self, func: F) -> F:
        """Register the handler for ``user_speak`` with ``barged_in: true`` (D13)."""
        return self._decorator("on_user_barge_in", func)

    def on_dtmf_received(self, func: F) -> F:
        """Register the handler for ``dtmf_received`` (one key press)."""
        return self._decorator("on_dtmf_received", func)

    def on_assistant_speak(self, func: F) -> F:
        """Register the handler for ``assistant_speak``."""
        return self._decorator("on_assistant_speak", func)

    def on_assistant_speech_ended(self, func: F) -> F:
        """Register the handler for ``assistant_speech_ended``."""
        return self._decorator("on_assistant_speech_ended", func)

    def on_user_input_timeout(self, func: F) -> F:
        """Register the handler for ``user_input_timeout``."""
        return self._decorator("on_user_input_timeout", func)

    def on_sms_failed(self, func: F) -> F:
        """Register the handler for ``sms_failed``."""
        return self._decorator("on_sms_failed", func)

    def on_session_end(self, func: F) -> F:
        """Register the handler for ``session_end`` (cleanup only; return ignored, D12)."""
        return self._decorator("on_session_end", func)

    def on_event(self, func: F) -> F:
        """Register the catch-all for events no specific handler took, ``UnknownEvent`` included."""
        return self._decorator("on_event", func)

    # -- handling -----------------------------------------------------------------------------

    async def handle(self, event: EventBase | JsonInput) -> list[Action]:
        """Handle one event (a model, JSON text/bytes, or a dict) and return the actions to send.

        Events of one call are handled one at a time, in the order ``handle`` was called.
        Raises :class:`~sipgate_ai_flow.errors.InvalidEventError` for input that is not an event.
        """
        if not isinstance(event, EventBase):
            event = parse_event(event)
        session_id = event.session.id
        turnstile = self._turnstiles.get(session_id)
        if turnstile is None:
            turnstile = self._turnstiles[session_id] = _Turnstile()
        turnstile.users += 1
        try:
            async with turnstile.lock:
                return await self._dispatch(event)
        finally:
            turnstile.users -= 1
            if not turnstile.users:
                del self._turnstiles[session_id]

    async def end_call(self, session: SessionInfo) -> None:
        """End a call whose ``session_end`` never came (its connection closed): run the cleanup."""
        await self.handle(SessionEnd(session=session))

    def _route(self, event: EventBase) -> Handler | None:
        handlers = self._handlers
        if isinstance(event, UserSpeak) and event.barged_in:
            handler = handlers.get("on_user_barge_in") or handlers.get("on_user_speak")
        else:
            handler = handlers.get(_HANDLER_FOR_TYPE.get(event.type, "on_event"))
        return handler or handlers.get("on_event")

    async def _dispatch(self, event: EventBase) -> list[Action]:
        session_id = event.session.id
        record = await self.store.load(session_id)
        if record is None:
            record = CallRecord()
        if isinstance(event, SessionStart):
            record.starts += 1
        call = Call(event.session, record.state, is_return=record.starts > 1)
        handler = self._route(event)
        if isinstance(event, SessionEnd):
            await self._end(handler, event, call)
            return []
        actions = await self._run(handler, event, call) if handler else []
        await self.store.save(session_id, record)
        if actions and isinstance(event, UserSpeechStarted):
            self._warn_once(
                "user_speech_started",
                "the user_speech_started handler returned actions; the service ignores them, "
                "so they are not sent (D11)",
            )
            return []
        return actions

    async def _run(self, handler: Handler, event: EventBase, call: Call) -> list[Action]:
        try:
            return to_actions(await handler(event, call), event.session)
        except Exception:
            # A crash must not become silence or a 500: log it and say the fallback.
            logger.exception("%s handler failed in session %s; sending the fallback", handler.name, call.id)
            return self.fallback_actions(event)

    def fallback_actions(self, event: EventBase) -> list[Action]:
        """What the call hears when handling ``event`` failed: the fallback, where actions are allowed."""
        if isinstance(event, SessionEnd | UserSpeechStarted):
            return []
        return to_actions(self.fallback, event.session)

    async def _end(self, handler: Handler | None, event: SessionEnd, call: Call) -> None:
        try:
            if handler is not None and await handler(event, call) is not None:
                self._warn_once(
                    "session_end",
                    "the session_end handler returned a reply; no action may follow session_end, "
                    "so it is ignored (D12)",
                )
        except Exception:
            logger.exception("%s handler failed in session %s", handler.name if handler else "", call.id)
        finally:
            await self.store.delete(event.session.id)

    def _warn_once(self, key: str, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            logger.warning(message)

    # -- ASGI ---------------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve this assistant as an ASGI app (``POST /webhook``, WebSocket ``/ws``, ``GET /health``)."""
        if self._asgi is None:
            from sipgate_ai_flow.server.app import create_app  # noqa: PLC0415 - server is optional here

            self._asgi = create_app(self)
        await self._asgi(scope, receive, send)
