"""OpenTelemetry traces of calls, turns, handlers, LLM requests and tool calls (the ``[otel]`` extra).

Off unless turned on: by :func:`instrument`, by ``create_app(otel=True)`` / ``aiflow serve
--otel``, or by the standard ``OTEL_*`` environment variables (see :func:`configured_by_env`).
Importing this module imports no OpenTelemetry package; :func:`instrument` does.

**One trace per call, in every process.** A call's trace id and the span id of its ``call``
span are derived from the session id (SHA-256), so every worker that handles an event of the
call puts its turn spans under the same parent without asking anyone: with ``aiflow serve
--workers N`` and a Redis store, the turns of one call land in one trace whichever process ran
them, and two concurrent calls can never share one. The ``call`` span itself is emitted when
``session_end`` is handled, with the id made for it (by :class:`CallIdGenerator`, which the
tracer provider made here uses; give it to your own provider too), and with its real start: the
arrival of ``session_start``, kept in the process's memory and, with a
:class:`~sipgate_ai_flow.state.redis.RedisStore`, in Redis next to the call's other keys (one
``SET`` per call, one ``GETDEL`` at its end; it expires with them), so whichever worker gets the
``session_end`` knows it. (``aiflow.call.start_seen=false``: neither knew it, e.g. the call began
before the server did; the span then covers only the ``session_end``.)

**Spans**: ``call``, ``turn <event type>`` (event type, handler, outcome, latency to the first
action and to the first answer, holds), ``handler <name>`` under it, current while the handler
runs (so LLM requests, tool calls and your own spans nest under it), ``chat <model>`` for each
LLM request (GenAI semantic conventions: model, tokens, time to the first chunk) and
``execute_tool <name>`` for each tool call. No phone number or call text is recorded unless
``content=True`` (``AIFLOW_OTEL_CONTENT=1``).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import hashlib
import importlib.metadata
import logging
import os
import sys
import time
from collections.abc import Callable, Coroutine, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from sipgate_ai_flow.assistant.observer import (
    ANSWERED,
    FAILED,
    HELD,
    OVERDUE,
    SENT,
    Observer,
    ObserverWrapper,
    Turn,
    note,
    outcome_of,
)
from sipgate_ai_flow.errors import AiFlowError
from sipgate_ai_flow.protocol.events import DtmfReceived, EventBase, SessionStart, UserSpeak

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.trace import Span, Tracer

    from sipgate_ai_flow.assistant.assistant import Assistant

__all__ = [
    "CONTENT_ENV",
    "CallIdGenerator",
    "TracingObserver",
    "call_ids",
    "configured_by_env",
    "instrument",
    "llm_request_span",
    "tool_span",
]

CONTENT_ENV = "AIFLOW_OTEL_CONTENT"
"""Set to ``1`` to record phone numbers, the caller's words and tool arguments in spans."""

logger = logging.getLogger("sipgate_ai_flow")
_INSTALL = "pip install 'sipgate-ai-flow[otel]'"
_SCOPE = "sipgate_ai_flow"
_MAX_CALLS = 100_000  # call starts remembered; calls whose session_end never came age out
_NS = 1_000_000_000

# The ids the next root span gets (the call span, emitted at session_end).
_next_ids: contextvars.ContextVar[tuple[int, int] | None] = contextvars.ContextVar(
    "sipgate_ai_flow_call_ids", default=None
)


class _Tracing:
    # What the LLM layer needs to know, set by instrument(): None while tracing is off.
    tracer: Tracer | None = None
    content = False


def configured_by_env(env: Mapping[str, str] | None = None) -> bool:
    """Whether the standard OpenTelemetry variables ask for traces: ``OTEL_TRACES_EXPORTER``
    set to anything but ``none``, or ``OTEL_EXPORTER_OTLP_ENDPOINT`` /
    ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` set; never with ``OTEL_SDK_DISABLED=true``."""
    env = os.environ if env is None else env
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    exporter = env.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if exporter:
        return exporter != "none"
    return bool(env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))


def call_ids(session_id: str) -> tuple[int, int]:
    """The trace id and the ``call`` span id of the call ``session_id``: the same in every
    process (and in your own code, to find or link a call's trace)."""
    digest = hashlib.sha256(b"sipgate-ai-flow call\0" + session_id.encode()).digest()
    trace_id = int.from_bytes(digest[:16], "big") or 1  # zero is the invalid id
    span_id = int.from_bytes(digest[16:24], "big") or 1
    return trace_id, span_id


def _import_sdk() -> Any:
    try:
        import opentelemetry.sdk.trace as sdk  # noqa: PLC0415 - the [otel] extra, only when used
    except ImportError:
        raise AiFlowError(f"OpenTelemetry tracing needs the otel extra: {_INSTALL}") from None
    return sdk


@functools.cache
def _call_id_generator_class() -> type:
    # Made on first use: the SDK's generator is its base, and the SDK is an optional extra.
    _import_sdk()
    from opentelemetry.sdk.trace.id_generator import RandomIdGenerator  # noqa: PLC0415

    class CallIdGenerator(RandomIdGenerator):
        """Random ids, except for the ``call`` span being emitted (see :func:`call_ids`)."""

        def generate_span_id(self) -> int:
            ids = _next_ids.get()
            return ids[1] if ids is not None else super().generate_span_id()

        def generate_trace_id(self) -> int:
            ids = _next_ids.get()
            return ids[0] if ids is not None else super().generate_trace_id()

        def is_trace_id_random(self) -> bool:
            return False  # a call's trace id is derived from its session id, not random

    return CallIdGenerator


def CallIdGenerator() -> Any:  # noqa: N802 - used like the class it makes
    """An id generator for ``opentelemetry.sdk.trace.TracerProvider(id_generator=...)``: random
    ids, except that a call's ``call`` span gets the ids :func:`call_ids` derives from its session
    id. The provider :func:`instrument` makes has it; a provider of your own needs it for the
    ``call`` span to be the parent of the call's turns."""
    return _call_id_generator_class()()


class _TurnSpans:
    """A turn's spans and story, kept in ``turn.traced``."""

    __slots__ = ("flags", "handler", "holds", "span")

    def __init__(self, span: Span) -> None:
        self.span = span
        self.handler: Span | None = None
        self.flags = 0
        self.holds = 0


class TracingObserver(ObserverWrapper):
    """Makes the spans of calls and turns, and passes every hook on to ``then`` (the metrics).

    ``store``: where the call's state is kept (called when needed, as an app may change it):
    with a :class:`~sipgate_ai_flow.state.redis.RedisStore`, each call's start is kept there too,
    for the worker that handles its ``session_end``."""

    def __init__(
        self,
        tracer: Tracer,
        then: Observer | None = None,
        *,
        content: bool = False,
        store: Callable[[], object] | None = None,
    ) -> None:
        super().__init__(then)
        from opentelemetry import context, trace  # noqa: PLC0415 - the [otel] extra

        self.tracer = tracer
        self._context = context
        self.content = content
        self._trace = trace
        self._store = store
        self._starts: dict[str, int] = {}  # session id -> when this process first saw the call (ns)
        self._tasks: set[asyncio.Task[None]] = set()  # Redis writes and reads under way

    async def flush(self) -> None:
        """Wait for the call starts being written or read (the spans waiting on them)."""
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    def _redis(self) -> Any:
        # The RedisStore in use, if any; state.redis (and redis) are imported only if used at all.
        module = sys.modules.get("sipgate_ai_flow.state.redis")
        store = self._store() if self._store is not None else None
        if module is None or not isinstance(store, module.RedisStore):
            return None
        return store

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _parent(self, session_id: str) -> Any:
        trace = self._trace
        trace_id, span_id = call_ids(session_id)
        flags = trace.TraceFlags(trace.TraceFlags.SAMPLED)
        context = trace.SpanContext(trace_id, span_id, is_remote=True, trace_flags=flags)
        return trace.set_span_in_context(trace.NonRecordingSpan(context))

    def turn_began(self, turn: Turn) -> None:
        """Start the turn's span, back-dated to the event's arrival."""
        event = turn.event
        session = event.session
        started_ns = time.time_ns() - int((time.monotonic() - turn.started) * _NS)
        if isinstance(event, SessionStart) and session.id not in self._starts:
            if len(self._starts) >= _MAX_CALLS:
                del self._starts[next(iter(self._starts))]
            self._starts[session.id] = started_ns
            store = self._redis()
            if store is not None:
                self._spawn(_remember(store, session.id, started_ns))
        handler = turn.handler
        attributes: dict[str, Any] = {
            "aiflow.session.id": session.id,
            "aiflow.event.type": event.type,
            "aiflow.handler": handler.name if handler is not None else "none",
        }
        if isinstance(event, UserSpeak):
            attributes["aiflow.user.barged_in"] = bool(event.barged_in)
        if self.content:
            attributes.update(_content(event))
        span = self.tracer.start_span(
            f"turn {event.type}",
            context=self._parent(session.id),
            kind=self._trace.SpanKind.SERVER,
            attributes=attributes,
            start_time=started_ns,
        )
        turn.traced = _TurnSpans(span)
        super().turn_began(turn)

    def turn_running(self, turn: Turn) -> None:
        """Start the handler's span and make it current for the handler's work."""
        spans: _TurnSpans | None = turn.traced
        if spans is not None and spans.handler is None:
            name = turn.handler.name if turn.handler is not None else "none"
            parent = self._trace.set_span_in_context(spans.span)
            spans.handler = self.tracer.start_span(f"handler {name}", context=parent)
            # The turn runs in a context of its own (a copy): what is attached here stays there.
            self._context.attach(self._trace.set_span_in_context(spans.handler, parent))
        super().turn_running(turn)

    def turn_handled(self, turn: Turn) -> None:
        """End the handler's span."""
        spans: _TurnSpans | None = turn.traced
        if spans is not None and spans.handler is not None:
            if spans.flags & FAILED:
                spans.handler.set_status(self._trace.Status(self._trace.StatusCode.ERROR, "handler failed"))
            spans.handler.end()
        super().turn_handled(turn)

    def turn_overdue(self, turn: Turn) -> None:
        """Mark where the budget ran out."""
        self._note(turn, OVERDUE, "budget exceeded")
        super().turn_overdue(turn)

    def turn_failed(self, turn: Turn) -> None:
        """Mark the failure: the caller hears the fallback."""
        self._note(turn, FAILED, "fallback")
        super().turn_failed(turn)

    def turn_held(self, turn: Turn, *, gave_up: bool) -> None:
        """Mark the hold (or the give-up)."""
        spans: _TurnSpans | None = turn.traced
        if spans is not None:
            spans.holds += 1
        self._note(turn, HELD | SENT, "give up" if gave_up else "hold")
        super().turn_held(turn, gave_up=gave_up)

    def turn_sent(self, turn: Turn) -> None:
        """Mark the first answer going out."""
        spans: _TurnSpans | None = turn.traced
        if spans is not None and not spans.flags & ANSWERED:
            spans.span.set_attribute("aiflow.turn.answer_ms", _since(turn))
        self._note(turn, ANSWERED | SENT, None if spans and spans.flags & ANSWERED else "answer")
        super().turn_sent(turn)

    def turn_queued(self, turn: Turn) -> None:
        """Mark the late answer waiting for the next webhook reply."""
        self._note(turn, ANSWERED, "answer queued for the next reply")
        super().turn_queued(turn)

    def turn_delivered_late(self, turn: Turn, count: int) -> None:
        """Note the late actions of earlier turns this turn's reply carries."""
        spans: _TurnSpans | None = turn.traced
        if spans is not None:
            spans.span.set_attribute("aiflow.turn.late_deliveries", count)
        self._note(turn, SENT, "late answer delivered")
        super().turn_delivered_late(turn, count)

    def turn_ended(self, turn: Turn, *, stale: bool) -> None:
        """End the turn's span with its outcome."""
        spans: _TurnSpans | None = turn.traced
        if spans is not None:
            turn.traced = None
            span = spans.span
            outcome = outcome_of(spans.flags, stale=stale)
            span.set_attribute("aiflow.turn.outcome", outcome)
            span.set_attribute("aiflow.turn.holds", spans.holds)
            if outcome == "failed":
                span.set_status(
                    self._trace.Status(self._trace.StatusCode.ERROR, "the caller heard the fallback")
                )
            span.end()
        super().turn_ended(turn, stale=stale)

    def call_finished(self, event: EventBase) -> None:
        """Emit the call's span, with the ids every process derives from its session id (after
        reading its start from Redis, where the call's state is kept there)."""
        ended = time.time_ns()
        store = self._redis()
        if store is None:
            self._emit_call(event, self._starts.pop(event.session.id, None), ended)
        else:
            self._spawn(self._finish(store, event, ended))
        super().call_finished(event)

    async def _finish(self, store: Any, event: EventBase, ended: int) -> None:
        start = self._starts.pop(event.session.id, None)
        try:
            kept = await _recall(store, event.session.id)
        except Exception:  # the span goes out all the same, with what this process knows
            logger.warning("session %s: could not read the call's start from Redis", event.session.id)
        else:
            start = kept if kept is not None else start
        self._emit_call(event, start, ended)

    def _emit_call(self, event: EventBase, start: int | None, ended: int) -> None:
        session = event.session
        attributes: dict[str, Any] = {
            "aiflow.session.id": session.id,
            "aiflow.call.start_seen": start is not None,
        }
        if session.direction:
            attributes["aiflow.call.direction"] = str(session.direction)
        if self.content:
            attributes.update(_content(event))
        token = _next_ids.set(call_ids(session.id))
        try:
            span = self.tracer.start_span(
                "call",
                context=self._trace.set_span_in_context(self._trace.INVALID_SPAN),  # a root span
                kind=self._trace.SpanKind.SERVER,
                attributes=attributes,
                start_time=start if start is not None else ended,
            )
        finally:
            _next_ids.reset(token)
        span.end(end_time=ended)

    def _note(self, turn: Turn, happened: int, name: str | None) -> None:
        spans: _TurnSpans | None = turn.traced
        if spans is None:
            return
        if happened & SENT and not spans.flags & SENT:
            spans.span.set_attribute("aiflow.turn.first_action_ms", _since(turn))
        spans.flags = note(spans.flags, happened)
        if name is not None:
            spans.span.add_event(name)


def _start_key(store: Any, session_id: str) -> str:
    # Beside the call's other keys (same hash slot in a cluster), under the store's prefix.
    return f"{store.prefix}{{{session_id}}}:otel-start"


async def _remember(store: Any, session_id: str, start_ns: int) -> None:
    try:
        await store.redis.set(_start_key(store, session_id), start_ns, px=store.ttl_ms, nx=True)
    except Exception:  # tracing must never cost the call; the span then starts later
        logger.warning("session %s: could not keep the call's start in Redis", session_id)


async def _recall(store: Any, session_id: str) -> int | None:
    found = await store.redis.getdel(_start_key(store, session_id))
    return int(found) if found is not None else None


def _since(turn: Turn) -> float:
    return round((time.monotonic() - turn.started) * 1000, 1)


def _content(event: EventBase) -> dict[str, Any]:
    # What content=True adds: who is on the call and what the caller said or pressed.
    session = event.session
    found: dict[str, Any] = {}
    if session.from_phone_number:
        found["aiflow.call.from"] = session.from_phone_number
    if session.to_phone_number:
        found["aiflow.call.to"] = session.to_phone_number
    if isinstance(event, UserSpeak):
        found["aiflow.user.text"] = event.text
    elif isinstance(event, DtmfReceived):
        found["aiflow.user.digit"] = event.digit
    return found


def instrument(
    assistant: Assistant, *, tracer_provider: TracerProvider | None = None, content: bool | None = None
) -> TracingObserver:
    """Trace ``assistant``'s calls, turns, LLM requests and tool calls; returns the observer
    (already the assistant's: it wraps the one the assistant had). Calling it again changes
    nothing.

    ``tracer_provider``: where spans go. Without it: the global provider if your app set one up,
    else one made here from the standard ``OTEL_*`` variables (OTLP over HTTP/protobuf to
    ``OTEL_EXPORTER_OTLP_ENDPOINT``, or ``OTEL_TRACES_EXPORTER=console``), made global.
    ``content``: record phone numbers, the caller's words and tool arguments (default: the
    ``AIFLOW_OTEL_CONTENT`` variable, else off).
    """
    current = assistant.observer
    if isinstance(current, TracingObserver):
        return current
    _import_sdk()
    from opentelemetry import trace  # noqa: PLC0415

    provider = tracer_provider if tracer_provider is not None else _provider()
    if not isinstance(getattr(provider, "id_generator", None), _call_id_generator_class()):
        logger.warning(
            "the tracer provider has no sipgate_ai_flow.otel.CallIdGenerator: each call's turns share "
            "a trace, but the call span cannot take the id they name as their parent"
        )
    if content is None:
        content = os.environ.get(CONTENT_ENV, "").strip().lower() in ("1", "true", "yes")
    tracer = provider.get_tracer(_SCOPE, _version())
    observer = TracingObserver(tracer, current, content=content, store=lambda: assistant.store)
    assistant.observer = observer
    _Tracing.tracer = tracer
    _Tracing.content = content
    flush = getattr(provider, "force_flush", None)
    if flush is not None and not isinstance(provider, trace.ProxyTracerProvider):

        async def flush_spans() -> None:
            await observer.flush()
            await asyncio.to_thread(flush)  # the batch exporter sends what is left, off the loop

        assistant.closers.append(flush_spans)
    return observer


def _version() -> str:
    try:
        return importlib.metadata.version("sipgate-ai-flow")
    except importlib.metadata.PackageNotFoundError:
        return "0"


def _provider() -> Any:
    # The app's own provider if it set one, else one from the OTEL_* variables, made global.
    from opentelemetry import trace  # noqa: PLC0415

    current = trace.get_tracer_provider()
    if not isinstance(current, trace.ProxyTracerProvider):
        return current
    sdk = _import_sdk()
    from opentelemetry.sdk.resources import Resource  # noqa: PLC0415
    from opentelemetry.sdk.trace.export import (  # noqa: PLC0415
        BatchSpanProcessor,
        ConsoleSpanExporter,
        SimpleSpanProcessor,
    )

    # The process id tells the workers of one `aiflow serve --workers N` apart.
    found: dict[str, Any] = {"process.pid": os.getpid()}
    if not os.environ.get("OTEL_SERVICE_NAME"):
        found["service.name"] = "sipgate-ai-flow"
    provider = sdk.TracerProvider(resource=Resource.create(found), id_generator=CallIdGenerator())
    exporter = os.environ.get("OTEL_TRACES_EXPORTER", "otlp").strip().lower() or "otlp"
    for name in (part.strip() for part in exporter.split(",")):
        if name == "console":
            provider.add_span_processor(SimpleSpanProcessor(ConsoleSpanExporter()))
        elif name == "otlp":
            provider.add_span_processor(BatchSpanProcessor(_otlp_exporter()))
        elif name != "none":
            raise AiFlowError(
                f"OTEL_TRACES_EXPORTER={exporter!r}: this SDK sets up 'otlp' (HTTP/protobuf), 'console' "
                "or 'none'; for another exporter, set up a TracerProvider yourself and pass it to "
                "sipgate_ai_flow.otel.instrument(assistant, tracer_provider=...)"
            )
    trace.set_tracer_provider(provider)
    return provider


def _otlp_exporter() -> Any:
    protocol = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or os.environ.get(
        "OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"
    )
    if protocol.strip().lower() != "http/protobuf":
        raise AiFlowError(
            f"OTEL_EXPORTER_OTLP_PROTOCOL={protocol!r}: the otel extra sends OTLP over HTTP/protobuf "
            "(port 4318); use that, or set up a TracerProvider with another exporter yourself"
        )
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter  # noqa: PLC0415
    except ImportError:
        raise AiFlowError(f"the OTLP exporter is missing: {_INSTALL}") from None
    return OTLPSpanExporter()  # endpoint, headers and timeout from the OTEL_EXPORTER_OTLP_* variables


# -- spans for the LLM layer: free while tracing is off -------------------------------------------


class _LlmSpan:
    """An LLM request's span (or nothing, while tracing is off): record what the request did."""

    __slots__ = ("first", "span", "started")

    def __init__(self, span: Span | None) -> None:
        self.span = span
        self.started = time.monotonic()
        self.first = False

    def first_chunk(self) -> None:
        """The first output arrived: the time to the first chunk."""
        if self.span is not None and not self.first:
            self.first = True
            self.span.set_attribute("gen_ai.response.time_to_first_chunk", time.monotonic() - self.started)

    def usage(self, input_tokens: int, output_tokens: int) -> None:
        """The tokens the request took."""
        if self.span is not None:
            self.span.set_attribute("gen_ai.usage.input_tokens", input_tokens)
            self.span.set_attribute("gen_ai.usage.output_tokens", output_tokens)

    def failed(self, reason: str) -> None:
        """The request failed (``reason`` is safe to record: it quotes no conversation)."""
        if self.span is not None:
            from opentelemetry.trace import Status, StatusCode  # noqa: PLC0415

            self.span.set_attribute("error.type", reason.split(" ", 1)[0])
            self.span.set_status(Status(StatusCode.ERROR, reason))


_OFF = _LlmSpan(None)


@contextlib.contextmanager
def llm_request_span(model: str, *, tools: int = 0) -> Iterator[_LlmSpan]:
    """A ``chat <model>`` client span for one LLM request, a child of the current span (the
    handler's). Not made current: the request streams across the handler's yields."""
    tracer = _Tracing.tracer
    if tracer is None:
        yield _OFF
        return
    from opentelemetry.trace import SpanKind  # noqa: PLC0415

    attributes: dict[str, Any] = {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "openai",
        "gen_ai.request.model": model,
        "gen_ai.request.stream": True,
    }
    if tools:
        attributes["aiflow.llm.tools_offered"] = tools
    span = tracer.start_span(f"chat {model}", kind=SpanKind.CLIENT, attributes=attributes)
    try:
        yield _LlmSpan(span)
    finally:
        span.end()


@contextlib.contextmanager
def tool_span(name: str, call_id: str, arguments: str) -> Iterator[_ToolSpan]:
    """An ``execute_tool <name>`` span, current while the tool runs (its own spans nest under it)."""
    tracer = _Tracing.tracer
    if tracer is None:
        yield _NO_TOOL
        return
    attributes: dict[str, Any] = {
        "gen_ai.operation.name": "execute_tool",
        "gen_ai.tool.name": name,
        "gen_ai.tool.call.id": call_id,
        "gen_ai.tool.type": "function",
    }
    if _Tracing.content:
        attributes["gen_ai.tool.call.arguments"] = arguments
    with tracer.start_as_current_span(f"execute_tool {name}", attributes=attributes) as span:
        yield _ToolSpan(span)


class _ToolSpan:
    """A tool call's span (or nothing): record its result."""

    __slots__ = ("span",)

    def __init__(self, span: Span | None) -> None:
        self.span = span

    def result(self, content: str, *, error: bool) -> None:
        """The tool's result (recorded only with ``content=True``); ``error``: it failed."""
        if self.span is None:
            return
        if _Tracing.content:
            self.span.set_attribute("gen_ai.tool.call.result", content)
        if error:
            from opentelemetry.trace import Status, StatusCode  # noqa: PLC0415

            self.span.set_attribute("error.type", "tool_error")
            self.span.set_status(Status(StatusCode.ERROR, "the tool reported an error"))


_NO_TOOL = _ToolSpan(None)
