"""Building the ASGI app, and mounting it into an existing Starlette or FastAPI app."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from functools import partial
from typing import TYPE_CHECKING, Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route, WebSocketRoute
from starlette.types import Lifespan, Receive, Scope, Send

from sipgate_ai_flow.assistant.assistant import Assistant
from sipgate_ai_flow.server.redact import install_log_filters
from sipgate_ai_flow.server.settings import (
    DEFAULT_BODY_TIMEOUT,
    DEFAULT_MAX_CALLS_PER_CONNECTION,
    DEFAULT_MAX_CONNECTIONS,
    DEFAULT_MAX_MESSAGE_SIZE,
    Endpoint,
    logger,
)
from sipgate_ai_flow.server.webhook import Webhook
from sipgate_ai_flow.server.websocket import WebSocketEndpoint

if TYPE_CHECKING:
    from sipgate_ai_flow.server.metrics import PrometheusObserver

__all__ = ["AiFlowApp", "create_app", "mount"]

_UNSET = object()


class AiFlowApp(Starlette):
    """The Starlette app :func:`create_app` builds.

    Webhook events and WebSocket connections go straight to their endpoints, past Starlette's
    router and exception middleware (the endpoints handle their own errors); everything else,
    and everything once the user added middleware, takes Starlette's usual way.
    """

    def __init__(
        self,
        routes: list[BaseRoute],
        lifespan: Lifespan[Starlette],
        webhook: tuple[str, Webhook],
        websocket: tuple[str, WebSocketEndpoint],
    ) -> None:
        super().__init__(routes=routes, lifespan=lifespan)
        self._webhook = webhook
        self._websocket = websocket

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if not self.user_middleware and kind != "lifespan":
            path = _route_path(scope)
            if kind == "http" and path == self._webhook[0] and scope["method"] == "POST":
                await self._webhook[1](scope, receive, send)
                return
            if kind == "websocket" and path == self._websocket[0]:
                scope["app"] = self
                await self._websocket[1](scope, receive, send)
                return
        await super().__call__(scope, receive, send)


def _route_path(scope: Scope) -> str:
    # The path below the mount point, as Starlette's router sees it.
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    if root and path.startswith(root) and path[len(root) : len(root) + 1] in ("/", ""):
        return path[len(root) :]
    return path


async def _health(_: Request) -> JSONResponse:
    return JSONResponse({"status": "ok"})


def create_app(
    assistant: Assistant,
    *,
    token: str | object | None = _UNSET,
    webhook_path: str = "/webhook",
    websocket_path: str = "/ws",
    health_path: str = "/health",
    metrics_path: str | None = "/metrics",
    metrics_token: bool = False,
    metrics_port: int | None = None,
    metrics_host: str = "127.0.0.1",
    otel: bool | None = None,
    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
    max_connections: int = DEFAULT_MAX_CONNECTIONS,
    max_calls_per_connection: int = DEFAULT_MAX_CALLS_PER_CONNECTION,
    body_timeout: float = DEFAULT_BODY_TIMEOUT,
    shutdown_grace: float = 10.0,
) -> AiFlowApp:
    """An ASGI app serving ``assistant``: ``POST webhook_path``, WebSocket ``websocket_path``,
    ``GET health_path`` and Prometheus metrics at ``GET metrics_path`` (``None``: no metrics).

    ``metrics_token``: a scrape of ``metrics_path`` must carry the shared secret (as
    ``Authorization: Bearer <token>`` or ``X-API-TOKEN``). ``metrics_port``: serve the metrics on
    ``metrics_host:metrics_port`` instead, from this process while the app runs (a single process;
    ``aiflow serve --metrics-port`` serves several workers' from the parent process).
    ``otel``: trace calls with OpenTelemetry (:func:`sipgate_ai_flow.otel.instrument`); by default
    on when the standard ``OTEL_*`` variables ask for traces.

    ``token`` overrides ``assistant.token`` (pass ``None`` to switch the check off). Limits:
    a webhook body or WebSocket frame over ``max_message_size`` bytes gets 413 or is dropped; a
    WebSocket connection past ``max_connections`` open ones is refused (503 / close 1013); an
    event that would open call ``max_calls_per_connection + 1`` on one connection is dropped; a
    webhook body not complete ``body_timeout`` seconds after its headers gets 408. At shutdown
    the app lets running handlers finish for up to ``shutdown_grace`` seconds (their answers go
    to the store for whichever worker gets the call's next event) and closes the store.
    """
    secret = assistant.token if token is _UNSET else token
    if secret is not None and not isinstance(secret, str):
        raise TypeError("token must be a str or None")
    for name, value in (
        ("max_message_size", max_message_size),
        ("max_connections", max_connections),
        ("max_calls_per_connection", max_calls_per_connection),
        ("body_timeout", body_timeout),
    ):
        if value <= 0:
            raise ValueError(f"{name} must be positive, not {value}")
    if not secret:
        logger.warning(
            "NO TOKEN CONFIGURED: anyone who can reach this server can drive the assistant. "
            "Set Assistant(token=...), --token or AIFLOW_TOKEN to the flow's shared secret."
        )
    install_log_filters()
    endpoint = Endpoint(
        assistant, secret or None, max_message_size, max_connections, max_calls_per_connection, body_timeout
    )
    webhook, websocket = Webhook(endpoint), WebSocketEndpoint(endpoint)
    routes: list[BaseRoute] = [
        Route(webhook_path, webhook, methods=["POST"]),
        WebSocketRoute(websocket_path, websocket),
        Route(health_path, _health, methods=["GET"]),
    ]
    if metrics_token and not secret:
        raise ValueError("metrics_token=True needs a token (the shared secret) to check scrapes against")
    if otel or (otel is None and _otel_by_env()):
        from sipgate_ai_flow.otel import instrument  # noqa: PLC0415 - the [otel] extra, only when used

        instrument(assistant)
    metrics = None
    if metrics_path is not None or metrics_port is not None:
        from sipgate_ai_flow.server.metrics import use_prometheus  # noqa: PLC0415

        metrics = use_prometheus(assistant)
    serve_metrics: Callable[[], Callable[[], None]] | None = None
    if metrics is not None and metrics_port is not None:
        serve_metrics = partial(_serve_metrics, metrics, metrics_host, metrics_port)
    elif metrics is not None and metrics_path is not None:
        from sipgate_ai_flow.server.metrics import metrics_endpoint  # noqa: PLC0415

        scrape = metrics_endpoint(metrics, token=secret if metrics_token else None)
        routes.append(Route(metrics_path, scrape, methods=["GET"]))

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        stop = serve_metrics() if serve_metrics is not None else None
        try:
            yield
            await assistant.drain(shutdown_grace)
        finally:
            if stop is not None:
                stop()

    return AiFlowApp(routes, lifespan, (webhook_path, webhook), (websocket_path, websocket))


def _otel_by_env() -> bool:
    from sipgate_ai_flow.otel import configured_by_env  # noqa: PLC0415 - imports no OpenTelemetry

    return configured_by_env()


def _serve_metrics(observer: PrometheusObserver, host: str, port: int) -> Callable[[], None]:
    # prometheus_client's own small server, in a thread: the scrape never waits on the event loop.
    from prometheus_client import start_http_server  # noqa: PLC0415

    from sipgate_ai_flow.server.metrics import metrics_registry  # noqa: PLC0415

    server, thread = start_http_server(port, addr=host, registry=metrics_registry(observer))
    logger.info("metrics on http://%s:%d/metrics", host, port)

    def stop() -> None:
        server.shutdown()
        server.server_close()
        thread.join(5)

    return stop


def mount(app: Starlette, assistant: Assistant, path: str = "/aiflow", **options: Any) -> Starlette:
    """Mount ``assistant`` into an existing Starlette or FastAPI ``app`` under ``path``.

    With the default ``path`` the webhook is ``/aiflow/webhook`` and the WebSocket ``/aiflow/ws``.
    ``options`` go to :func:`create_app`. Returns the mounted sub-app. A mounted app's lifespan
    does not run: call ``await assistant.drain()`` from the outer app's shutdown.
    """
    sub = create_app(assistant, **options)
    app.mount(path, sub)
    return sub
