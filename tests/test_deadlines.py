"""One timer watching many deadlines of one length (the webhook body and header guards)."""

from __future__ import annotations

import asyncio
import time

import pytest

from sipgate_ai_flow.server.deadlines import Deadlines


async def test_only_missed_deadlines_expire_each_once_and_in_order() -> None:
    expired: list[tuple[str, float]] = []
    started = time.monotonic()
    deadlines: Deadlines[str] = Deadlines(0.2, lambda key: expired.append((key, time.monotonic() - started)))
    for key in ("a", "b", "c", "d"):
        deadlines.arm(key)
    deadlines.disarm("b")  # done in time
    await asyncio.sleep(0.1)
    deadlines.arm("a")  # restarted: due 0.2 s from now, after c and d
    await asyncio.sleep(0.5)
    assert [key for key, _ in expired] == ["c", "d", "a"]
    at = dict(expired)
    assert 0.2 <= at["c"] < 0.2 + 0.2  # late by at most a quarter of the length, plus scheduling
    assert 0.3 <= at["a"] < 0.3 + 0.2
    assert len(deadlines) == 0


async def test_the_timer_runs_only_while_deadlines_are_armed() -> None:
    expired: list[int] = []
    deadlines: Deadlines[int] = Deadlines(0.1, expired.append)
    deadlines.arm(1)
    deadlines.disarm(1)
    await asyncio.sleep(0.1)  # the sweep found nothing and did not reschedule itself
    assert deadlines._timer is None
    deadlines.arm(2)  # a new deadline starts the timer again
    await asyncio.sleep(0.3)
    assert expired == [2]


async def test_a_failing_callback_does_not_stop_the_watch() -> None:
    expired: list[str] = []

    def expire(key: str) -> None:
        if key == "bad":
            raise RuntimeError("boom")
        expired.append(key)

    loop = asyncio.get_running_loop()
    errors: list[object] = []
    loop.set_exception_handler(lambda _, context: errors.append(context.get("exception")))
    deadlines: Deadlines[str] = Deadlines(0.1, expire)
    deadlines.arm("bad")
    deadlines.arm("good")
    await asyncio.sleep(0.4)
    assert expired == ["good"]
    assert [type(e) for e in errors] == [RuntimeError]


def test_the_same_watch_works_on_a_new_event_loop() -> None:
    # A test server may serve one app on one loop, stop, and serve it again on another.
    expired: list[str] = []
    deadlines: Deadlines[str] = Deadlines(0.1, expired.append)

    async def once(key: str) -> None:
        deadlines.arm(key)
        await asyncio.sleep(0.01)

    asyncio.run(once("first"))  # this loop closes with its sweep still pending
    asyncio.run(once("second"))
    assert expired == []

    async def wait(key: str) -> None:
        deadlines.arm(key)
        await asyncio.sleep(0.3)

    asyncio.run(wait("third"))
    assert expired == ["first", "second", "third"]


def test_a_deadline_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        Deadlines(0, print)
