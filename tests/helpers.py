"""Shared helpers: event builders, WAV bytes, and a real uvicorn server on 127.0.0.1."""

from __future__ import annotations

import base64
import io
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import wave
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import uvicorn

from sipgate_ai_flow.cli.serve import uvicorn_ws_protocol

SESSION: dict[str, Any] = {
    "id": "11111111-2222-3333-4444-555555555555",
    "account_id": "account-123",
    "phone_number": "4921100000",
    "direction": "inbound",
    "from_phone_number": "4915100000",
    "to_phone_number": "4921100000",
}


def session(session_id: str = SESSION["id"], **fields: Any) -> dict[str, Any]:
    """A session object with ``session_id``."""
    return {**SESSION, "id": session_id, **fields}


def event(kind: str, session_id: str = SESSION["id"], **fields: Any) -> dict[str, Any]:
    """An event document of type ``kind``."""
    defaults: dict[str, dict[str, Any]] = {
        "user_speak": {"text": "hello"},
        "dtmf_received": {"digit": "1"},
        "assistant_speak": {"text": "Hi", "duration_ms": 900, "speech_started_at": 1_734_000_000_000},
        "sms_failed": {"recipient": "4915100000", "reason": "unknown"},
    }
    return {"type": kind, "session": session(session_id), **defaults.get(kind, {}), **fields}


def wav_bytes(rate: int = 16_000, channels: int = 1, width: int = 2, frames: int = 1600) -> bytes:
    """A silent WAV file with the given format."""
    buf = io.BytesIO()
    with wave.open(buf, "wb") as wav:
        wav.setnchannels(channels)
        wav.setsampwidth(width)
        wav.setframerate(rate)
        wav.writeframes(b"\x00" * frames * channels * width)
    return buf.getvalue()


def wav_b64(**kwargs: int) -> str:
    """``wav_bytes`` as base64 text."""
    return base64.b64encode(wav_bytes(**kwargs)).decode()


@contextmanager
def running_server(app: Any, **options: Any) -> Iterator[str]:
    """Run ``app`` under a real uvicorn on 127.0.0.1 in a thread; yield ``host:port``.

    ``options`` go to ``uvicorn.Config``."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    settings = {"log_level": "warning", "lifespan": "off", "ws": uvicorn_ws_protocol(), **options}
    config = uvicorn.Config(app, **settings)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.01)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def redis_server(port: int | None = None, *, data_dir: Path | None = None) -> Iterator[str]:
    """Run a private ``redis-server`` on 127.0.0.1 (on ``port``, or a free one); yield its URL.

    Throw-away unless ``data_dir`` is given: then every write goes to an append-only file there
    before Redis answers, and a server started later on the same directory has the data back."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server is not installed; `make test` installs it (apt-get install)")
    port = port or free_port()
    args = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
    if data_dir is None:
        args += ["--appendonly", "no"]
    else:
        args += ["--appendonly", "yes", "--appendfsync", "always", "--dir", str(data_dir)]
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError("redis-server did not start") from None
                time.sleep(0.02)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.terminate()
        process.wait(timeout=10)


AIFLOW = Path(sys.executable).parent / "aiflow"
ROOT = Path(__file__).resolve().parent.parent


@contextmanager
def aiflow_serve(
    target: str, *args: str, log: Path, env: dict[str, str] | None = None
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """Run ``aiflow serve TARGET ARGS`` as a real process on a free port; yield ``(host:port, process)``
    once ``/health`` answers. Its output goes to ``log``."""
    port = free_port()
    with serving(
        [str(AIFLOW), "serve", target, "--port", str(port), *args], port, log=log, env=env
    ) as running:
        yield running


@contextmanager
def serving(
    argv: list[str], port: int, *, log: Path, env: dict[str, str] | None = None
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """Run the server ``argv`` (listening on ``port``) from the project root; yield
    ``(host:port, process)`` once ``/health`` answers, and stop it afterwards."""
    import httpx

    with log.open("wb") as out:
        process = subprocess.Popen(
            argv, cwd=ROOT, env={**os.environ, **(env or {})}, stdout=out, stderr=subprocess.STDOUT
        )
        base = f"127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"http://{base}/health").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                raise AssertionError(f"{Path(argv[0]).name} did not start:\n{log.read_text()}")
            time.sleep(0.1)
        try:
            yield base, process
        finally:
            if process.poll() is None:
                process.terminate()
                process.wait(20)
