"""Redis round trips per event: ``python -m benchmarks.round_trips``.

Starts a private ``redis-server``, drives ``user_speak`` events of a few calls through
``Assistant.serve`` with a :class:`RedisStore`, for a live call (the WebSocket's path) and a
webhook call, with the echo handler that counts turns in ``call.state``, and prints the commands
the store sent per event: each is one round trip (a Lua script is one command, however many
commands it runs inside Redis).
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import time
from typing import Any

import orjson
import redis.asyncio

from sipgate_ai_flow import Assistant, Call, UserSpeak
from sipgate_ai_flow.protocol.codec import parse_event
from sipgate_ai_flow.state import RedisStore

CALLS = 20
ROUNDS = 25


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class _Counted(redis.asyncio.Redis):
    """A client that counts the commands it sends (the store's own clients are made from it)."""

    sent = 0

    async def execute_command(self, *args: Any, **options: Any) -> Any:
        _Counted.sent += 1
        return await super().execute_command(*args, **options)


async def _measure(url: str) -> None:
    assistant = Assistant(store=RedisStore(client=_Counted.from_url(url)))

    @assistant.on_user_speak
    async def counting(event: UserSpeak, call: Call) -> str:
        call.state["turns"] = call.state.get("turns", 0) + 1
        return f"You said: {event.text}"

    async def reply(actions: list[Any]) -> None:
        return None

    async def send(actions: list[Any]) -> None:
        return None

    paths: dict[str, dict[str, Any]] = {"live (WebSocket)": {"send": send}, "webhook": {"reply": reply}}
    for name, outlet in paths.items():
        bodies = [
            orjson.dumps({"type": "user_speak", "session": {"id": f"{name}-{n}"}, "text": "hi"})
            for n in range(CALLS)
        ]
        for n in range(CALLS):
            start = {"type": "session_start", "session": {"id": f"{name}-{n}"}}
            await assistant.serve(parse_event(orjson.dumps(start)), **outlet)
        await asyncio.sleep(0.5)  # the subscription and the lease renewer are up
        before = _Counted.sent
        for _ in range(ROUNDS):
            for body in bodies:
                await assistant.serve(parse_event(body), **outlet)
        sent = _Counted.sent - before
        print(f"{name}: {sent / (ROUNDS * CALLS):.2f} Redis round trips per user_speak")
    await assistant.drain(1.0)


def main() -> None:
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server is not installed")
    port = _free_port()
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
    )
    try:
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.02)
        asyncio.run(_measure(f"redis://127.0.0.1:{port}/0"))
    finally:
        process.terminate()
        process.wait(timeout=10)


if __name__ == "__main__":
    main()
