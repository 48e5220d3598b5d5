"""The Assistant: a registry of handlers and the one transport-free entry point, ``handle``."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from typing import TYPE_CHECKING, Any, ClassVar, TypedDict, TypeVar, Unpack, cast, overload

from sipgate_ai_flow.assistant.call import Call
from sipgate_ai_flow.assistant.handlers import (
    EVENT_HANDLERS,
    HANDLER_NAMES,
    UNSET,
    Handler,
    check_handler_name,
)
from sipgate_ai_flow.assistant.observer import Observer
from sipgate_ai_flow.assistant.replies import Reply, to_actions
from sipgate_ai_flow.assistant.runtime import Replier, Runtime, Sender
from sipgate_ai_flow.errors import AiFlowError
from sipgate_ai_flow.protocol.actions import Action
from sipgate_ai_flow.protocol.codec import JsonInput, parse_event
from sipgate_ai_flow.protocol.events import (
    AssistantSpeak,
    AssistantSpeechEnded,
    EventBase,
    SessionEnd,
    UserSpeak,
    UserSpeechStarted,
)
from sipgate_ai_flow.protocol.session import SessionInfo
from sipgate_ai_flow.state.base import SessionStore
from sipgate_ai_flow.state.memory import MemoryStore

if TYPE_CHECKING:
    from sipgate_ai_flow.client.outbound import AiFlowApi, Dialed

__all__ = [
    "DEFAULT_FALLBACK",
    "DEFAULT_GIVE_UP",
    "DEFAULT_HOLD",
    "Assistant",
    "HandlerDecorator",
    "HandlerKeywords",
    "HandlerSlot",
]

logger = logging.getLogger("sipgate_ai_flow")

DEFAULT_FALLBACK = "Sorry, something went wrong on our side. Could you say that again?"
DEFAULT_HOLD = "One moment, please."
DEFAULT_GIVE_UP = "Sorry, this is taking too long. Please try again in a moment."
F = TypeVar("F", bound=Callable[..., Any])
_PROBE_SESSION = SessionInfo(id="fallback-check")
# Event type -> handler name; on_user_barge_in is chosen by the barged_in flag, not by type.
_HANDLER_FOR_TYPE = {
    kind: name for name, kind in EVENT_HANDLERS.items() if kind and name != "on_user_barge_in"
}

# ASGI's shapes, spelled out so this core needs no server library to describe itself.
Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
AsgiApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class HandlerKeywords(TypedDict, total=False):
    """The handler keywords of :class:`Assistant`, one per name in ``EVENT_HANDLERS`` (a test
    pins the two, and the decorators, to that one table)."""

    on_session_start: Callable[..., Any] | None
    on_user_speech_started: Callable[..., Any] | None
    on_user_speak: Callable[..., Any] | None
    on_user_barge_in: Callable[..., Any] | None
    on_dtmf_received: Callable[..., Any] | None
    on_assistant_speak: Callable[..., Any] | None
    on_assistant_speech_ended: Callable[..., Any] | None
    on_user_input_timeout: Callable[..., Any] | None
    on_sms_failed: Callable[..., Any] | None
    on_session_end: Callable[..., Any] | None
    on_event: Callable[..., Any] | None


class HandlerDecorator:
    """``@assistant.on_user_speak`` registers a handler; ``@assistant.on_user_speak(budget=3.0,
    hold="Let me look that up.")`` also gives it its own budget (seconds) and hold reply."""

    __slots__ = ("_assistant", "_name")

    def __init__(self, assistant: Assistant, name: str) -> None:
        self._assistant = assistant
        self._name = name

    @overload
    def __call__(self, func: F, /) -> F: ...

    @overload
    def __call__(
        self, func: None = None, /, *, budget: float | None = None, hold: Reply = UNSET
    ) -> Callable[[F], F]: ...

    def __call__(
        self, func: F | None = None, /, *, budget: float | None = None, hold: Reply = UNSET
    ) -> F | Callable[[F], F]:
        if func is not None:
            self._assistant.add_handler(self._name, func)
            return func

        def register(inner: F) -> F:
            self._assistant.add_handler(self._name, inner, budget=budget, hold=hold)
            return inner

        return register


class HandlerSlot:
    """An ``@assistant.on_xxx`` decorator: its attribute name is the handler name, checked
    against ``EVENT_HANDLERS`` when the class is made."""

    def __init__(self, takes: str) -> None:
        self.__doc__ = f"Register the handler for {takes}."
        self.name = ""

    def __set_name__(self, owner: type, name: str) -> None:
        check_handler_name(name)
        self.name = name

    @overload
    def __get__(self, assistant: None, owner: type) -> HandlerSlot: ...

    @overload
    def __get__(self, assistant: Assistant, owner: type) -> HandlerDecorator: ...

    def __get__(self, assistant: Assistant | None, owner: type) -> HandlerSlot | HandlerDecorator:
        if assistant is None:
            return self
        return HandlerDecorator(assistant, self.name)


class Assistant:
    """A voice assistant: handlers for AI Flow events, served over HTTP and WebSocket.

    Register handlers as keywords (``Assistant(on_user_speak=f)``) or decorators
    (``@assistant.on_user_speak``). A handler takes ``(event)`` or ``(event, call)``, may be sync or
    async, and returns ``None``, a ``str`` (spoken), an action, or a list of those.

    ``token`` is the shared secret the service sends as ``X-API-TOKEN``. ``fallback`` is what a call
    hears when a handler raises or returns something invalid (``None`` for silence). ``store``
    keeps per-call state (in memory by default; :class:`~sipgate_ai_flow.state.redis.RedisStore`
    for several worker processes).

    The deadline: a reply goes out within ``budget`` seconds. A handler still running then gets
    ``hold`` said for it (``None``: no hold) and its answer follows when ready; after
    ``max_holds`` holds in a row the caller hears ``give_up`` and the late answer is dropped.
    ``observer`` receives metrics hooks. ``api`` places outbound calls (:meth:`dial`); without it
    one is made from the ``AIFLOW_API_*`` environment variables on the first dial.

    An ``Assistant`` is itself an ASGI app: ``uvicorn app:assistant`` serves it.
    """

    # What turns an assistant into an ASGI app: the server layer's ``create_app``, handed in by
    # the package root, since the server imports this core and not the other way round.
    asgi_factory: ClassVar[Callable[[Assistant], AsgiApp] | None] = None

    def __init__(
        self,
        *,
        token: str | None = None,
        fallback: Reply = DEFAULT_FALLBACK,
        store: SessionStore | None = None,
        budget: float = 1.0,
        hold: Reply = DEFAULT_HOLD,
        max_holds: int = 2,
        give_up: Reply = DEFAULT_GIVE_UP,
        observer: Observer | None = None,
        api: AiFlowApi | None = None,
        **handlers: Unpack[HandlerKeywords],
    ) -> None:
        self.token = token or None
        for reply in (fallback, hold, give_up):
            to_actions(reply, _PROBE_SESSION)  # fail now, not in the middle of a call
        if not budget > 0:
            raise ValueError(f"budget must be a positive number of seconds, got {budget!r}")
        if max_holds < 0:
            raise ValueError(f"max_holds must be 0 or more, got {max_holds!r}")
        self.fallback: Reply = fallback
        self.budget = budget
        self.hold: Reply = hold
        self.holds: Callable[[Call, int], Reply] | None = None
        """Makes each hold instead of ``hold``, when set (an LLM agent sets it): from the call
        (its state as the last finished turn left it) and the hold's number in a row, from 1."""
        self.max_holds = max_holds
        self.give_up: Reply = give_up
        self.observer = observer if observer is not None else Observer()
        self.store: SessionStore = store if store is not None else MemoryStore()
        self.api = api
        self._runtime = Runtime(self)
        self.closers: list[Callable[[], Awaitable[None]]] = []
        """Run by :meth:`drain` after the handlers: closing what they used (an agent's MCP servers)."""
        self._handlers: dict[str, Handler] = {}
        self._warned: set[str] = set()
        self._asgi: AsgiApp | None = None
        for name, func in handlers.items():
            if name not in EVENT_HANDLERS:
                known = ", ".join(HANDLER_NAMES)
                raise TypeError(f"Assistant() got an unexpected keyword argument {name!r}; handlers: {known}")
            if func is not None:
                self.add_handler(name, cast("Callable[..., Any]", func))

    # -- registration -------------------------------------------------------------------------

    def add_handler(
        self, name: str, func: Callable[..., Any], *, budget: float | None = None, hold: Reply = UNSET
    ) -> None:
        """Register ``func`` as the handler called ``name`` (e.g. ``"on_user_speak"``), optionally
        with its own ``budget`` (seconds) and ``hold`` reply."""
        check_handler_name(name)
        if name in self._handlers:
            raise AiFlowError(f"{name} is already registered; an assistant has one handler per event")
        if hold is not UNSET:
            to_actions(hold, _PROBE_SESSION)
        self._handlers[name] = Handler.inspect(name, func, budget=budget, hold=hold)

    @property
    def handlers(self) -> Mapping[str, Callable[..., Any]]:
        """The registered handler functions by name (a copy)."""
        return {name: h.func for name, h in self._handlers.items()}

    on_session_start = HandlerSlot("``session_start`` (a call begins, or comes back, D15)")
    on_user_speech_started = HandlerSlot("``user_speech_started`` (WebSocket only; return ignored)")
    on_user_speak = HandlerSlot("``user_speak`` (and barge-ins, if no barge-in handler)")
    on_user_barge_in = HandlerSlot("``user_speak`` with ``barged_in: true`` (D13)")
    on_dtmf_received = HandlerSlot("``dtmf_received`` (one key press)")
    on_assistant_speak = HandlerSlot("``assistant_speak``")
    on_assistant_speech_ended = HandlerSlot("``assistant_speech_ended``")
    on_user_input_timeout = HandlerSlot("``user_input_timeout``")
    on_sms_failed = HandlerSlot("``sms_failed``")
    on_session_end = HandlerSlot("``session_end`` (cleanup only; return ignored, D12)")
    on_event = HandlerSlot("events no specific handler took, ``UnknownEvent`` included")

    # -- handling -----------------------------------------------------------------------------

    async def handle(self, event: EventBase | JsonInput, *, send: Sender | None = None) -> list[Action]:
        """Handle one event (a model, JSON text/bytes, or a dict) and return the actions to send.

        Without ``send`` (a webhook): the reply, ready within the budget; output that comes later
        is returned with the reply to a later event of the call. With ``send`` (a live call, e.g.
        a WebSocket): every action, holds and late answers included, goes through ``send`` the
        moment it exists, and the return value is empty.

        Events of one call are handled one at a time, in the order ``handle`` was called.
        Raises :class:`~sipgate_ai_flow.errors.InvalidEventError` for input that is not an event.
        """
        if not isinstance(event, EventBase):
            event = parse_event(event)
        return await self._runtime.handle(event, send)

    async def serve(
        self,
        event: EventBase,
        *,
        reply: Replier | None = None,
        send: Sender | None = None,
        waits: Callable[[], None] | None = None,
    ) -> None:
        """Handle ``event`` in the calling task: the way for a transport, as it costs no task.

        :meth:`handle` gives each event a task of its own; this runs the event's turn in the
        caller's task, which must then be free to run it to its end: a webhook request's own task,
        or a reader that passes its reading to a new task when ``waits()`` is called (the turn
        waits for something; most never do). For a webhook, ``reply`` is awaited once with the
        reply, within the budget, while a slow turn runs on; for a live call, every action goes
        through ``send``. Failures outside the handlers are logged and answered with the fallback.
        """
        await self._runtime.serve(event, reply=reply, sender=send, waits=waits)

    async def dial(
        self, to_phone_number: str, *, ai_flow_id: str | None = None, billing_device: str | None = None
    ) -> Dialed:
        """Have AI Flow call ``to_phone_number`` (the TypeScript SDK's ``call()``).

        When the person answers, this assistant gets ``session_start`` with
        ``direction: "outbound"``. See :meth:`sipgate_ai_flow.client.AiFlowApi.dial` for the
        arguments and the errors.
        """
        if self.api is None:
            from sipgate_ai_flow.client.outbound import AiFlowApi  # noqa: PLC0415 - httpx only when used

            self.api = AiFlowApi()
        return await self.api.dial(to_phone_number, ai_flow_id=ai_flow_id, billing_device=billing_device)

    async def end_call(self, session: SessionInfo) -> None:
        """End a call whose ``session_end`` never came (its connection closed): run the cleanup."""
        await self.handle(SessionEnd(session=session))

    async def drain(self, grace: float = 10.0) -> None:
        """Shut down: let running handlers finish for up to ``grace`` seconds, cancel the rest,
        and close the store."""
        await self._runtime.drain(grace)
        for close in self.closers:
            try:
                await close()
            except Exception:
                logger.warning("closing %r failed", close, exc_info=True)
        await self.store.close()

    def route(self, event: EventBase) -> Handler | None:
        """The handler that takes ``event``, if any."""
        handlers = self._handlers
        # The type first: isinstance against a pydantic model class that the event is not an
        # instance of goes through pydantic's metaclass, slow for a check made on every event.
        if event.type == "user_speak" and isinstance(event, UserSpeak) and event.barged_in:
            handler = handlers.get("on_user_barge_in") or handlers.get("on_user_speak")
        else:
            handler = handlers.get(_HANDLER_FOR_TYPE.get(event.type, "on_event"))
        return handler or handlers.get("on_event")

    def fallback_actions(self, event: EventBase) -> list[Action]:
        """What the call hears when handling ``event`` failed: the fallback, where actions are
        allowed and the fallback would not set off the same failure again."""
        if isinstance(event, SessionEnd | UserSpeechStarted):
            return []
        if isinstance(event, AssistantSpeak | AssistantSpeechEnded):
            # Playing the fallback sends these events again: with a broken handler or a store
            # that is down, the caller would hear apologies in a loop (found by a fault test).
            return []
        return to_actions(self.fallback, event.session)

    def warn_once(self, key: str, message: str) -> None:
        """Log ``message`` as a warning the first time ``key`` comes up."""
        if key not in self._warned:
            self._warned.add(key)
            logger.warning(message)

    # -- ASGI ---------------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve this assistant as an ASGI app (``POST /webhook``, WebSocket ``/ws``, ``GET /health``)."""
        if self._asgi is None:
            if Assistant.asgi_factory is None:
                raise AiFlowError("no ASGI server layer to serve this assistant (import sipgate_ai_flow)")
            self._asgi = Assistant.asgi_factory(self)
        await self._asgi(scope, receive, send)
