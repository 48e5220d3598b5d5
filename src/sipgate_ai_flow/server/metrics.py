"""Prometheus metrics for a served assistant, at ``GET /metrics``.

With several worker processes (``aiflow serve --workers N``) the CLI points
``PROMETHEUS_MULTIPROC_DIR`` at a fresh directory before the workers start; every worker then
writes its numbers there and any of them answers a scrape with the sum over all.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from typing import Any

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

from sipgate_ai_flow.assistant.observer import ErrorKind, Observer
from sipgate_ai_flow.protocol.events import EVENT_TYPES

__all__ = ["PrometheusObserver", "metrics_endpoint"]

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


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
        self._event_children: dict[str, Any] = {}
        self._latency_children: dict[str, Any] = {}

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


def metrics_endpoint(observer: PrometheusObserver) -> Callable[[Request], Awaitable[Response]]:
    """The Starlette endpoint that renders ``observer``'s metrics (all workers' in multiprocess mode)."""

    async def metrics(_: Request) -> Response:
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        else:
            registry = observer.registry
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return metrics
