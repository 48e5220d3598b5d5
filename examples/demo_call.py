"""Serve examples/support_bot.py with `aiflow serve`, then call it with `aiflow call`.

The call goes over the real WebSocket (``--http`` for the webhook) through the AI Flow emulator.
In a terminal you are the caller: type to speak, /help for commands. Without a terminal (CI, a
pipe) the caller's lines come from examples/demo_call.txt and the transcript is printed.
Run it with `make demo` (or `python examples/demo_call.py` inside the project's virtualenv).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "examples" / "demo_call.txt"
TOKEN = "demo-secret"


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


def main(argv: list[str]) -> int:
    """Start the server, place one call, stop the server; exit 0 when the call had no violations."""
    aiflow = str(Path(sys.executable).parent / "aiflow")
    port = free_port()
    base = f"127.0.0.1:{port}"
    env = {**os.environ, "AIFLOW_TOKEN": TOKEN}
    server = subprocess.Popen(
        [aiflow, "serve", "examples/support_bot.py:assistant", "--port", str(port), "--log-level", "warning"],
        cwd=ROOT,
        env=env,
    )
    target = f"http://{base}/webhook" if "--http" in argv else f"ws://{base}/ws"
    command = [aiflow, "call", target]
    if not sys.stdin.isatty():
        command += ["--script", str(SCRIPT)]
    try:
        wait_for_health(base, server)
        print(f"Calling the support bot at {target}", flush=True)
        return subprocess.run(command, cwd=ROOT, env=env, check=False).returncode
    finally:
        server.terminate()
        server.wait(15)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
