"""Handler registration: names, signature checks, and calling sync/async/generator handlers."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sipgate_ai_flow.errors import HandlerError

if TYPE_CHECKING:
    from sipgate_ai_flow.assistant.call import Call
    from sipgate_ai_flow.protocol.events import EventBase

__all__ = ["EVENT_HANDLERS", "HANDLER_NAMES", "UNSET", "Handler", "HandlerFunc"]

HandlerFunc = Callable[..., Any]


class _Unset:
    def __repr__(self) -> str:
        return "UNSET"


UNSET: Any = _Unset()
"""Marks an option a handler leaves to the assistant (``None`` would mean "switched off")."""
_END = object()

# Handler name -> the event type it receives. Mirrors the TypeScript SDK's onXxx names.
EVENT_HANDLERS: dict[str, str | None] = {
    "on_session_start": "session_start",
    "on_user_speech_started": "user_speech_started",
    "on_user_speak": "user_speak",
    "on_user_barge_in": "user_speak",  # user_speak with barged_in: true (D13)
    "on_dtmf_received": "dtmf_received",
    "on_assistant_speak": "assistant_speak",
    "on_assistant_speech_ended": "assistant_speech_ended",
    "on_user_input_timeout": "user_input_timeout",
    "on_sms_failed": "sms_failed",
    "on_session_end": "session_end",
    "on_event": None,  # catch-all: every event no specific handler took
}
HANDLER_NAMES: tuple[str, ...] = tuple(EVENT_HANDLERS)

_POSITIONAL = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)


@dataclass(frozen=True, slots=True)
class Handler:
    """A user function checked once at registration, with how to call it."""

    name: str
    func: HandlerFunc
    wants_call: bool
    kind: str  # "async", "async_gen", "sync" or "sync_gen"
    budget: float | None = None  # None: the assistant's
    hold: Any = UNSET  # UNSET: the assistant's

    @classmethod
    def inspect(cls, name: str, func: object, *, budget: float | None = None, hold: Any = UNSET) -> Handler:
        """Check that ``func`` can be called as ``(event)`` or ``(event, call)``."""
        if budget is not None and not budget > 0:
            raise HandlerError(f"{name}: budget must be a positive number of seconds, got {budget!r}")
        if not callable(func):
            raise HandlerError(f"{name} must be callable, got {type(func).__name__}")
        label = f"{name} handler {getattr(func, '__qualname__', repr(func))}"
        try:
            sig = inspect.signature(func)
        except (TypeError, ValueError) as exc:
            raise HandlerError(f"cannot read the signature of {label}: {exc}") from None
        params = list(sig.parameters.values())
        positional = [p for p in params if p.kind in _POSITIONAL]
        required = [p for p in positional if p.default is p.empty]
        varargs = any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in params)
        kwonly = [p.name for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY and p.default is p.empty]
        usage = "a handler takes (event) or (event, call)"
        if kwonly:
            raise HandlerError(f"{label} has required keyword-only parameters {kwonly}; {usage}")
        if len(required) > 2:
            raise HandlerError(f"{label} requires {len(required)} arguments; {usage}")
        if not positional and not varargs:
            raise HandlerError(f"{label} takes no arguments; {usage}")
        wants_call = varargs or len(positional) >= 2
        return cls(name, func, wants_call, _kind(func), budget, hold)

    async def reply(self, event: EventBase, call: Call | None) -> Any:
        """Run the handler and return its reply, or an async iterator of replies to stream: a
        generator handler, or one that returns an async iterator (e.g. ``sentences(...)``).

        ``call`` may be ``None`` for a handler that does not take it.
        """
        args = (event, call) if self.wants_call else (event,)
        if self.kind == "async":
            return await self.func(*args)
        if self.kind == "async_gen":
            return self.func(*args)
        if self.kind == "sync_gen":
            return _in_threads(iter(self.func(*args)))
        result = await asyncio.to_thread(self.func, *args)
        if inspect.isawaitable(result):
            result = await result
        return result

    async def stream(self, event: EventBase, call: Call | None) -> AsyncIterator[Any]:
        """Run the handler and yield what it produces: one reply, or each item of a stream."""
        result = await self.reply(event, call)
        if isinstance(result, AsyncIterator):
            async for item in each(result):
                yield item
        else:
            yield result


async def each(items: AsyncIterator[Any]) -> AsyncIterator[Any]:
    """Yield from ``items``, then close it: at the end, or as soon as the turn is cancelled."""
    try:
        async for item in items:
            yield item
    finally:
        aclose = getattr(items, "aclose", None)
        if aclose is not None:
            await aclose()


async def _in_threads(items: Iterator[Any]) -> AsyncIterator[Any]:
    # Each next() runs in a thread so a blocking generator cannot stall other calls.
    while (item := await asyncio.to_thread(next, items, _END)) is not _END:
        yield item


def _kind(func: object) -> str:
    # Callable objects are judged by their __call__; partials and plain functions by themselves.
    dunder = getattr(func, "__call__", None)  # noqa: B004 - we need the method, not callable()
    for kind, test in (
        ("async_gen", inspect.isasyncgenfunction),
        ("async", inspect.iscoroutinefunction),
        ("sync_gen", inspect.isgeneratorfunction),
    ):
        if test(func) or test(dunder):
            return kind
    return "sync"


def check_handler_name(name: str) -> None:
    """Raise :class:`HandlerError` for a name that is not a known handler."""
    if name not in EVENT_HANDLERS:
        known = ", ".join(HANDLER_NAMES)
        raise HandlerError(f"unknown handler {name!r}; known handlers: {known}")
