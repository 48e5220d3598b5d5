"""The benchmarks still run: every part, with tiny numbers, against real servers (make bench runs
them in full). Timing is never asserted here; correctness of what the parts report is."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from benchmarks import run, server_instructions
from benchmarks.inprocess import EVENTS

from tests.helpers import ROOT, aiflow_serve


# Alone: it checks every answer, and a greeting held back by a machine busy with other tests
# would count as a wrong one.
@pytest.mark.serial
def test_the_smoke_run_covers_every_part_and_every_answer_is_right(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.run", "--smoke", "--out", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    [results_file] = tmp_path.glob("*.json")
    results = json.loads(results_file.read_text())
    assert results["machine"]["nproc"] >= 1
    assert results["machine"]["versions"]["pydantic"]

    inprocess = results["inprocess"]
    assert [r["event"] for r in inprocess["events"]] == list(EVENTS)
    assert all(r["aiflow_ns"] > 0 and r["floor_ns"] > 0 for r in inprocess["events"])

    load = results["load"]
    assert {(r["server"], r["transport"]) for r in load} == {
        (server, transport)
        for server in ("aiflow", "fastapi", "starlette", "asgi", "node")
        for transport in ("http", "ws")
    }
    for row in load:
        assert row["errors"] == 0, row
        assert row["events"] > 0, row
        assert row["p99_ms"] >= row["p50_ms"] > 0, row

    assert {r["server"] for r in results["memory"]} == {"aiflow", "fastapi", "starlette", "asgi", "node"}
    assert all(r["calls"] == run.SMOKE.idle_calls and r["errors"] == 0 for r in results["memory"])

    for row in results["deadline"]:
        assert row["errors"] == 0, row
        assert row["overruns"] == 0, row
        assert row["p99_ms"] >= 50, row  # the handler's 50 ms of I/O are in the user_speak answers

    assert [r["workers"] for r in results["scale_out"]] == [1, 2]
    assert all(r["errors"] == 0 and r["events"] > 0 for r in results["scale_out"])

    assert {t["target"] for t in results["targets"]} >= {
        "WebSocket events/s vs FastAPI",
        "HTTP events/s vs FastAPI",
        "HTTP events/s vs bare Starlette",
        "Redis, 2 workers vs 1",
    }
    markdown = results_file.with_suffix(".md").read_text()
    assert "## 2. Load over real sockets" in markdown
    assert "## Targets" in markdown


def test_the_load_generator_reports_wrong_answers(tmp_path: Path) -> None:
    # examples/echo.py greets differently from the benchmark's echo: every call must count errors.
    with aiflow_serve("examples/echo.py:assistant", log=tmp_path / "log") as (address, _):
        port = int(address.rsplit(":", 1)[1])
        for transport in ("http", "ws"):
            report = run.loadgen(
                port, transport=transport, calls=2, rounds=1, seconds=0.3, warmup=0, reply_timeout=1
            )
            assert report["errors"] > 0
            assert "expected speak" in report["error_samples"][0]


def test_the_load_generator_reports_a_refused_token(tmp_path: Path) -> None:
    target = "benchmarks/servers/aiflow_echo.py:assistant"
    with aiflow_serve(target, log=tmp_path / "log", env={"BENCH_TOKEN": "other"}) as (address, _):
        port = int(address.rsplit(":", 1)[1])
        report = run.loadgen(port, transport="http", calls=1, rounds=1, seconds=0.3, warmup=0)
        assert report["errors"] > 0
        assert "expected 200, got 401" in report["error_samples"][0]


def test_the_websocket_protocol_comparison_runs() -> None:
    done = benchmark("benchmarks.ws_protocols", "--smoke")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    for name in ("websockets-sansio", "aiflow (guarded_ws)", "wsproto"):
        assert name in done.stdout


def test_only_runs_the_parts_named(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "benchmarks.run", "--smoke", "--out", str(tmp_path)]
    done = subprocess.run(
        [*command, "--only", "inprocess"], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    [results_file] = tmp_path.glob("*.json")
    results = json.loads(results_file.read_text())
    assert {"inprocess", "load", "scale_out"} & set(results) == {"inprocess"}
    assert results["targets"] == []  # the in-process ratio is a figure, no longer a target (issue 19)
    wrong = subprocess.run(
        [*command, "--only", "nope"], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert wrong.returncode != 0
    assert "no part nope" in wrong.stdout + wrong.stderr


def benchmark(*args: str) -> subprocess.CompletedProcess[str]:
    """``python -m benchmarks.<args>``, finished."""
    command = [sys.executable, "-m", *args]
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)


def test_the_instruction_count_driver_answers_every_event() -> None:
    for observer in ("noop", "prom"):
        done = benchmark("benchmarks.turn_instructions", observer, "2")
        assert done.returncode == 0, done.stderr[-3000:]
        assert done.stdout.strip() == "400 of 400 events answered"


def test_the_mix_drivers_answer_every_event_the_echo_assistant_answers() -> None:
    for mode in ("sdk", "protocol", "fastapi"):
        done = benchmark("benchmarks.mix_instructions", mode, "1")
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        assert done.stdout.strip() == f"{mode}: 2400 answers"  # 200 calls x (greeting + 10 echoes + digit)


async def test_the_server_instruction_load_checks_every_answer_of_each_server(tmp_path: Path) -> None:
    # What benchmarks.server_instructions runs under callgrind, here without it: each server
    # answers the whole script of every call.
    for name in ("aiflow", "aiflow-plain", "fastapi"):
        port = run.free_port()
        [server] = [s for s in server_instructions.servers(port) if s.name == name]
        with run.running(server, port, pin=[]):
            for transport in ("ws", "http"):
                await server_instructions.load(port, calls=6, concurrency=3, transport=transport)
    # An assistant that answers otherwise fails the load.
    env = {"AIFLOW_TOKEN": run.TOKEN}
    with aiflow_serve("examples/echo.py:assistant", log=tmp_path / "log", env=env) as (address, _):
        port = int(address.rsplit(":", 1)[1])
        for transport in ("ws", "http"):
            with pytest.raises(RuntimeError, match="expected"):
                await server_instructions.load(port, calls=1, concurrency=1, transport=transport)
