"""``aiflow serve``: run an assistant under uvicorn.

uvicorn's reloader and its workers start fresh processes that must build the app on their
own, so the CLI hands the target and options over in the environment and uvicorn calls
:func:`app_factory` there.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any

from starlette.applications import Starlette

from sipgate_ai_flow.server.app import create_app
from sipgate_ai_flow.target import load_target

__all__ = ["ENV_OPTIONS", "ENV_TARGET", "app_factory", "check_redis", "serve_metrics", "uvicorn_ws_protocol"]

ENV_TARGET = "_AIFLOW_SERVE_TARGET"
ENV_OPTIONS = "_AIFLOW_SERVE_OPTIONS"


def app_factory() -> Starlette:
    """Build the app described by the environment (set by ``aiflow serve``)."""
    assistant = load_target(os.environ[ENV_TARGET])
    options: dict[str, Any] = json.loads(os.environ.get(ENV_OPTIONS, "{}"))
    redis_url = options.pop("redis_url", None)
    if redis_url:
        from sipgate_ai_flow.state.redis import RedisStore  # noqa: PLC0415 - optional extra

        assistant.store = RedisStore(redis_url)
    if options.pop("metrics_elsewhere", False):
        # The CLI's own process serves the metrics port from every worker's files; workers count.
        from sipgate_ai_flow.server.metrics import use_prometheus  # noqa: PLC0415

        use_prometheus(assistant)
        options["metrics_path"] = None
    return create_app(assistant, **options)


def serve_metrics(host: str, port: int) -> Callable[[], None]:
    """Serve ``/metrics`` on ``host:port`` from this process, summing what the workers write to
    ``PROMETHEUS_MULTIPROC_DIR`` (which must be set before they start); returns a stop function."""
    from prometheus_client import start_http_server  # noqa: PLC0415 - after the directory is set

    from sipgate_ai_flow.server.metrics import metrics_registry  # noqa: PLC0415

    server, thread = start_http_server(port, addr=host, registry=metrics_registry())

    def stop() -> None:
        server.shutdown()
        server.server_close()
        thread.join(5)

    return stop


def uvicorn_ws_protocol() -> Any:
    """The WebSocket protocol ``aiflow serve`` gives uvicorn: its sans-io one, made to answer
    upgrade requests it cannot parse (:func:`~sipgate_ai_flow.server.guard.guarded_ws`)."""
    from sipgate_ai_flow.server.guard import guarded_ws  # noqa: PLC0415 - only needed when serving

    return guarded_ws()


def check_redis(url: str) -> str | None:
    """Why ``url`` cannot serve as the state store (``None`` if Redis answers there)."""
    import asyncio  # noqa: PLC0415

    try:
        from sipgate_ai_flow.state.redis import RedisStore  # noqa: PLC0415 - optional extra

        store = RedisStore(url)
    except (ImportError, ValueError) as exc:
        return str(exc)

    async def ping() -> None:
        try:
            await store.redis.ping()
        finally:
            await store.close()

    try:
        asyncio.run(ping())
    except Exception as exc:
        return f"Redis does not answer at {url.rsplit('@', maxsplit=1)[-1]}: {exc}"
    return None
