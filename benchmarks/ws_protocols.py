"""What uvicorn's WebSocket protocols cost per message, under the SDK's echo assistant.

    python -m benchmarks.ws_protocols --rounds 15  # 20 connections x 1,000 round trips per round
    python -m benchmarks.ws_protocols --smoke     # tiny numbers

Server and client run in one process on uvloop, the client being the same for every protocol, so
the differences between the figures (process CPU per round trip) are the server protocols' own.
Measured: uvicorn's ``websockets-sansio`` (what the Python peers in ``benchmarks.run`` use), the
same behind the header guard as ``aiflow serve`` runs it (``guarded_http()``, ``guarded_ws()``:
the protocol writes through the guard's transport) and, where installed, ``wsproto``.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import socket
import statistics
import time
from typing import Annotated, Any

import typer
import uvicorn
import uvloop
from websockets.asyncio.client import connect

from benchmarks.servers.aiflow_echo import assistant
from sipgate_ai_flow.server import create_app
from sipgate_ai_flow.server.guard import guarded_http, guarded_ws

TOKEN = "bench-token"
cli = typer.Typer(add_completion=False)


def protocols() -> dict[str, tuple[Any, Any]]:
    """The ``http`` and ``ws`` settings measured, by name."""
    chosen: dict[str, tuple[Any, Any]] = {
        "websockets-sansio": ("auto", "websockets-sansio"),
        "aiflow (guarded_ws)": (guarded_http(), guarded_ws()),
    }
    if importlib.util.find_spec("wsproto") is not None:
        chosen["wsproto"] = ("auto", "wsproto")
    return chosen


def _session(n: int) -> dict[str, str]:
    return {
        "id": f"bench-ws-{n}",
        "account_id": "bench-account",
        "phone_number": "4921100000",
        "direction": "inbound",
        "from_phone_number": "4915700000000",
        "to_phone_number": "4921100000",
    }


async def _call(port: int, n: int, round_trips: int) -> None:
    text = "This is round 1 of call 1, please say it back."
    speak = {"type": "user_speak", "text": text, "session": _session(n)}
    async with connect(f"ws://127.0.0.1:{port}/ws?token={TOKEN}", compression=None) as ws:
        await ws.send(json.dumps({"type": "session_start", "session": _session(n)}))
        await ws.recv()
        message = json.dumps(speak)
        for _ in range(round_trips):
            await ws.send(message)
            reply = json.loads(await ws.recv())
            if reply["text"] != f"You said: {text}":
                raise RuntimeError(f"wrong answer: {reply}")


async def measure(http: Any, ws: Any, connections: int, round_trips: int) -> float:
    """Process CPU in µs per round trip with ``http`` and ``ws`` as uvicorn's protocols."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    app = create_app(assistant, token=TOKEN, metrics_path=None)
    config = uvicorn.Config(app, port=port, log_level="warning", lifespan="off", http=http, ws=ws)
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve())
    while not server.started:  # noqa: ASYNC110 - uvicorn offers nothing to wait on
        await asyncio.sleep(0.01)
    try:
        warm_up = max(1, round_trips // 10)
        await asyncio.gather(*(_call(port, n, warm_up) for n in range(connections)))
        start = time.process_time()
        await asyncio.gather(*(_call(port, n, round_trips) for n in range(connections)))
        return (time.process_time() - start) / (connections * round_trips) * 1e6
    finally:
        server.should_exit = True
        await serving


@cli.command()
def main(
    rounds: Annotated[int, typer.Option(min=1, help="Measurements per protocol (best and median).")] = 5,
    connections: Annotated[int, typer.Option(min=1)] = 20,
    round_trips: Annotated[int, typer.Option(min=1, help="Per connection and round.")] = 1000,
    smoke: Annotated[bool, typer.Option(help="Tiny numbers: checks that it works.")] = False,
) -> None:
    """Print the process CPU per WebSocket round trip for each protocol."""
    if smoke:
        rounds, connections, round_trips = 1, 2, 10
    chosen = protocols()
    figures: dict[str, list[float]] = {name: [] for name in chosen}
    for _ in range(rounds):  # interleaved, so that a noisy moment hits every protocol alike
        for name, (http, ws) in chosen.items():
            figures[name].append(uvloop.run(measure(http, ws, connections, round_trips)))
    for name, values in figures.items():
        low, middle = min(values), statistics.median(values)
        print(f"{name:22} {low:7.1f} µs per round trip at best, {middle:7.1f} median of {len(values)}")


if __name__ == "__main__":
    cli()
