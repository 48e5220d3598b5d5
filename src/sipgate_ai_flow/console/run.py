"""Serving the console (and, for ``--http`` / ``--ws``, the assistant itself) under uvicorn."""

from __future__ import annotations

import asyncio
import secrets
import socket
import webbrowser
from collections.abc import Callable
from contextlib import AsyncExitStack
from typing import TYPE_CHECKING, Literal

from sipgate_ai_flow.console.app import LOCAL_HOSTS, create_console_app
from sipgate_ai_flow.testing.serving import serving
from sipgate_ai_flow.testing.transports import describe_target

if TYPE_CHECKING:
    from sipgate_ai_flow.assistant.assistant import Assistant

__all__ = ["Via", "run_console"]

Via = Literal["in-process", "http", "ws"]


async def run_console(
    target: Assistant | str,
    *,
    via: Via = "in-process",
    host: str = "127.0.0.1",
    port: int = 8765,
    open_browser: bool = True,
    token: str | None = None,
    deadline: float = 1.0,
    words_per_minute: float = 160.0,
    ws_protocol: str = "auto",
    say: Callable[[str], None] = print,
    name: str | None = None,
) -> None:
    """Serve the console for ``target`` (an :class:`Assistant` or a URL) on ``host:port`` until
    interrupted.

    With an :class:`Assistant` and ``via`` ``"http"`` or ``"ws"``, the assistant is first served on a
    free port of 127.0.0.1 (with ``token``, if given, as its secret) and the console calls it there,
    over that transport, as the service would. ``say`` prints the console's address and the
    errors worth a line in the terminal; ``name`` is the target as the user gave it.
    """
    from sipgate_ai_flow.assistant.assistant import Assistant  # noqa: PLC0415
    from sipgate_ai_flow.server.app import create_app  # noqa: PLC0415

    sock = _bind(host, port)  # first: a port in use fails before anything starts
    assistant = target if isinstance(target, Assistant) else None
    async with AsyncExitStack() as stack:
        called: Assistant | str = target
        if assistant is not None and via != "in-process":
            # Without a secret of its own the served assistant gets a random one: nothing else
            # on this machine can drive it, and it does not warn about an open endpoint.
            token = token or assistant.token or secrets.token_urlsafe(16)
            inner = _bind("127.0.0.1", 0)
            await stack.enter_async_context(
                serving(create_app(assistant, token=token), inner, ws=ws_protocol)
            )
            address = f"127.0.0.1:{inner.getsockname()[1]}"
            called = f"http://{address}/webhook" if via == "http" else f"ws://{address}/ws"
        wildcard = host in ("0.0.0.0", "::")
        app = create_console_app(
            called,
            assistant=assistant,
            token=token or (assistant.token if assistant is not None else None),
            deadline=deadline,
            words_per_minute=words_per_minute,
            notify=say,
            allowed_hosts=("*",) if wildcard else (*LOCAL_HOSTS, host),
            name=name,
        )
        url = f"http://{'127.0.0.1' if wildcard else host}:{sock.getsockname()[1]}/"
        async with serving(app, sock, what="the console", ws=ws_protocol) as server:
            through = f" at {describe_target(called)}" if isinstance(called, str) else " in this process"
            say(f"aiflow console on {url} (Ctrl-C stops it), calling the assistant{through}")
            if open_browser:
                await asyncio.to_thread(webbrowser.open, url)
            await server


def _bind(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    return sock
