"""Where the CPU goes in the Redis scale-out: ``python -m benchmarks.scale_cpu``.

Part 5's set-up (a private redis-server, ``aiflow serve --workers N --redis``, the Node.js load
generator with 200 calls over HTTP) for 1 and 2 workers, pinned as part 5 pins them. For the
measured run it reads how many cores each party kept busy: the workers (from ``/proc``),
redis-server (from ``/proc``) and the load generator (its own CPU time, once it has exited).
On a machine with 2 cores the busy cores add up to at most 2: when they do, the machine, not the
SDK, bounds what a second worker can add.
"""

from __future__ import annotations

import os
import resource
import shutil
import subprocess
import time

from benchmarks.run import _cores, _python_servers, _wait_for_port, cpu_seconds, free_port, loadgen, running

CALLS = 200
SECONDS = 10.0


def _generator_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server not found (make redis installs it)")
    redis_port = free_port()
    redis = subprocess.Popen(
        [binary, "--port", str(redis_port), "--save", "", "--appendonly", "no"], stdout=subprocess.DEVNULL
    )
    print(f"{os.cpu_count()} cores; load generator pinned: {' '.join(_cores()[1]) or 'no'}")
    print("workers | events/s | busy cores: workers | redis | load generator | all")
    try:
        _wait_for_port(redis_port, redis)  # type: ignore[arg-type]
        for workers, cores in ((1, "0"), (2, "0,1")):
            port = free_port()
            server = _python_servers(port)[0]
            server.command += ["--workers", str(workers), "--redis", f"redis://127.0.0.1:{redis_port}/0"]
            pin = ["taskset", "-c", cores] if _cores()[0] else []
            with running(server, port, pin=pin) as pid:
                time.sleep(1.0)
                loadgen(port, transport="http", calls=CALLS, rounds=10, seconds=2.0, warmup=0.5)  # warm
                before = (cpu_seconds(pid), cpu_seconds(redis.pid), _generator_seconds())
                started = time.monotonic()
                report = loadgen(port, transport="http", calls=CALLS, rounds=10, seconds=SECONDS, warmup=0.0)
                wall = time.monotonic() - started
                after = (cpu_seconds(pid), cpu_seconds(redis.pid), _generator_seconds())
            busy = [(b - a) / wall for a, b in zip(before, after, strict=True)]
            print(
                f"{workers} | {report['events_per_s']:,.0f} | "
                f"{busy[0]:.2f} | {busy[1]:.2f} | {busy[2]:.2f} | {sum(busy):.2f}"
            )
    finally:
        redis.terminate()
        redis.wait(10)


if __name__ == "__main__":
    main()
