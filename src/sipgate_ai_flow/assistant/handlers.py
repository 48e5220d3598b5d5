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

__all__ = ["EVENT_HANDLERS", "HANDLER_NAMES", "Handler", "HandlerFunc"]

HandlerFunc = Callable[..., Any]

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

    @classmethod
    def inspect(cls, name: str, func: object) -> Handler:
        """Check that ``func`` can be called as ``(event)`` or ``(event, call)``."""
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
        return cls(name, func, wants_call, _kind(func))

    async def __call__(self, event: EventBase, call: Call) -> Any:
        """Run the handler and return what it produced (generators: every item, in a list)."""
        args = (event, call) if self.wants_call else (event,)
        if self.kind == "async":
            return await self.func(*args)
        if self.kind == "async_gen":
            gen: AsyncIterator[Any] = self.func(*args)
            return [item async for item in gen]
        # Sync handlers run in a thread so a blocking one cannot stall other calls.
        result = await asyncio.to_thread(_run_sync, self.func, args, self.kind == "sync_gen")
        if inspect.isawaitable(result):
            return await result
        return result


def _run_sync(func: HandlerFunc, args: tuple[Any, ...], is_gen: bool) -> Any:
    result = func(*args)
    if is_gen:
        items: Iterator[Any] = result
        return list(items)
    return result


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
