"""Instructions a whole server spends per event, counted by callgrind, against its peers.

    python -m benchmarks.server_instructions aiflow fastapi --calls 20 --more 100
    python -m benchmarks.server_instructions aiflow starlette fastapi --transport http

Each server runs under ``valgrind --tool=callgrind`` twice: once for ``--calls`` calls and once
for ``--calls + --more``; the difference of the two totals over the extra events is what one event
costs, start-up and shutdown cancelled out. Every call is the load generator's script (a
``session_start``, 10 x ``user_speak`` + ``assistant_speech_ended``, a ``dtmf_received``, a
``session_end``), on a WebSocket connection of its own or as webhook requests over keep-alive
connections, ``--concurrency`` calls at a time, every answer checked. Instruction counts do not
move with what else the machine does, unlike seconds; they do not count the kernel's work (the
same frames for every server) nor cache misses.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import httpx
import typer
from websockets.asyncio.client import connect

from benchmarks.run import ROOT, TOKEN, Server, _python_servers, console, free_port, wait_for_port
from benchmarks.servers.behaviour import call_script

EVENTS_PER_CALL = len(call_script(0))

cli = typer.Typer(add_completion=False)


def _script(call: int) -> list[tuple[str, str | None]]:
    return [(json.dumps(event), want) for event, want in call_script(call, "ins")]


def _check(call: int, want: str, reply: Any) -> None:
    action = reply[0] if isinstance(reply, list) and reply else reply
    if not isinstance(action, dict) or action.get("text") != want:
        raise RuntimeError(f"call {call}: expected {want!r}, got {reply!r}")


async def _ws_call(port: int, call: int) -> None:
    url = f"ws://127.0.0.1:{port}/ws"
    async with connect(url, additional_headers={"X-API-TOKEN": TOKEN}) as ws:
        for body, want in _script(call):
            await ws.send(body)
            if want is not None:
                _check(call, want, json.loads(await asyncio.wait_for(ws.recv(), 60)))


async def _http_call(client: httpx.AsyncClient, port: int, call: int) -> None:
    url = f"http://127.0.0.1:{port}/webhook"
    headers = {"X-API-TOKEN": TOKEN, "content-type": "application/json"}
    for body, want in _script(call):
        response = await client.post(url, content=body, headers=headers)
        if want is None:
            if response.status_code != 204:
                raise RuntimeError(f"call {call}: expected 204, got {response.status_code}")
        else:
            _check(call, want, response.json())


async def load(port: int, calls: int, concurrency: int, transport: str = "ws") -> None:
    """``calls`` calls, ``concurrency`` at a time, over ``transport`` (``ws``: a connection per
    call, as the service opens them; ``http``: keep-alive connections, one per concurrent call);
    raises on the first wrong answer."""
    numbers = iter(range(calls))
    async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=concurrency)) as client:

        async def worker() -> None:
            for call in numbers:
                await (_ws_call(port, call) if transport == "ws" else _http_call(client, port, call))

        await asyncio.gather(*(worker() for _ in range(concurrency)))


def plain_app() -> Any:
    """The SDK's echo app under plain uvicorn (no header guard): ``aiflow-plain``."""
    from benchmarks.servers.aiflow_echo import assistant  # noqa: PLC0415
    from sipgate_ai_flow.server import create_app  # noqa: PLC0415

    return create_app(assistant, metrics_path=None if os.environ.get("BENCH_NO_METRICS") else "/metrics")


def servers(port: int) -> list[Server]:
    """benchmarks.run's, and the SDK's app without `aiflow serve`'s header guard, with and without
    metrics, to tell their costs apart."""
    known = _python_servers(port)
    uvicorn = known[1].command[: known[1].command.index("benchmarks.servers.fastapi_peer:app")]
    plain = [*uvicorn, "--factory", "benchmarks.server_instructions:plain_app"]
    return [
        *known,
        Server("aiflow-plain", "the SDK's app, plain uvicorn", plain),
        Server("aiflow-bare", "the same without metrics", plain, {"BENCH_NO_METRICS": "1"}),
    ]


def instructions(name: str, calls: int, concurrency: int, transport: str = "ws") -> int:
    """Total instructions of server ``name`` serving ``calls`` calls."""
    port = free_port()
    [server] = [s for s in servers(port) if s.name == name]
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        raise SystemExit("valgrind not found (Debian's valgrind)")
    with tempfile.TemporaryDirectory() as tmp:
        env = {
            **os.environ,
            "BENCH_TOKEN": TOKEN,
            **server.env,
            "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        }
        # uvicorn may run the app in a child process: every process is counted.
        command = [valgrind, "--tool=callgrind", "--trace-children=yes", f"--callgrind-out-file={tmp}/cg.%p"]
        command += server.command
        process = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        try:
            wait_for_port(port, process, timeout=600)  # valgrind starts slowly
            asyncio.run(load(port, calls, concurrency, transport))
        finally:
            process.send_signal(signal.SIGINT)
            process.wait(600)
        total = 0
        for out in Path(tmp).glob("cg.*"):
            found = re.search(r"^(?:summary|totals):\s+(\d+)", out.read_text(errors="replace"), re.MULTILINE)
            if found is None:
                raise RuntimeError(f"no total in callgrind's {out.name}")
            total += int(found.group(1))
    return total


@cli.command()
def main(
    names: list[str] = typer.Argument(..., help="servers: aiflow, fastapi, starlette, asgi"),  # noqa: B008
    calls: int = typer.Option(40, help="calls in the base run"),
    more: int = typer.Option(200, help="extra calls in the second run"),
    concurrency: int = typer.Option(20, help="calls at a time"),
    transport: str = typer.Option("ws", help="ws or http"),
) -> None:
    """Instructions per event of each server; the first is compared with the others."""
    if transport not in ("ws", "http"):
        raise typer.BadParameter("ws or http", param_hint="--transport")
    per_event: dict[str, float] = {}
    for name in names:
        base = instructions(name, calls, concurrency, transport)
        bigger = instructions(name, calls + more, concurrency, transport)
        per_event[name] = (bigger - base) / (more * EVENTS_PER_CALL)
        console.print(
            f"{name}: {per_event[name] / 1000:,.1f}k instructions per event ({base:,} / {bigger:,})"
        )
    first = names[0]
    for name in names[1:]:
        console.print(f"{first} / {name}: {per_event[first] / per_event[name]:.2f}x the instructions")
    sys.stdout.flush()


if __name__ == "__main__":
    cli()
