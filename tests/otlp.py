"""A real OTLP/HTTP trace receiver for the tests: a small ``http.server`` on 127.0.0.1 that decodes
``ExportTraceServiceRequest`` protobufs (``opentelemetry-proto``, which the exporter brings) and
keeps every span it is sent; and a text rendering of one trace, for ``docs/observability.md``."""

from __future__ import annotations

import gzip
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue


@dataclass
class ReceivedSpan:
    """One span as the receiver decoded it (ids as hex, as backends show them)."""

    trace_id: str
    span_id: str
    parent_id: str
    name: str
    start_ns: int
    end_ns: int
    attributes: dict[str, Any]
    events: list[str]
    status: int
    resource: dict[str, Any] = field(default_factory=dict)

    def strings(self) -> list[str]:
        """Every string value in the span: its attributes', its events', its resource's."""
        values = [*self.attributes.values(), *self.events, *self.resource.values()]
        return [str(value) for value in values]


def _value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return [_value(v) for v in value.array_value.values]
    return getattr(value, kind) if kind else None


class Receiver:
    """Collects the spans posted to ``http://127.0.0.1:PORT/v1/traces``."""

    def __init__(self) -> None:
        self.spans: list[ReceivedSpan] = []
        self.requests = 0
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                status = 404
                if self.path == "/v1/traces":
                    receiver.take(ExportTraceServiceRequest.FromString(body))
                    status = 200
                answer = ExportTraceServiceResponse().SerializeToString()
                self.send_response(status)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def take(self, request: ExportTraceServiceRequest) -> None:
        """Keep the spans of one export request."""
        found: list[ReceivedSpan] = []
        for resource_spans in request.resource_spans:
            resource = {a.key: _value(a.value) for a in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    found.append(
                        ReceivedSpan(
                            trace_id=span.trace_id.hex(),
                            span_id=span.span_id.hex(),
                            parent_id=span.parent_span_id.hex(),
                            name=span.name,
                            start_ns=span.start_time_unix_nano,
                            end_ns=span.end_time_unix_nano,
                            attributes={a.key: _value(a.value) for a in span.attributes},
                            events=[event.name for event in span.events],
                            status=span.status.code,
                            resource=resource,
                        )
                    )
        with self._lock:
            self.spans.extend(found)
            self.requests += 1

    def wait_for(
        self, done: Callable[[list[ReceivedSpan]], bool], timeout: float = 20.0
    ) -> list[ReceivedSpan]:
        """The spans, once ``done(spans)`` holds (or the timeout passed: the caller's asserts say why)."""
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                spans = list(self.spans)
            if done(spans) or time.monotonic() > deadline:
                return spans
            time.sleep(0.05)

    def start(self) -> None:
        """Serve in a thread."""
        self._thread.start()

    def stop(self) -> None:
        """Stop serving."""
        self.server.shutdown()
        self.server.server_close()


@contextmanager
def otlp_receiver() -> Iterator[Receiver]:
    """A running :class:`Receiver`."""
    receiver = Receiver()
    receiver.start()
    try:
        yield receiver
    finally:
        receiver.stop()


# Attributes worth showing in the rendered tree, in this order.
_SHOWN = (
    "aiflow.event.type",
    "aiflow.handler",
    "aiflow.turn.outcome",
    "aiflow.turn.first_action_ms",
    "aiflow.turn.answer_ms",
    "aiflow.turn.holds",
    "gen_ai.request.model",
    "gen_ai.usage.input_tokens",
    "gen_ai.usage.output_tokens",
    "gen_ai.tool.name",
)


def render(spans: list[ReceivedSpan]) -> str:
    """One trace as an indented tree: each span's name, duration, main attributes and events
    (children in the order they started)."""
    by_parent: dict[str, list[ReceivedSpan]] = {}
    ids = {span.span_id for span in spans}
    for span in sorted(spans, key=lambda s: s.start_ns):
        parent = span.parent_id if span.parent_id in ids else ""
        by_parent.setdefault(parent, []).append(span)
    lines: list[str] = []

    def walk(parent: str, depth: int) -> None:
        for span in by_parent.get(parent, []):
            took = (span.end_ns - span.start_ns) / 1e6
            shown = [
                f"{key.rsplit('.', 1)[-1]}={_short(span.attributes[key])}"
                for key in _SHOWN
                if key in span.attributes
            ]
            events = f"  events: {', '.join(span.events)}" if span.events else ""
            lines.append(f"{'  ' * depth}{span.name}  [{took:.0f} ms]  {' '.join(shown)}{events}".rstrip())
            walk(span.span_id, depth + 1)

    walk("", 0)
    return "\n".join(lines)


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.0f}"
    return str(value)
