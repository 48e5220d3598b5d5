"""Where a WebSocket event's instructions go, in process: the SDK's whole path, its protocol work
alone, and the FastAPI peer's work, over the load generator's call script.

    valgrind --tool=callgrind python -m benchmarks.mix_instructions sdk 2     # and the same with 6

The difference of the two totals over the 4 extra rounds of 200 calls x 23 events is the cost of
one event (``python -m benchmarks.mix_instructions --table`` runs all six and prints it). Modes:

- ``sdk``: bytes -> ``parse_event`` -> ``Assistant.serve`` on the live path (the WebSocket's) ->
  ``dump_actions`` for each action sent, with the served default's Prometheus observer: the echo
  assistant of the load runs (``benchmarks/servers/aiflow_echo.py``);
- ``protocol``: the same events through ``parse_event``, and a validated ``Speak`` through
  ``dump_actions`` where the echo assistant answers: the protocol's share, no runtime;
- ``fastapi``: the FastAPI peer's own work per frame (``TypeAdapter.validate_json``, its answer,
  ``model_dump_json``).

Run each once before counting it, so that the counted runs find the ``.pyc`` files written.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import orjson

from benchmarks.run import ROOT
from benchmarks.servers.behaviour import call_script

CALLS = 200
EVENTS_PER_CALL = len(call_script(0))
ANSWERS_PER_CALL = sum(want is not None for _, want in call_script(0))


def scripts() -> list[list[bytes]]:
    """Every call's event bodies, as the load generator sends them."""
    return [[orjson.dumps(event) for event, _ in call_script(call, "mix")] for call in range(CALLS)]


def run_sdk(rounds: int) -> int:
    """The SDK's path; returns the number of frames it would send."""
    import uvloop  # noqa: PLC0415

    from benchmarks.servers.aiflow_echo import assistant  # noqa: PLC0415
    from sipgate_ai_flow.protocol.codec import dump_actions, parse_event  # noqa: PLC0415
    from sipgate_ai_flow.server.metrics import PrometheusObserver  # noqa: PLC0415

    assistant.observer = PrometheusObserver()
    bodies = scripts()
    sent: list[str] = []

    async def send(actions: list[Any]) -> None:
        payload = dump_actions(actions)
        if payload is not None:
            sent.append(payload.decode())

    def reading_moves_on() -> None:
        pass

    async def drive() -> None:
        for _ in range(rounds):
            for step in range(EVENTS_PER_CALL):
                for body in bodies:
                    await assistant.serve(parse_event(body[step]), send=send, waits=reading_moves_on)

    uvloop.run(drive())
    return len(sent)


def run_protocol(rounds: int) -> int:
    """The protocol's share of the SDK's path."""
    from sipgate_ai_flow import Speak  # noqa: PLC0415
    from sipgate_ai_flow.protocol.codec import dump_actions, parse_event  # noqa: PLC0415

    bodies = scripts()
    answered = {"session_start", "user_speak", "dtmf_received"}
    sent = 0
    for _ in range(rounds):
        for step in range(EVENTS_PER_CALL):
            for body in bodies:
                event = parse_event(body[step])
                if event.type in answered:
                    sent += (
                        dump_actions([Speak(session_id=event.session.id, text="You said: ...")]) is not None
                    )
    return sent


def run_fastapi(rounds: int) -> int:
    """The FastAPI peer's work per frame."""
    from benchmarks.servers.fastapi_peer import EVENT, answer  # noqa: PLC0415

    bodies = [[body.decode() for body in call] for call in scripts()]
    sent = 0
    for _ in range(rounds):
        for step in range(EVENTS_PER_CALL):
            for body in bodies:
                reply = answer(EVENT.validate_json(body[step]))
                if reply is not None:
                    reply.model_dump_json()
                    sent += 1
    return sent


MODES = {"sdk": run_sdk, "protocol": run_protocol, "fastapi": run_fastapi}


def count(mode: str, rounds: int) -> int:
    """Instructions of ``python -m benchmarks.mix_instructions mode rounds`` under callgrind."""
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        raise SystemExit("valgrind not found (Debian's valgrind)")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "callgrind.out"
        command = [valgrind, "--tool=callgrind", f"--callgrind-out-file={out}"]
        command += [sys.executable, "-m", "benchmarks.mix_instructions", mode, str(rounds)]
        subprocess.run(command, cwd=ROOT, check=True, capture_output=True)
        found = re.search(r"^(?:summary|totals):\s+(\d+)", out.read_text(errors="replace"), re.MULTILINE)
    if found is None:
        raise RuntimeError("no total in callgrind's output")
    return int(found.group(1))


def table() -> dict[str, float]:
    """Instructions per event of each mode."""
    per_event = {}
    for mode in MODES:
        subprocess.run([sys.executable, "-m", "benchmarks.mix_instructions", mode, "1"], cwd=ROOT, check=True)
        extra = count(mode, 6) - count(mode, 2)
        per_event[mode] = extra / (4 * CALLS * EVENTS_PER_CALL)
        print(f"{mode}: {per_event[mode] / 1000:.1f}k instructions per event", flush=True)
    return per_event


def main() -> None:
    """``mode rounds`` (under callgrind), or ``--table``."""
    if sys.argv[1:] == ["--table"]:
        table()
        return
    mode, rounds = sys.argv[1], int(sys.argv[2])
    sent = MODES[mode](rounds)
    expected = rounds * CALLS * ANSWERS_PER_CALL
    if sent != expected:
        raise SystemExit(f"{mode}: {sent} answers, expected {expected}")
    print(f"{mode}: {sent} answers")


if __name__ == "__main__":
    main()
