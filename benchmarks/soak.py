"""Soak: many short calls through the emulator against one real server, over HTTP and WebSocket.

    python -m benchmarks.soak --calls 100000       # the full run (make soak), several minutes
    python -m benchmarks.soak --calls 400          # what the test suite runs

Each call says something, presses a key and hangs up; every answer must name its own call and
turn, so a lost or misrouted action fails the run. The server's RSS, tasks and per-call objects
are sampled along the way and after the last call.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Annotated

import httpx
import typer

from sipgate_ai_flow.testing import EmulatedCall, Emulator

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "soak-token"


@dataclass
class Sample:
    """The server's counts after ``calls`` calls."""

    calls: int
    rss: int
    tasks: int
    calls_in_store: int
    objects: dict[str, int]


@dataclass
class Report:
    """One transport's soak."""

    transport: str
    calls: int
    seconds: float = 0.0
    failures: list[str] = field(default_factory=list)
    samples: list[Sample] = field(default_factory=list)
    greeting_ms: list[float] = field(default_factory=list)  # from dialling to hearing the greeting
    answer_ms: list[float] = field(default_factory=list)  # from speaking to hearing the answer

    @property
    def baseline(self) -> Sample:
        return self.samples[0]

    @property
    def final(self) -> Sample:
        return self.samples[-1]

    def growth_after_warmup(self) -> int:
        """RSS growth in bytes from the sample after a fifth of the calls to the last one."""
        warm = next((s for s in self.samples if s.calls >= self.calls // 5), self.final)
        return self.final.rss - warm.rss


@contextmanager
def soak_server(log: Path) -> Iterator[str]:
    """``benchmarks/servers/soak_bot.py`` under a real uvicorn; yields ``host:port``."""
    from tests.helpers import free_port, serving  # noqa: PLC0415 - the test helpers know how to wait

    port = free_port()
    argv = [sys.executable, "-m", "uvicorn", "benchmarks.servers.soak_bot:app", "--port", str(port)]
    argv += ["--log-level", "warning", "--ws", "websockets-sansio"]
    with serving(argv, port, log=log, env={"AIFLOW_TOKEN": TOKEN}) as (address, _):
        yield address


async def _sample(client: httpx.AsyncClient, calls: int) -> Sample:
    data = (await client.get("/debug/counts")).json()
    return Sample(calls=calls, **data)


async def _one_call(emulator: Emulator, n: int, report: Report) -> None:
    text = f"wait {n}" if n % 10 == 0 else f"call {n}"
    dialled = time.perf_counter()
    async with emulator.call() as call:
        sid = call.session.id
        expected = [f"hello {sid}"]
        await _hear(call, len(expected))
        report.greeting_ms.append((time.perf_counter() - dialled) * 1000)
        spoke = time.perf_counter()
        await call.say(text)
        expected.append(f"{sid} 1 {text}")
        await _hear(call, len(expected))
        report.answer_ms.append((time.perf_counter() - spoke) * 1000)
        await call.press("7")
        expected.append(f"{sid} key 7 after 1")
        await _hear(call, len(expected))
        await call.hangup()
    report.failures += compare(n, call.said, expected)


async def _hear(call: EmulatedCall, answers: int, within: float = 10.0) -> None:
    # Like a person, the caller waits for the answer before going on. Over a WebSocket an answer
    # can come after the emulator's reply window, the more so the busier the server is; one
    # that takes longer than ``within`` counts as lost.
    deadline = time.monotonic() + within
    while len(call.said) < answers and not call.ended and time.monotonic() < deadline:
        await call.listen(0.5)


def compare(n: int, heard: list[str], expected: list[str]) -> list[str]:
    """What was wrong with call ``n``: nothing, or what it heard instead."""
    return [] if heard == expected else [f"call {n}: heard {heard!r}, expected {expected!r}"]


async def soak(address: str, transport: str, calls: int, concurrency: int = 200, samples: int = 10) -> Report:
    """Run ``calls`` calls over ``transport`` ("http" or "ws"), ``concurrency`` at a time."""
    url = f"http://{address}/webhook" if transport == "http" else f"ws://{address}/ws"
    emulator = Emulator(url, token=TOKEN, timeout=30)
    report = Report(transport, calls)
    every = max(calls // samples, 1)
    async with httpx.AsyncClient(base_url=f"http://{address}", timeout=60) as client:
        report.samples.append(await _sample(client, 0))
        started = time.perf_counter()
        done = 0
        while done < calls:
            batch = min(every, calls - done)
            queue = iter(range(done, done + batch))

            async def worker(queue: Iterator[int] = queue) -> None:
                for n in queue:
                    try:
                        await _one_call(emulator, n, report)
                    except Exception as exc:
                        report.failures.append(f"call {n}: {type(exc).__name__}: {exc}")

            await asyncio.gather(*(worker() for _ in range(concurrency)))
            done += batch
            report.samples.append(await _sample(client, done))
        report.seconds = time.perf_counter() - started
    return report


def summary(report: Report) -> str:
    """One line on what a soak saw."""
    first, last = report.baseline, report.final
    mib = 2**20
    return (
        f"{report.transport}: {report.calls} calls in {report.seconds:.0f} s "
        f"({report.calls / report.seconds:.0f} calls/s), {len(report.failures)} failures; "
        f"RSS {first.rss / mib:.1f} -> {last.rss / mib:.1f} MiB "
        f"(after warm-up {report.growth_after_warmup() / mib:+.2f} MiB); "
        f"tasks {first.tasks} -> {last.tasks}; "
        f"calls in store {last.calls_in_store}; SDK objects "
        f"{sum(first.objects.values())} -> {sum(last.objects.values())}; "
        f"greeting heard after {_percentiles(report.greeting_ms)}, "
        f"answer after {_percentiles(report.answer_ms)}"
    )


def _percentiles(ms: list[float]) -> str:
    if len(ms) < 2:
        return "-"
    cuts = statistics.quantiles(ms, n=100)
    return f"p50 {cuts[49]:.0f} / p99 {cuts[98]:.0f} / max {max(ms):.0f} ms"


def main(
    calls: Annotated[int, typer.Option(help="Calls per transport.")] = 50_000,
    concurrency: Annotated[int, typer.Option(help="Calls at once.")] = 200,
    out: Annotated[Path | None, typer.Option(help="Write the reports as JSON here.")] = None,
    transport: Annotated[list[str] | None, typer.Option(help="http and/or ws (default: both).")] = None,
) -> None:
    """Soak the SDK over both transports and print what the server held along the way."""
    reports: list[Report] = []
    with soak_server(Path(os.environ.get("TMPDIR", "/tmp")) / "aiflow-soak.log") as address:
        for name in transport or ["http", "ws"]:
            report = asyncio.run(soak(address, name, calls, concurrency))
            reports.append(report)
            print(summary(report))
            for failure in report.failures[:5]:
                print("  ", failure)
    if out is not None:
        out.write_text(json.dumps([asdict(r) for r in reports], indent=2))
    if any(r.failures for r in reports):
        raise typer.Exit(1)


if __name__ == "__main__":
    typer.run(main)
