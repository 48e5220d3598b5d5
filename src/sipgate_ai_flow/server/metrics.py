"""Prometheus metrics for a served assistant, at ``GET /metrics`` (or on a port of its own).

Turn latency is measured as the caller hears it: from the moment the event arrived to the
moment the turn's first action (a hold included) left for the caller, and to the moment its
first answer did (for a streamed answer: its first sentence). Labels are the event type (a
closed set; unknown types count as ``other``) and the turn's outcome: a handful of series, never
one per call or per handler argument.

With several worker processes (``aiflow serve --workers N``) the CLI points
``PROMETHEUS_MULTIPROC_DIR`` at a fresh directory before the workers start; every worker then
writes its numbers there and any of them answers a scrape with the sum over all.
"""

from __future__ import annotations

import os
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from starlette.requests import Request
from starlette.responses import Response

from sipgate_ai_flow.assistant.observer import (
    ANSWERED,
    FAILED,
    HELD,
    OVERDUE,
    SENT,
    ErrorKind,
    Observer,
    ObserverWrapper,
    Turn,
    note,
    outcome_of,
)
from sipgate_ai_flow.protocol.events import EVENT_TYPES
from sipgate_ai_flow.server.auth import TOKEN_HEADER, token_matches

if TYPE_CHECKING:
    from sipgate_ai_flow.assistant.assistant import Assistant

__all__ = ["PrometheusObserver", "metrics_endpoint", "metrics_registry", "use_prometheus"]

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
# What a caller notices lies between 100 ms and a few seconds: finer steps there.
_TURN_BUCKETS = (0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0)


class PrometheusObserver(Observer):
    """Counts what the runtime does, in a registry of its own (so several apps can coexist)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        registry = self.registry
        self.events = Counter("aiflow_events", "Events received, by type.", ["type"], registry=registry)
        self.latency = Histogram(
            "aiflow_handler_seconds",
            "Time from a handler's start to its end, by handler.",
            ["handler"],
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self.overruns = Counter(
            "aiflow_budget_overruns",
            "Events not handled within their budget.",
            ["handler"],
            registry=registry,
        )
        self.holds = Counter("aiflow_holds", "Hold actions sent for slow handlers.", registry=registry)
        self.give_ups = Counter(
            "aiflow_give_ups", "Handlers given up on after the last hold.", registry=registry
        )
        self.errors = Counter("aiflow_errors", "Failures, by kind.", ["kind"], registry=registry)
        self.active = Gauge(
            "aiflow_active_calls",
            "Calls begun and not yet ended.",
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.first_action = Histogram(
            "aiflow_turn_first_action_seconds",
            "From an event's arrival to the first action of its turn leaving for the caller "
            "(a hold included), by event type.",
            ["type"],
            buckets=_TURN_BUCKETS,
            registry=registry,
        )
        self.answer = Histogram(
            "aiflow_turn_answer_seconds",
            "From an event's arrival to the first answer of its turn leaving for the caller "
            "(for a streamed answer: its first sentence), by event type.",
            ["type"],
            buckets=_TURN_BUCKETS,
            registry=registry,
        )
        self.turns = Counter(
            "aiflow_turns",
            "Turns ended, by event type and outcome (answered, late, held, stale, failed, silent).",
            ["type", "outcome"],
            registry=registry,
        )
        self.late = Counter(
            "aiflow_late_deliveries",
            "Actions of slow webhook turns delivered with the reply to a later event.",
            registry=registry,
        )
        self._event_children: dict[str, Any] = {}
        self._latency_children: dict[str, Any] = {}
        self._first_children: dict[str, Any] = {}
        self._answer_children: dict[str, Any] = {}
        self._turn_children: dict[tuple[str, str], Any] = {}

    def event(self, kind: str) -> None:
        """Count an event (types this SDK does not know count as ``other``)."""
        child = self._event_children.get(kind)
        if child is None:
            # labels() is slow, and a label per unknown type would let the wire grow memory.
            child = self.events.labels(kind if kind in EVENT_TYPES else "other")
            if kind in EVENT_TYPES:
                self._event_children[kind] = child
        child.inc()

    def handled(self, handler: str, seconds: float) -> None:
        """Record a handler's latency."""
        child = self._latency_children.get(handler)
        if child is None:
            child = self._latency_children[handler] = self.latency.labels(handler)
        child.observe(seconds)

    def overrun(self, handler: str) -> None:
        """Count a budget overrun."""
        self.overruns.labels(handler).inc()

    def hold(self) -> None:
        """Count a hold."""
        self.holds.inc()

    def give_up(self) -> None:
        """Count a give-up."""
        self.give_ups.inc()

    def error(self, kind: ErrorKind) -> None:
        """Count a failure."""
        self.errors.labels(kind).inc()

    def call_started(self) -> None:
        """One more active call."""
        self.active.inc()

    def call_ended(self) -> None:
        """One active call fewer."""
        self.active.dec()

    # -- turns: the story of each turn is a few bits in turn.observed (no allocation) ------------

    def turn_overdue(self, turn: Turn) -> None:
        """Note that the budget ran out."""
        turn.observed = note(turn.observed or 0, OVERDUE)

    def turn_failed(self, turn: Turn) -> None:
        """Note the failure."""
        turn.observed = note(turn.observed or 0, FAILED)

    def turn_held(self, turn: Turn, *, gave_up: bool) -> None:
        """A hold is the first thing the caller hears of a slow turn."""
        self._out(turn, HELD)

    def turn_sent(self, turn: Turn) -> None:
        """The first answer (and maybe the first action) of the turn went out."""
        flags = turn.observed or 0
        if not flags & ANSWERED:
            kind = _kind(turn)
            child = self._answer_children.get(kind)
            if child is None:
                child = self._answer_children[kind] = self.answer.labels(kind)
            child.observe(time.monotonic() - turn.started)
        self._out(turn, ANSWERED)

    def turn_queued(self, turn: Turn) -> None:
        """The answer waits for the next webhook reply: the turn is late."""
        turn.observed = note(turn.observed or 0, ANSWERED)

    def turn_delivered_late(self, turn: Turn, count: int) -> None:
        """Count late actions; the caller hears them first in this turn."""
        self.late.inc(count)
        self._out(turn, 0)

    def turn_ended(self, turn: Turn, *, stale: bool) -> None:
        """Count the turn by its outcome."""
        key = (_kind(turn), outcome_of(turn.observed or 0, stale=stale))
        child = self._turn_children.get(key)
        if child is None:
            child = self._turn_children[key] = self.turns.labels(*key)
        child.inc()

    def _out(self, turn: Turn, happened: int) -> None:
        # Something of the turn left for the caller: the first time, that is its first action.
        flags = turn.observed or 0
        if not flags & SENT:
            kind = _kind(turn)
            child = self._first_children.get(kind)
            if child is None:
                child = self._first_children[kind] = self.first_action.labels(kind)
            child.observe(time.monotonic() - turn.started)
        turn.observed = note(flags, happened | SENT)


def _kind(turn: Turn) -> str:
    # The event type as a label: a closed set, so the wire cannot grow the number of series.
    kind = turn.event.type
    return kind if kind in EVENT_TYPES else "other"


def use_prometheus(assistant: Assistant) -> PrometheusObserver | None:
    """Put a :class:`PrometheusObserver` in place of ``assistant``'s no-op default observer (also
    under a tracing observer) and return it; the one already there is returned as it is. ``None``:
    the assistant has an observer of its own, which stays."""
    observer = assistant.observer
    wrapper = observer if isinstance(observer, ObserverWrapper) else None
    inner = wrapper.then if wrapper is not None else observer
    if type(inner) is Observer:
        inner = PrometheusObserver()
        if wrapper is not None:
            wrapper.then = inner
        else:
            assistant.observer = inner
    return inner if isinstance(inner, PrometheusObserver) else None


def metrics_registry(observer: PrometheusObserver | None = None) -> CollectorRegistry:
    """What a scrape renders: in multiprocess mode (``PROMETHEUS_MULTIPROC_DIR`` set) the sum
    over every worker's files, else ``observer``'s own registry."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR") or observer is None:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return registry
    return observer.registry


def metrics_endpoint(
    observer: PrometheusObserver, *, token: str | None = None
) -> Callable[[Request], Awaitable[Response]]:
    """The Starlette endpoint that renders ``observer``'s metrics (all workers' in multiprocess
    mode). With ``token``, a scrape must carry it: as ``Authorization: Bearer <token>`` (what
    Prometheus sends for ``authorization: {credentials: ...}``) or as ``X-API-TOKEN``."""

    async def metrics(request: Request) -> Response:
        if token is not None and not _carries(request, token):
            return Response(
                "missing or wrong token\n", status_code=401, headers={"WWW-Authenticate": "Bearer"}
            )
        return Response(generate_latest(metrics_registry(observer)), media_type=CONTENT_TYPE_LATEST)

    return metrics


def _carries(request: Request, token: str) -> bool:
    scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and credentials:
        return token_matches(credentials.strip(), token)
    return (
        token_matches(request.headers.get(TOKEN_HEADER), token) if TOKEN_HEADER in request.headers else False
    )
