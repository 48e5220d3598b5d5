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
from bisect import bisect_left
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from functools import partial
from itertools import accumulate
from typing import TYPE_CHECKING, Any, get_args

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.requests import Request
from starlette.responses import Response

from sipgate_ai_flow.assistant.handlers import HANDLER_NAMES
from sipgate_ai_flow.assistant.observer import (
    ANSWERED,
    FAILED,
    HELD,
    OVERDUE,
    SENT,
    ErrorKind,
    Observer,
    ObserverWrapper,
    Outcome,
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
        # The figures taken on every event (events, handler time, turns): in one process they
        # are plain numbers, rendered at scrape time (a prometheus_client Counter or Histogram
        # takes a lock per observation); workers need prometheus_client's files to add theirs up.
        self._shared = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
        self._event_children: dict[str, Any] = {}
        self._latency_children: dict[str, Any] = {}
        self.events: Counter | None = None
        self.latency: Histogram | None = None
        if self._shared:
            self.events = Counter(_EVENTS[0], _EVENTS[1], ["type"], registry=registry)
            self.latency = Histogram(
                _HANDLER[0], _HANDLER[1], ["handler"], buckets=_LATENCY_BUCKETS, registry=registry
            )
        else:
            # Every event type's counter made up front: the wire cannot add series.
            self._event_children = {kind: _Count() for kind in (*EVENT_TYPES, "other")}
            self._latency_children = {name: _Buckets(_LATENCY_BUCKETS) for name in HANDLER_NAMES}
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
        self._series: dict[str, _Series] = {}
        self._turn_metrics: tuple[Histogram, Histogram, Counter] | None = None
        if self._shared:
            self._turn_metrics = (
                Histogram(_FIRST[0], _FIRST[1], ["type"], buckets=_TURN_BUCKETS, registry=registry),
                Histogram(_ANSWER[0], _ANSWER[1], ["type"], buckets=_TURN_BUCKETS, registry=registry),
                Counter(_TURNS[0], _TURNS[1], ["type", "outcome"], registry=registry),
            )
        else:
            # Every series at once: a bounded set made up front, not objects that appear as calls
            # bring new event types or outcomes (and a scrape renders only those with numbers).
            for kind in (*EVENT_TYPES, "other"):
                series = self._add_series(kind)
                for outcome in get_args(Outcome):
                    series.outcomes.setdefault(outcome, _Count())
            registry.register(_TurnCollector(self))
        self.late = Counter(
            "aiflow_late_deliveries",
            "Actions of slow webhook turns delivered with the reply to a later event.",
            registry=registry,
        )

    def event(self, kind: str) -> None:
        """Count an event (types this SDK does not know count as ``other``)."""
        child = self._event_children.get(kind)
        if child is None:
            # labels() is slow, and a label per unknown type would let the wire grow memory.
            label = kind if kind in EVENT_TYPES else "other"
            child = self._event_children.get(label)
            if child is None:
                assert self.events is not None
                child = self._event_children[label] = self.events.labels(label)
        child.inc()

    def handled(self, handler: str, seconds: float) -> None:
        """Record a handler's latency."""
        child = self._latency_children.get(handler)
        if child is None:
            # Handler names are the assistant's own: a bounded set.
            latency = self.latency
            child = latency.labels(handler) if latency is not None else _Buckets(_LATENCY_BUCKETS)
            self._latency_children[handler] = child
        child.observe(seconds)

    def handler_series(self) -> list[tuple[str, _Buckets]]:
        """The handlers' run times (for the collector that renders them in one process)."""
        return list(self._latency_children.items())

    def event_counts(self) -> list[tuple[str, int]]:
        """The events received by type (for the collector that renders them in one process)."""
        return [(kind, count.value) for kind, count in list(self._event_children.items())]

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
        turn.observed = (turn.observed or 0) | OVERDUE

    def turn_failed(self, turn: Turn) -> None:
        """Note the failure."""
        turn.observed = (turn.observed or 0) | FAILED

    def turn_held(self, turn: Turn, *, gave_up: bool) -> None:
        """A hold is the first thing the caller hears of a slow turn."""
        self._out(turn, HELD)

    def turn_sent(self, turn: Turn) -> None:
        """The first answer (and maybe the first action) of the turn went out."""
        flags = turn.observed or 0
        if flags & ANSWERED:
            return  # the next sentences of a streamed answer
        took = time.monotonic() - turn.started
        series = self._series.get(turn.event.type) or self._add_series(turn.event.type)
        series.answer.observe(took)
        if not flags & SENT:
            series.first.observe(took)
        turn.observed = note(flags, ANSWERED | SENT)

    def turn_queued(self, turn: Turn) -> None:
        """The answer waits for the next webhook reply: the turn is late."""
        turn.observed = note(turn.observed or 0, ANSWERED)

    def turn_delivered_late(self, turn: Turn, count: int) -> None:
        """Count late actions; the caller hears them first in this turn."""
        self.late.inc(count)
        self._out(turn, 0)

    def turn_ended(self, turn: Turn, *, stale: bool) -> None:
        """Count the turn by its outcome."""
        series = self._series.get(turn.event.type) or self._add_series(turn.event.type)
        flags = turn.observed
        if flags == _ANSWERED_AT_ONCE:
            series.answered.inc()
        else:
            outcome = outcome_of(flags or 0, stale=stale)
            child = series.outcomes.get(outcome)
            if child is None:
                child = series.outcomes[outcome] = series.counter(outcome)
            child.inc()

    def _out(self, turn: Turn, happened: int) -> None:
        # Something of the turn left for the caller: the first time, that is its first action.
        flags = turn.observed or 0
        if not flags & SENT:
            series = self._series.get(turn.event.type) or self._add_series(turn.event.type)
            series.first.observe(time.monotonic() - turn.started)
        turn.observed = note(flags, happened | SENT)

    def _add_series(self, kind: str) -> _Series:
        # The children of one event type, made once (labels() is slow); types this SDK does not
        # know share the "other" ones, so the wire cannot grow the number of series.
        label = kind if kind in EVENT_TYPES else "other"
        series = self._series.get(label)
        if series is None:
            shared = self._turn_metrics
            if shared is None:
                series = _Series(label, _Buckets(), _Buckets(), _Count(), self._count)
            else:
                first, answer, turns = shared
                series = _Series(
                    label,
                    first.labels(label),
                    answer.labels(label),
                    turns.labels(label, "answered"),
                    partial(turns.labels, label),
                )
            series.outcomes["answered"] = series.answered
            self._series[label] = series
        return series

    def turn_series(self) -> list[_Series]:
        """The turn figures by event type (for the collector that renders them)."""
        return list(self._series.values())

    def _count(self, _outcome: str) -> _Count:
        return _Count()


_ANSWERED_AT_ONCE = SENT | ANSWERED  # the usual turn: its answer, and nothing before it


@dataclass(slots=True)
class _Series:
    """The turn figures of one event type: prometheus_client children, or plain numbers."""

    kind: str
    first: Any
    answer: Any
    answered: Any
    counter: Callable[[str], Any]  # makes the counter of one more outcome
    outcomes: dict[str, Any] = field(default_factory=dict)


_FIRST = (
    "aiflow_turn_first_action_seconds",
    "From an event's arrival to the first action of its turn leaving for the caller "
    "(a hold included), by event type.",
)
_ANSWER = (
    "aiflow_turn_answer_seconds",
    "From an event's arrival to the first answer of its turn leaving for the caller "
    "(for a streamed answer: its first sentence), by event type.",
)
_TURNS = (
    "aiflow_turns",
    "Turns ended, by event type and outcome (answered, late, held, stale, failed, silent).",
)
_EVENTS = ("aiflow_events", "Events received, by type.")
_HANDLER = ("aiflow_handler_seconds", "Time from a handler's start to its end, by handler.")


class _Buckets:
    """A histogram's numbers, kept by the event loop's thread alone (no lock to take)."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...] = _TURN_BUCKETS) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last: above every bound
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value

    def cumulative(self) -> list[tuple[str, float]]:
        counts = list(self.counts)  # one copy: a scrape from another thread sees one moment
        running = list(accumulate(counts))
        labels = [repr(bound) for bound in self.bounds]
        return [*zip(labels, running[:-1], strict=True), ("+Inf", running[-1])]


class _Count:
    """A counter kept by the event loop's thread alone."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0

    def inc(self) -> None:
        self.value += 1


class _TurnCollector(Collector):
    """Renders a single process's per-event figures at scrape time, as prometheus_client would."""

    def __init__(self, observer: PrometheusObserver) -> None:
        self.observer = observer

    def collect(self) -> Iterable[Metric]:
        """The turn histograms, the outcome counter, events and handler times."""
        series = self.observer.turn_series()
        families: list[Metric] = []
        for (name, documentation), pick in ((_FIRST, "first"), (_ANSWER, "answer")):
            family = HistogramMetricFamily(name, documentation, labels=["type"])
            for one in series:
                buckets: _Buckets = getattr(one, pick)
                if any(buckets.counts):
                    family.add_metric([one.kind], buckets.cumulative(), buckets.sum)
            families.append(family)
        events = CounterMetricFamily(_EVENTS[0], _EVENTS[1], labels=["type"])
        for kind, value in self.observer.event_counts():
            if value:
                events.add_metric([kind], value)
        families.append(events)
        handlers = HistogramMetricFamily(_HANDLER[0], _HANDLER[1], labels=["handler"])
        for name, buckets in self.observer.handler_series():
            if any(buckets.counts):  # the handlers that ran, not every name made up front
                handlers.add_metric([name], buckets.cumulative(), buckets.sum)
        families.append(handlers)
        turns = CounterMetricFamily(_TURNS[0], _TURNS[1], labels=["type", "outcome"])
        for one in series:
            for outcome, count in list(one.outcomes.items()):
                if count.value:
                    turns.add_metric([one.kind, outcome], count.value)
        families.append(turns)
        return families


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
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return registry
    if observer is None:
        raise ValueError("no metrics to render: pass the observer, or set PROMETHEUS_MULTIPROC_DIR")
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
