"""Instructions a whole server spends per WebSocket event, counted by callgrind, against a peer.

    python -m benchmarks.server_instructions aiflow fastapi --calls 40 --more 200

Each server runs under ``valgrind --tool=callgrind`` twice: once for ``--calls`` calls and once
for ``--calls + --more``; the difference of the two totals over the extra events is what one event
costs, start-up and shutdown cancelled out. Every call is the load generator's script (a
``session_start``, 10 x ``user_speak`` + ``assistant_speech_ended``, a ``dtmf_received``, a
``session_end``) on a connection of its own, ``--concurrency`` calls at a time, every answer
checked. Instruction counts do not move with what else the machine does, unlike seconds; they do
not count the kernel's work (the same frames for every server) nor cache misses.
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

import typer
from websockets.asyncio.client import connect

from benchmarks.run import ROOT, TOKEN, Server, _python_servers, console, free_port

GREETING = "Hello! Say something."
ROUNDS = 10
EVENTS_PER_CALL = 2 + 2 * ROUNDS + 1

cli = typer.Typer(add_completion=False)


def _script(call: int) -> list[tuple[str, str | None]]:
    session = {"id": f"ins-{call}", "account_id": "a", "phone_number": "+4921100000"}
    steps: list[tuple[dict[str, Any], str | None]] = [
        ({"type": "session_start", "session": session}, GREETING)
    ]
    for n in range(ROUNDS):
        text = f"This is round {n} of call {call}, please say it back."
        steps.append(({"type": "user_speak", "text": text, "session": session}, f"You said: {text}"))
        steps.append(({"type": "assistant_speech_ended", "session": session}, None))
    steps.append(({"type": "dtmf_received", "digit": "7", "session": session}, "You pressed 7"))
    steps.append(({"type": "session_end", "session": session}, None))
    return [(json.dumps(event), want) for event, want in steps]


async def _call(url: str, call: int) -> None:
    async with connect(url, additional_headers={"X-API-TOKEN": TOKEN}) as ws:
        for body, want in _script(call):
            await ws.send(body)
            if want is None:
                continue
            reply = json.loads(await asyncio.wait_for(ws.recv(), 60))
            action = reply[0] if isinstance(reply, list) else reply
            if action.get("text") != want:
                raise RuntimeError(f"call {call}: expected {want!r}, got {reply!r}")


async def load(port: int, calls: int, concurrency: int) -> None:
    """``calls`` calls, ``concurrency`` at a time; raises on the first wrong answer."""
    url = f"ws://127.0.0.1:{port}/ws"
    numbers = iter(range(calls))

    async def worker() -> None:
        for call in numbers:
            await _call(url, call)

    await asyncio.gather(*(worker() for _ in range(concurrency)))


def _wait_for_port(port: int, process: subprocess.Popen[bytes]) -> None:
    import socket  # noqa: PLC0415
    import time  # noqa: PLC0415

    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.5)
    raise RuntimeError("the server did not listen within 10 minutes")


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


def instructions(name: str, calls: int, concurrency: int) -> int:
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
            _wait_for_port(port, process)
            asyncio.run(load(port, calls, concurrency))
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
) -> None:
    """Instructions per WebSocket event of each server; the first is compared with the others."""
    per_event: dict[str, float] = {}
    for name in names:
        base = instructions(name, calls, concurrency)
        bigger = instructions(name, calls + more, concurrency)
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
