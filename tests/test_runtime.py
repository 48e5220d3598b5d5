"""The deadline runtime, over the emulator's three paths: holds, give-ups, streaming, stale turns,
call.send and per-call order."""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
from websockets.asyncio.client import connect

from sipgate_ai_flow import (
    Assistant,
    AssistantSpeak,
    Call,
    CallEndedError,
    DtmfReceived,
    SessionStart,
    UserSpeak,
)
from sipgate_ai_flow.testing import EmulatedCall, Emulator
from tests.helpers import event, running_server

PATHS = ["inprocess", "http", "ws"]
BUDGET = 0.2
HOLD = "One moment, please."
GIVE_UP = "Sorry, this is taking too long. Please try again in a moment."


class Bot:
    """An assistant whose caller's words choose how slow it is, with a log of what happened."""

    def __init__(self, **options: Any) -> None:
        self.assistant = Assistant(budget=BUDGET, **options)
        self.cancelled: list[str] = []
        self.send_errors: list[Exception] = []
        self.background: set[asyncio.Task[None]] = set()
        self.assistant.on_session_start(lambda ev: "Hi.")
        self.assistant.on_user_speak(self.speak)
        self.assistant.on_session_end(lambda ev: None)

    async def speak(self, ev: UserSpeak, call: Call) -> Any:
        command, _, arg = ev.text.partition(" ")
        if command == "slow":
            await self._sleep(float(arg), ev.text)
            return f"Answer after {arg} seconds."
        if command == "stream":
            return self._stream(float(arg or 0.3))
        if command == "remind":
            self._later(call, float(arg))
            return "Okay."
        return f"You said {ev.text}."

    async def _sleep(self, seconds: float, what: str) -> None:
        try:
            await asyncio.sleep(seconds)
        except asyncio.CancelledError:
            self.cancelled.append(what)
            raise

    async def _stream(self, gap: float) -> AsyncIterator[str]:
        for word in ("First.", "Second.", "Third."):
            yield word
            await self._sleep(gap, f"stream {word}")

    def _later(self, call: Call, seconds: float) -> None:
        async def remind() -> None:
            await asyncio.sleep(seconds)
            try:
                await call.send("Reminder.")
            except CallEndedError as exc:
                self.send_errors.append(exc)

        task = asyncio.create_task(remind())
        self.background.add(task)
        task.add_done_callback(self.background.discard)


Make = Callable[..., tuple[Bot, Emulator]]


@pytest.fixture(params=PATHS)
def path(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def make(path: str) -> Iterator[Make]:
    """A factory: ``make(**assistant_options)`` gives a bot and an emulator reaching it by ``path``."""
    servers: list[Any] = []

    def factory(**options: Any) -> tuple[Bot, Emulator]:
        bot = Bot(**options)
        if path == "inprocess":
            return bot, Emulator(bot.assistant)
        server = running_server(bot.assistant)
        address = server.__enter__()
        servers.append(server)
        url = f"http://{address}/webhook" if path == "http" else f"ws://{address}/ws"
        return bot, Emulator(url, reply_window=0.03)

    yield factory
    for server in servers:
        server.__exit__(None, None, None)


async def hear(call: EmulatedCall, text: str, within: float = 5.0) -> None:
    """Let the call run until the assistant said ``text`` (over WebSocket it may come late)."""
    deadline = time.monotonic() + within
    while text not in call.said:
        if time.monotonic() > deadline:
            raise AssertionError(f"never heard {text!r}; heard {call.said}")
        await call.listen(0.2)


async def test_a_slow_handler_gets_a_hold_and_its_answer_later(make: Make) -> None:
    _, emulator = make()
    async with emulator.call() as call:
        # Playback takes no real time here, so the answer must come within two budgets to
        # follow the first hold (a real hold message plays for about a second).
        await call.say("slow 0.3")
        await hear(call, "Answer after 0.3 seconds.")
        assert call.said == ["Hi.", HOLD, "Answer after 0.3 seconds."]
        assert call.violations == []


async def test_a_fast_handler_gets_no_hold(make: Make) -> None:
    _, emulator = make()
    async with emulator.call() as call:
        await call.say("slow 0.01")
        await call.listen(0.3)
        assert call.said == ["Hi.", "Answer after 0.01 seconds."]


async def test_a_handler_that_never_answers_is_given_up_after_the_holds(make: Make) -> None:
    bot, emulator = make(max_holds=2)
    async with emulator.call() as call:
        await call.say("slow 30")
        await hear(call, GIVE_UP)
        await call.listen(0.3)
        assert call.said == ["Hi.", HOLD, HOLD, GIVE_UP]
        assert bot.cancelled == ["slow 30"]  # the late turn is stopped, not left running
        await call.say("hello")
        assert call.last_said == "You said hello."
        assert call.violations == []


async def test_holds_can_be_switched_off_and_set_per_handler(make: Make, path: str) -> None:
    bot, emulator = make(hold=None)
    async with emulator.call() as call:
        await call.say("slow 0.4")
        if path != "ws":
            # Without a hold nothing plays, so a webhook has no later event to answer with...
            await asyncio.sleep(0.5)
            assert call.said == ["Hi."]
            await call.press("1")  # ...until the caller does something
        await hear(call, "Answer after 0.4 seconds.")
        assert call.said[:2] == ["Hi.", "Answer after 0.4 seconds."]

    bot, emulator = make()
    bot.assistant.on_dtmf_received(budget=0.1, hold="Let me look that up.")(slow_key)
    async with emulator.call() as call:
        await call.press("1")
        await hear(call, "key 1")
        assert call.said == ["Hi.", "Let me look that up.", "key 1"]


async def slow_key(ev: DtmfReceived) -> str:
    await asyncio.sleep(0.3)
    return f"key {ev.digit}"


async def test_a_streaming_handler_is_spoken_sentence_by_sentence(make: Make) -> None:
    _, emulator = make()
    async with emulator.call() as call:
        await call.say("stream 0.15")
        await hear(call, "Third.")
        assert call.said == ["Hi.", "First.", "Second.", "Third."]
        assert call.violations == []


async def test_streamed_sentences_arrive_one_by_one_over_websocket() -> None:
    bot = Bot()
    with running_server(bot.assistant) as address:
        async with connect(f"ws://{address}/ws") as ws:
            await ws.send(json.dumps(event("session_start", "s1")))
            assert json.loads(await ws.recv())["text"] == "Hi."
            started = time.monotonic()
            await ws.send(json.dumps(event("user_speak", "s1", text="stream 0.3")))
            arrivals = []
            for _ in range(3):
                message = json.loads(await asyncio.wait_for(ws.recv(), 3))
                arrivals.append((round(time.monotonic() - started, 2), message["text"]))
    assert [text for _, text in arrivals] == ["First.", "Second.", "Third."]
    times = [at for at, _ in arrivals]
    assert times[0] < 0.25  # the first sentence does not wait for the rest
    assert times[1] - times[0] >= 0.25, arrivals
    assert times[2] - times[1] >= 0.25, arrivals


async def test_a_stale_turn_is_never_spoken(make: Make) -> None:
    bot, emulator = make(hold=None)
    async with emulator.call() as call:
        await call.say("slow 0.6")
        await call.say("never mind")
        await call.listen(1.0)  # longer than the slow turn would have taken
        await call.press("5")  # over HTTP, anything still queued would come with this reply
        await call.listen(0.3)
        assert call.said == ["Hi.", "You said never mind."]
        assert bot.cancelled == ["slow 0.6"]


async def test_a_barge_in_drops_the_rest_of_a_stream(make: Make) -> None:
    bot, emulator = make()
    async with emulator.call() as call:
        await call.say("stream 0.4")
        await hear(call, "First.")
        await call.interrupt("stop", after_ms=100)
        await call.listen(1.0)
        await call.press("5")
        await call.listen(0.3)
        assert "Third." not in call.said
        assert call.said[-1] == "You said stop."
        assert bot.cancelled[:1] == ["stream First."]


async def test_call_send_delivers_now_or_with_the_next_reply(make: Make, path: str) -> None:
    _, emulator = make()
    async with emulator.call() as call:
        await call.say("remind 0.2")
        assert call.last_said == "Okay."
        if path == "ws":
            await hear(call, "Reminder.")  # pushed on its own
        else:
            await asyncio.sleep(0.4)
            assert "Reminder." not in call.said  # a webhook cannot push...
            await call.press("1")  # ...so it comes with the next reply
            assert "Reminder." in call.said
        assert call.violations == []


async def test_call_send_after_the_end_raises(make: Make) -> None:
    bot, emulator = make()
    async with emulator.call() as call:
        await call.say("remind 0.3")
    await asyncio.sleep(0.6)
    assert len(bot.send_errors) == 1
    assert "has ended" in str(bot.send_errors[0])


@pytest.mark.serial  # its answers must come within a time a busy machine can miss
@pytest.mark.parametrize("transport", ["http", "ws"])
async def test_order_holds_under_100_concurrent_calls(transport: str) -> None:
    """100 calls at once, each pressing keys faster than a slow handler answers: every call's
    events run one at a time, in order, and every answer comes, in order."""
    running: dict[str, int] = {}
    seen: dict[str, list[str]] = {}
    overlaps: list[str] = []

    async def press(ev: DtmfReceived, call: Call) -> str:
        running[call.id] = running.get(call.id, 0) + 1
        if running[call.id] > 1:
            overlaps.append(call.id)
        seen.setdefault(call.id, []).append(ev.digit)
        await asyncio.sleep(random.uniform(0, 0.25))  # some turns overrun the 0.2 s budget
        running[call.id] -= 1
        return f"key {ev.digit}"

    assistant = Assistant(budget=BUDGET, max_holds=100, on_dtmf_received=press)
    keys = "1234567890"
    with running_server(assistant) as address:
        url = f"http://{address}/webhook" if transport == "http" else f"ws://{address}/ws"
        emulator = Emulator(url, reply_window=0.03, timeout=20)

        async def one_call(n: int) -> EmulatedCall:
            async with emulator.call(session_id=f"call-{n}") as call:
                for key in keys:
                    await call.press(key)
                await hear(call, "key 0", within=20)
            return call

        calls = await asyncio.gather(*(one_call(n) for n in range(100)))
    assert overlaps == []
    assert all(seen[f"call-{n}"] == list(keys) for n in range(100))
    for call in calls:
        answers = [text for text in call.said if text != HOLD]  # holds come where turns overran
        assert answers == [f"key {k}" for k in keys], (call.session.id, " | ".join(call.said))
        # Latency under this load is for the benchmarks to measure, not this test.
        assert [v for v in call.violations if v.kind != "slow_reply"] == []


@pytest.mark.parametrize("path", PATHS)
async def test_the_callers_first_words_never_cancel_the_greeting(path: str) -> None:
    """A caller who speaks while the greeting is still being made hears the greeting, then the
    answer, and that answer sees the state the greeting set up: whether the words come while the
    greeting runs, or (over a webhook, which cannot push) after it was queued for the next reply."""
    greeted: list[str] = []
    assistant = Assistant(budget=1.0, hold=None)

    @assistant.on_session_start
    async def greet(ev: SessionStart, call: Call) -> str:
        await asyncio.sleep(1.4)  # the CRM lookup, longer than the budget
        call.state["name"] = "Ada"
        greeted.append(call.id)
        return "Hello Ada."

    @assistant.on_user_speak
    def answer(ev: UserSpeak, call: Call) -> str:
        return f"{call.state['name']}, you said {ev.text}."

    async def run(emulator: Emulator, pause: float) -> None:
        async with emulator.call() as call:
            assert call.said == []  # the greeting is not there yet...
            await asyncio.sleep(pause)
            await call.say("hello")  # ...and the caller speaks
            await hear(call, "Ada, you said hello.")
            assert call.said == ["Hello Ada.", "Ada, you said hello."]
            assert greeted[-1] == call.session.id
            assert call.violations == []

    async def both(emulator: Emulator) -> None:
        await run(emulator, 0.0)  # the greeting still runs when the words come
        if path != "ws":
            await run(emulator, 1.0)  # the greeting waits in the queue for the next reply

    if path == "inprocess":
        await both(Emulator(assistant))
        return
    with running_server(assistant) as address:
        url = f"http://{address}/webhook" if path == "http" else f"ws://{address}/ws"
        await both(Emulator(url, reply_window=0.03))


@pytest.mark.parametrize("path", PATHS)
async def test_handlers_may_use_timeouts_and_task_groups(path: str) -> None:
    """A waiting turn has its task to itself: a timeout or a task group in a handler cancels the
    handler's own work, never the request, the connection or another event."""
    assistant = Assistant(budget=1.0, hold=None)
    assistant.on_session_start(lambda ev: "Hi.")

    @assistant.on_user_speak
    async def answer(ev: UserSpeak) -> str:
        try:
            async with asyncio.timeout(0.05):
                await asyncio.sleep(30)
        except TimeoutError:
            pass
        async with asyncio.TaskGroup() as group:
            part = group.create_task(asyncio.sleep(0.01, ev.text))
        return f"Timed out, then {part.result()}."

    @assistant.on_dtmf_received
    async def key(ev: DtmfReceived) -> str:
        await asyncio.sleep(0.01)
        return f"Key {ev.digit}."

    async def talk(emulator: Emulator) -> None:
        async with emulator.call() as call:
            await call.say("one")
            await hear(call, "Timed out, then one.")
            await call.press("5")
            await hear(call, "Key 5.")
            await call.say("two")
            await hear(call, "Timed out, then two.")
            assert call.said == ["Hi.", "Timed out, then one.", "Key 5.", "Timed out, then two."]
            assert call.violations == []

    if path == "inprocess":
        await talk(Emulator(assistant))
        return
    with running_server(assistant) as address:
        url = f"http://{address}/webhook" if path == "http" else f"ws://{address}/ws"
        await talk(Emulator(url, reply_window=0.03))


async def test_playback_reports_reach_their_handlers_after_a_barge_in(make: Make, path: str) -> None:
    # An LLM agent learns what the caller heard of a cut-off answer only from these reports, and
    # they often wait behind the answer's own turn; the barge-in cancels that turn, not them.
    bot, emulator = make()
    reports: list[str] = []

    def spoke(ev: AssistantSpeak) -> str | None:
        reports.append(f"speak {ev.text}")
        return "Stale report." if ev.text == "First." else None  # stale by the time it runs

    bot.assistant.on_assistant_speak(spoke)
    bot.assistant.on_user_speech_started(lambda ev: reports.append("caller talks"))
    async with emulator.call() as call:
        await call.say("stream 0.4")
        await hear(call, "First.")
        await call.interrupt("stop", after_ms=100)
        await call.listen(1.0)
        await call.press("5")
        await call.listen(0.3)
    assert "speak First." in reports
    if path == "ws":
        assert "caller talks" in reports[reports.index("speak First.") :]  # the barge-in's onset
    assert "Stale report." not in call.said
    assert "Third." not in call.said
    assert call.said[-1] == "You said stop."


# -- per-call lines --------------------------------------------------------------------------------


async def test_lines_of_calls_whose_session_end_never_came_are_forgotten_once_idle(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The runtime keeps a line per call for the call's life; a call that vanished without
    # session_end must not keep its line forever.
    from sipgate_ai_flow.assistant import runtime

    monkeypatch.setattr(runtime, "_LINE_IDLE", 0.2)
    assistant = Assistant(on_user_speak=lambda ev, call: "ok")
    lines = assistant._runtime._lines
    for n in range(50):
        assert (await assistant.handle(event("user_speak", f"gone-{n}")))[0].text == "ok"
    await assistant.handle(event("user_speak", "ended"))
    await assistant.handle(event("session_end", "ended"))
    assert len(lines) == 50  # kept between events; session_end removed its call's line
    await asyncio.sleep(0.3)
    await assistant.handle(event("user_speak", "active"))
    assert set(lines) == {"active"}
    assert (await assistant.handle(event("user_speak", "gone-1")))[0].text == "ok"  # made again
