"""Several real server processes share one real Redis: one call's events alternate between them,
and the conversation still comes out whole and in order."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from sipgate_ai_flow.testing import Emulator
from sipgate_ai_flow.testing.transports import HttpTransport, Reply, Transport
from tests.helpers import aiflow_serve

TARGET = "tests/served_bot.py:assistant"
HOLD = "One moment, please."


class RoundRobin(HttpTransport):
    """A load balancer in front of the workers: each event goes to the next one."""

    def __init__(self, urls: list[str]) -> None:
        super().__init__(urls[0], None, timeout=10)
        self.urls = urls
        self.sent = 0

    async def exchange(self, event: bytes) -> Reply:
        self.url = self.urls[self.sent % len(self.urls)]
        self.sent += 1
        return await super().exchange(event)


class Balanced(Emulator):
    def __init__(self, urls: list[str]) -> None:
        super().__init__(urls[0])
        self.urls = urls

    def transport(self) -> Transport:
        return RoundRobin(self.urls)


@pytest.fixture
def workers(redis_url: str, tmp_path: Path) -> Iterator[list[str]]:
    with ExitStack() as stack:
        bases = [
            stack.enter_context(aiflow_serve(TARGET, "--redis", redis_url, log=tmp_path / f"w{n}.log"))[0]
            for n in range(2)
        ]
        yield [f"http://{base}/webhook" for base in bases]


async def test_one_call_across_two_workers(workers: list[str]) -> None:
    async with Balanced(workers).call() as call:
        await call.say("hello")  # every event goes to the other worker than the one before
        await call.say("slow 0.45")  # overruns: a hold here, the answer from the other worker
        await call.listen()
        await call.say("stream")
        await call.listen()
        await call.press("1")
        await call.listen()
        log = call.last_said
        await call.press("#")
        workers_seen = call.last_said
    assert call.said[:4] == ["Welcome.", "Answer 2: hello.", HOLD, "Slow answer 3."]
    parts = [text for text in call.said[4:-2] if text != HOLD]
    assert parts == ["Part 1.", "Part 2.", "Part 3."]
    assert log == "Log: start, hello, slow 0.45, stream, streamed, key 1"
    assert call.violations == []
    assert workers_seen == "Workers: 2."  # both workers handled events of this one call


async def test_a_stale_turn_on_one_worker_is_cancelled_from_the_other(workers: list[str]) -> None:
    async with Balanced(workers).call() as call:
        await call.say("slow 30")  # worker A starts a turn that would take 30 s
        await call.interrupt("never mind", after_ms=100)  # the hold is cut; worker B gets this
        await call.listen()
        await call.press("2")
        await call.listen()
        log = call.last_said
    assert "Slow answer" not in " ".join(call.said)
    assert call.said[:3] == ["Welcome.", HOLD, "Answer 4: never mind."]
    assert log == "Log: start, slow 30, cancelled slow 30, never mind, key 2"


async def test_early_words_on_one_worker_do_not_cancel_the_greeting_on_the_other(workers: list[str]) -> None:
    async with Balanced(workers).call(from_number="4915100999") as call:
        # The greeting overran, so a hold plays; the caller talks over it. Worker B gets the words
        # while worker A is still making the greeting.
        await call.interrupt("hello", after_ms=100)
        await call.listen()
        await call.press("1")
        await call.listen()
    spoken = [text for text in call.said if text != HOLD]
    assert spoken == ["Welcome.", "Answer 2: hello.", "Log: start, hello, key 1"]
    assert call.violations == []
