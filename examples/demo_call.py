"""Serve examples/support_bot.py with `aiflow serve` and place two scripted calls to it.

One call goes over the HTTP webhook, one over the WebSocket, playing the AI Flow service's part.
Run it with `make demo` (or `python examples/demo_call.py` inside the project's virtualenv).
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from websockets.asyncio.client import connect

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "demo-secret"
console = Console()

SCRIPT: list[dict[str, Any]] = [
    {"type": "session_start"},
    {"type": "user_speak", "text": "Hi, what can you do?"},
    {"type": "dtmf_received", "digit": "2"},
    {"type": "sms_failed", "recipient": "4915100000", "reason": "insufficient_balance"},
    {"type": "user_input_timeout"},
    {"type": "user_speak", "text": "Goodbye", "barged_in": True},
    {"type": "session_end"},
]


def events(session_id: str) -> list[dict[str, Any]]:
    session = {
        "id": session_id,
        "account_id": "demo",
        "phone_number": "4921100000",
        "direction": "inbound",
        "from_phone_number": "4915100000",
        "to_phone_number": "4921100000",
    }
    return [{**step, "session": session} for step in SCRIPT]


def show(event: dict[str, Any], actions: list[dict[str, Any]]) -> None:
    said = f' "{event["text"]}"' if "text" in event else f" {event['digit']}" if "digit" in event else ""
    console.print(f"[cyan]caller/service[/] {event['type']}{said}")
    for action in actions:
        detail = action.get("text") or action.get("target_phone_number") or action.get("message") or ""
        console.print(f"  [green]assistant[/] {action['type']} {detail}")


def as_list(body: Any) -> list[dict[str, Any]]:
    return body if isinstance(body, list) else [body]


async def call_over_http(base: str) -> int:
    console.rule("call over the HTTP webhook")
    answered = 0
    async with httpx.AsyncClient(base_url=f"http://{base}", headers={"X-API-TOKEN": TOKEN}) as client:
        for event in events(str(uuid.uuid4())):
            response = await client.post("/webhook", json=event)
            response.raise_for_status()
            actions = as_list(response.json()) if response.status_code == 200 else []
            answered += bool(actions)
            show(event, actions)
    return answered


async def call_over_websocket(base: str) -> int:
    console.rule("call over the WebSocket")
    answered = 0
    async with connect(f"ws://{base}/ws", additional_headers={"X-API-TOKEN": TOKEN}) as ws:
        for event in events(str(uuid.uuid4())):
            await ws.send(json.dumps(event))
            actions: list[dict[str, Any]] = []
            if event["type"] != "session_end":
                actions = as_list(json.loads(await asyncio.wait_for(ws.recv(), 5)))
            answered += bool(actions)
            show(event, actions)
    return answered


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_health(base: str, server: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and server.poll() is None:
        try:
            if httpx.get(f"http://{base}/health").status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.1)
    raise SystemExit("aiflow serve did not come up")


def main() -> int:
    """Start the server, place both calls, stop the server; exit 0 when every turn was answered."""
    port = free_port()
    base = f"127.0.0.1:{port}"
    aiflow = Path(sys.executable).parent / "aiflow"
    server = subprocess.Popen(
        [
            str(aiflow),
            "serve",
            "examples/support_bot.py:assistant",
            "--port",
            str(port),
            "--log-level",
            "warning",
        ],
        cwd=ROOT,
        env={**os.environ, "AIFLOW_TOKEN": TOKEN},
    )
    try:
        wait_for_health(base, server)
        answered = asyncio.run(call_over_http(base)) + asyncio.run(call_over_websocket(base))
    finally:
        server.terminate()
        server.wait(15)
    expected = 2 * (len(SCRIPT) - 1)  # every event but session_end gets an answer
    console.rule(f"{answered} of {expected} turns answered")
    return 0 if answered == expected else 1


if __name__ == "__main__":
    sys.exit(main())
