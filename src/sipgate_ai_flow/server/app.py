"""Building the ASGI app, and mounting it into an existing Starlette or FastAPI app."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route, WebSocketRoute
from starlette.types import Lifespan, Receive, Scope, Send

from sipgate_ai_flow.assistant.assistant import Assistant
from sipgate_ai_flow.assistant.observer import Observer
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
    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
    max_connections: int = DEFAULT_MAX_CONNECTIONS,
    max_calls_per_connection: int = DEFAULT_MAX_CALLS_PER_CONNECTION,
    body_timeout: float = DEFAULT_BODY_TIMEOUT,
    shutdown_grace: float = 10.0,
) -> AiFlowApp:
    """An ASGI app serving ``assistant``: ``POST webhook_path``, WebSocket ``websocket_path``,
    ``GET health_path`` and Prometheus metrics at ``GET metrics_path`` (``None``: no metrics).

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
    if metrics_path is not None:
        from sipgate_ai_flow.server.metrics import PrometheusObserver, metrics_endpoint  # noqa: PLC0415

        observer = assistant.observer
        if type(observer) is Observer:  # the no-op default; a user's own observer stays
            observer = assistant.observer = PrometheusObserver()
        if isinstance(observer, PrometheusObserver):
            routes.append(Route(metrics_path, metrics_endpoint(observer), methods=["GET"]))

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        yield
        await assistant.drain(shutdown_grace)

    return AiFlowApp(routes, lifespan, (webhook_path, webhook), (websocket_path, websocket))


def mount(app: Starlette, assistant: Assistant, path: str = "/aiflow", **options: Any) -> Starlette:
    """Mount ``assistant`` into an existing Starlette or FastAPI ``app`` under ``path``.

    With the default ``path`` the webhook is ``/aiflow/webhook`` and the WebSocket ``/aiflow/ws``.
    ``options`` go to :func:`create_app`. Returns the mounted sub-app. A mounted app's lifespan
    does not run: call ``await assistant.drain()`` from the outer app's shutdown.
    """
    sub = create_app(assistant, **options)
    app.mount(path, sub)
    return sub
