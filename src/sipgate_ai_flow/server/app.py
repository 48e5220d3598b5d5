"""Building the ASGI app, and mounting it into an existing Starlette or FastAPI app."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route, WebSocketRoute

from sipgate_ai_flow.assistant.assistant import Assistant
from sipgate_ai_flow.assistant.observer import Observer
from sipgate_ai_flow.server.redact import install_token_redaction
from sipgate_ai_flow.server.settings import DEFAULT_MAX_MESSAGE_SIZE, Endpoint, logger
from sipgate_ai_flow.server.webhook import webhook_endpoint
from sipgate_ai_flow.server.websocket import websocket_endpoint

__all__ = ["create_app", "mount"]

_UNSET = object()


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
    shutdown_grace: float = 10.0,
) -> Starlette:
    """An ASGI app serving ``assistant``: ``POST webhook_path``, WebSocket ``websocket_path``,
    ``GET health_path`` and Prometheus metrics at ``GET metrics_path`` (``None``: no metrics).

    ``token`` overrides ``assistant.token`` (pass ``None`` to switch the check off). At shutdown
    the app lets running handlers finish for up to ``shutdown_grace`` seconds (their answers go
    to the store for whichever worker gets the call's next event) and closes the store.
    """
    secret = assistant.token if token is _UNSET else token
    if secret is not None and not isinstance(secret, str):
        raise TypeError("token must be a str or None")
    if max_message_size <= 0:
        raise ValueError("max_message_size must be positive")
    if not secret:
        logger.warning(
            "NO TOKEN CONFIGURED: anyone who can reach this server can drive the assistant. "
            "Set Assistant(token=...), --token or AIFLOW_TOKEN to the flow's shared secret."
        )
    install_token_redaction()
    endpoint = Endpoint(assistant, secret or None, max_message_size)
    routes = [
        Route(webhook_path, webhook_endpoint(endpoint), methods=["POST"]),
        WebSocketRoute(websocket_path, websocket_endpoint(endpoint)),
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

    return Starlette(routes=routes, lifespan=lifespan)


def mount(app: Starlette, assistant: Assistant, path: str = "/aiflow", **options: Any) -> Starlette:
    """Mount ``assistant`` into an existing Starlette or FastAPI ``app`` under ``path``.

    With the default ``path`` the webhook is ``/aiflow/webhook`` and the WebSocket ``/aiflow/ws``.
    ``options`` go to :func:`create_app`. Returns the mounted sub-app. A mounted app's lifespan
    does not run: call ``await assistant.drain()`` from the outer app's shutdown.
    """
    sub = create_app(assistant, **options)
    app.mount(path, sub)
    return sub
