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
import time

from benchmarks.run import (
    SCALE_OUT,
    _cores,
    cpu_seconds,
    free_port,
    loadgen,
    redis_server,
    running,
    scale_out_server,
)

CALLS = 200
SECONDS = 10.0


def _generator_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    print(f"{os.cpu_count()} cores; load generator pinned: {' '.join(_cores()[1]) or 'no'}")
    print("workers | events/s | busy cores: workers | redis | load generator | all")
    with redis_server() as (redis, redis_port):
        for workers, cores in SCALE_OUT:
            port = free_port()
            server, pin = scale_out_server(port, workers, cores, redis_port)
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


if __name__ == "__main__":
    main()
