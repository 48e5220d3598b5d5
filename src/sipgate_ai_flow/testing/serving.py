"""Running an ASGI app under uvicorn inside the current event loop, for the test kit's servers."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from typing import Any

__all__ = ["serving"]


@asynccontextmanager
async def serving(
    app: Any, sock: socket.socket, *, what: str = "the server", **config: Any
) -> AsyncIterator[asyncio.Task[None]]:
    """Serve ``app`` on the bound ``sock`` until the block ends; yields the server's task.

    ``config`` goes to ``uvicorn.Config`` (``log_level`` defaults to ``"warning"``). The socket is
    closed afterwards; a server that fails to start raises what stopped it.
    """
    import uvicorn  # noqa: PLC0415 - only needed when serving

    config.setdefault("log_level", "warning")
    server = uvicorn.Server(uvicorn.Config(app, **config))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            if task.done():
                task.result()  # raises what stopped it
                raise RuntimeError(f"{what} stopped before it started")
            await asyncio.sleep(0.01)
        yield task
    finally:
        server.should_exit = True
        with suppress(asyncio.CancelledError):
            await task
        sock.close()
