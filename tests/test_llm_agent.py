"""The LLM agent against the fake model, through the emulator in-process, over HTTP and over
WebSocket: the history the caller heard, tools and their actions, and the safety rails."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import ExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from sipgate_ai_flow import AiFlowError, Assistant, Call
from sipgate_ai_flow.llm import (
    CUT_OFF,
    DEFAULT_MODEL_FALLBACK,
    DEFAULT_RETURNED,
    Agent,
    send_sms,
    tool,
    transfer,
)
from sipgate_ai_flow.testing import EmulatedCall, Emulator, FakeModel, VirtualClock
from tests.helpers import aiflow_serve, running_server

PATHS = ["inprocess", "http", "ws"]
SALES = "4921100200"


@tool
def opening_hours(day: str) -> dict[str, str]:
    """The opening hours of one day of the week.

    Args:
        day: the weekday in English, lower case
    """
    return {"day": day, "hours": "10 to 2" if day == "saturday" else "9 to 5"}


@tool
def broken() -> str:
    """A tool whose backend is down."""
    raise RuntimeError("the booking system is down")


@pytest.fixture
def fake() -> Iterator[FakeModel]:
    with FakeModel() as model:
        yield model


@pytest.fixture(params=PATHS)
def path(request: pytest.FixtureRequest) -> str:
    return str(request.param)


Connect = Callable[..., Any]


@pytest.fixture
def connect(fake: FakeModel, path: str) -> Connect:
    """``connect(agent_options..., assistant_options=...)`` gives an emulator calling a fresh
    agent by ``path``; the agent and the emulator share one virtual clock."""

    @asynccontextmanager
    async def factory(
        assistant_options: dict[str, Any] | None = None, **options: Any
    ) -> AsyncIterator[Emulator]:
        clock = VirtualClock()
        options = {"greeting": "Hello.", "tools": [opening_hours, broken], **options}
        agent = Agent(
            "You are a receptionist.", model="fake", base_url=fake.base_url, clock=clock.now, **options
        )
        assistant = agent.attach(Assistant(**(assistant_options or {})))
        if path == "inprocess":
            yield Emulator(assistant, clock=clock)
            return
        with running_server(assistant) as address:
            url = f"http://{address}/webhook" if path == "http" else f"ws://{address}/ws"
            yield Emulator(url, clock=clock, reply_window=0.2)

    return factory


async def hear(call: EmulatedCall, text: str, within: float = 10.0) -> None:
    """Let the call run until the assistant said something containing ``text``."""
    deadline = time.monotonic() + within
    while not any(text in said for said in call.said):
        if time.monotonic() > deadline:
            raise AssertionError(f"never heard {text!r}; heard {call.said}")
        await call.listen(0.1)


async def playing(call: EmulatedCall, within: float = 10.0) -> None:
    """Wait (in real time) until something plays, without letting it play out."""
    deadline = time.monotonic() + within
    while call.playing is None:
        if time.monotonic() > deadline:
            raise AssertionError(f"nothing started playing; heard {call.said}")
        await asyncio.sleep(0.02)
        await call.tick()


def turn_of(fake: FakeModel, words: str) -> dict[str, Any]:
    """The first request whose last message is the caller's ``words``."""
    for body in fake.requests:
        last = body["messages"][-1]
        if last["role"] == "user" and last["content"] == words:
            return body
    raise AssertionError(f"no request answers {words!r}")


def tool_messages(body: dict[str, Any]) -> list[str]:
    return [m["content"] for m in body["messages"] if m["role"] == "tool"]


async def test_a_barged_in_answer_is_cut_to_what_was_heard(fake: FakeModel, connect: Connect) -> None:
    # The first sentence comes at once; the rest streams slowly, so the caller cuts in while
    # the answer's turn is still running (its playback reports wait behind it).
    first = "One two three four five six seven eight."
    rest = [f" w{n}" for n in range(30)]
    fake.add(when="long", reply={"text": [first + " Nine", *rest, "."], "chunk_delay": 0.1})
    fake.add(when="stop", reply="Okay.")
    async with connect() as emulator, emulator.call() as call:
        await call.say("tell me something long")
        await playing(call)
        assert call.playing is not None
        assert call.playing.text == first
        # 8 words take 3000 ms at the emulator's 160 words a minute: 1200 ms is 3.2 words.
        await call.interrupt("stop", after_ms=1200)
        await hear(call, "Okay.")
    assert turn_of(fake, "stop")["messages"][1:] == [
        {"role": "assistant", "content": "Hello."},
        {"role": "user", "content": "tell me something long"},
        {"role": "assistant", "content": f"One two three… {CUT_OFF}"},
        {"role": "user", "content": "stop"},
    ]
    assert not any("Nine" in text for text in call.said)
    assert call.violations == []


async def test_tool_actions_reach_the_call_and_tool_data_reaches_the_model(
    fake: FakeModel, connect: Connect
) -> None:
    fake.add(
        when="saturday",
        reply=[
            {
                "text": "Let me check.",
                "tool_calls": [
                    {"name": "opening_hours", "arguments": {"day": "saturday"}},
                    {"name": "send_sms", "arguments": {"message": "Saturday: 10 to 2"}},
                ],
            },
            "On **Saturday** we are open from 10 to 2 😀. I sent you a text.",
        ],
    )
    fake.add(
        when="sales",
        reply=[
            {"tool_calls": [{"name": "transfer_call", "arguments": {"destination": "sales"}}]},
            "Bye now!",
        ],
    )
    tools = [opening_hours, send_sms(), transfer({"sales": SALES, "support": "4921100300"})]
    async with connect(tools=tools) as emulator, emulator.call() as call:
        await call.say("are you open on saturday?")
        await hear(call, "I sent you a text.")
        await call.say("put me through to sales")
        await hear(call, "Bye now!")
        await call.listen()
    answer = turn_of(fake, "are you open on saturday?")
    follow_up = fake.requests[fake.requests.index(answer) + 1]
    assert tool_messages(follow_up) == ['{"day": "saturday", "hours": "10 to 2"}', "The SMS is on its way."]
    assert [(s.phone_number, s.message) for s in call.sms] == [("4915100000", "Saturday: 10 to 2")]
    assert "On Saturday we are open from 10 to 2." in call.said  # no markdown, no emoji
    # The goodbye is said before the transfer, which ends the call.
    assert [a.type for a in call.actions[-2:]] == ["speak", "transfer"]
    assert call.transferred_to == SALES
    assert call.end_reason == "transferred"
    assert fake.tools_called == ["opening_hours", "send_sms", "transfer_call"]
    assert call.violations == []


async def test_a_raising_tool_a_bad_argument_and_an_unknown_tool_reach_the_model_as_errors(
    fake: FakeModel, connect: Connect
) -> None:
    fake.add(
        when="book",
        reply=[
            {
                "tool_calls": [
                    {"name": "broken"},
                    {"name": "opening_hours", "arguments": {"day": 6}},
                    {"name": "format_disk", "arguments": {}},
                ]
            },
            "Sorry, booking does not work right now.",
        ],
    )
    async with connect() as emulator, emulator.call() as call:
        await call.say("book a table")
        await hear(call, "booking does not work")
    answer = turn_of(fake, "book a table")
    errors = tool_messages(fake.requests[fake.requests.index(answer) + 1])
    assert errors == [
        "Error: broken failed: RuntimeError: the booking system is down",
        "Error: invalid arguments for opening_hours: day: Input should be a valid string",
        "Error: there is no tool 'format_disk'; the tools are: opening_hours, broken",
    ]
    assert DEFAULT_MODEL_FALLBACK not in call.said  # the turn went on, the model answered
    assert call.violations == []


@pytest.mark.parametrize(
    "failure",
    [
        pytest.param({"error": 500}, id="server-error"),
        pytest.param({"error": 429}, id="rate-limit"),
        pytest.param({"hang": True}, id="hang"),
        pytest.param({"text": "I was about to say something", "drop_after": 3}, id="broken-stream"),
    ],
)
async def test_a_failing_model_gives_the_fallback_within_the_budget(
    fake: FakeModel, connect: Connect, failure: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    fake.add(when="question", reply=failure)  # every attempt fails the same way
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, "sipgate_ai_flow"):
        async with connect(timeout=1.0) as emulator, emulator.call() as call:
            await call.say("a question")
            await hear(call, DEFAULT_MODEL_FALLBACK)
    assert time.monotonic() - started < 8  # liveness: the timeout, holds and the emulator's waits
    assert call.violations == []  # every webhook reply came within the deadline
    assert "the model failed" in caplog.text
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    # The unfinished sentence of the broken stream is never spoken.
    assert not any("about to say" in text for text in call.said)


async def test_a_rate_limit_is_retried_while_nothing_was_said(fake: FakeModel, connect: Connect) -> None:
    fake.add(when="question", times=1, reply={"error": 429})
    fake.add(when="question", reply="Here is the answer.")
    async with connect() as emulator, emulator.call() as call:
        await call.say("a question")
        await hear(call, "Here is the answer.")
    assert DEFAULT_MODEL_FALLBACK not in call.said
    assert len(fake.requests) == 2


async def test_without_an_api_key_no_authorization_header_is_sent(
    fake: FakeModel, connect: Connect, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Issue 17, item 6: an empty key used to become "Bearer ", which HTTP libraries refuse.
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    fake.add(when="hello", reply="Hi there.")
    async with connect() as emulator, emulator.call() as call:
        await call.say("hello")
        await hear(call, "Hi there.")
    assert fake.request_headers
    assert all("authorization" not in headers for headers in fake.request_headers)


async def test_keys_reach_the_model_as_text(fake: FakeModel, connect: Connect) -> None:
    fake.add(when="[keypad: 1]", reply="You pressed one.")
    async with connect() as emulator, emulator.call() as call:
        await call.press("1")
        await hear(call, "You pressed one.")
    assert turn_of(fake, "[keypad: 1]")["messages"][-1] == {"role": "user", "content": "[keypad: 1]"}


async def test_the_history_survives_a_failed_transfer(fake: FakeModel, connect: Connect) -> None:
    fake.add(
        when="sales",
        reply=[{"tool_calls": [{"name": "transfer_call", "arguments": {}}]}, "Putting you through."],
    )
    fake.add(when="thanks", reply="You're welcome.")
    tools = [transfer(SALES, timeout=10)]
    async with connect(tools=tools) as emulator, emulator.call(transfer_answers=False) as call:
        await call.say("sales please")
        await hear(call, DEFAULT_RETURNED)  # nobody answered within 10 s: the call came back
        await call.say("thanks anyway")
        await hear(call, "You're welcome.")
    messages = turn_of(fake, "thanks anyway")["messages"]
    assert [(m["role"], m.get("content")) for m in messages[1:]] == [
        ("assistant", "Hello."),
        ("user", "sales please"),
        ("assistant", None),  # the transfer_call tool call
        ("tool", messages[4]["content"]),
        ("assistant", "Putting you through."),
        ("assistant", DEFAULT_RETURNED),
        ("user", "thanks anyway"),
    ]
    assert call.violations == []


@pytest.mark.parametrize("path", ["inprocess"])  # the event below belongs to this test's loop
async def test_parallel_tool_calls_run_at_the_same_time(fake: FakeModel, connect: Connect) -> None:
    other_started = asyncio.Event()

    @tool(timeout=3)
    async def first() -> str:
        """Waits for the second tool: only done when both run at once."""
        await other_started.wait()
        return "first done"

    @tool
    async def second() -> str:
        """Starts."""
        other_started.set()
        return "second done"

    fake.add(when="both", reply=[{"tool_calls": [{"name": "first"}, {"name": "second"}]}, "Both done."])
    async with connect(tools=[first, second]) as emulator, emulator.call() as call:
        await call.say("do both")
        await hear(call, "Both done.")
    answer = turn_of(fake, "do both")
    assert tool_messages(fake.requests[fake.requests.index(answer) + 1]) == ["first done", "second done"]


async def test_tool_rounds_are_capped(fake: FakeModel, connect: Connect) -> None:
    fake.add(
        when="loop", reply=[{"tool_calls": [{"name": "opening_hours", "arguments": {"day": "monday"}}]}] * 5
    )
    async with connect(max_tool_rounds=2) as emulator, emulator.call() as call:
        await call.say("loop forever")
        await hear(call, DEFAULT_MODEL_FALLBACK)  # it never said anything: the fallback
    turn = fake.requests[fake.requests.index(turn_of(fake, "loop forever")) :]
    assert len(turn) == 3
    assert [body.get("tool_choice") for body in turn] == [None, None, "none"]
    assert tool_messages(turn[-1])[-1] == '{"day": "monday", "hours": "9 to 5"}'
    assert call.violations == []


def test_an_agent_refuses_what_is_not_a_tool() -> None:
    def plain(day: str) -> str:
        return day

    with pytest.raises(AiFlowError, match=r"tools\[1\] is a function, not a Tool; make it one with @tool"):
        Agent("x", model="fake", tools=[opening_hours, plain])  # type: ignore[list-item]
    with pytest.raises(AiFlowError, match="two tools are called opening_hours"):
        Agent("x", model="fake", tools=[opening_hours, opening_hours])


def test_attach_refuses_an_assistant_that_has_the_handlers_already() -> None:
    assistant = Assistant()
    assistant.on_assistant_speak(lambda event: None)
    agent = Agent("x", model="fake")
    with pytest.raises(AiFlowError, match="already has on_assistant_speak"):
        agent.attach(assistant)


async def test_a_call_tool_gets_the_call(fake: FakeModel, connect: Connect, path: str) -> None:
    seen: list[str] = []

    @tool
    def whoami(call: Call) -> str:
        """Who is calling."""
        seen.append(call.session.from_phone_number)
        return "a friend"

    fake.add(when="who", reply=[{"tool_calls": [{"name": "whoami"}]}, "You are {tool_result}."])
    async with connect(tools=[whoami]) as emulator, emulator.call(from_number="4915122222") as call:
        await call.say("who am i")
        await hear(call, "You are a friend.")
    assert seen == ["4915122222"]
    assert "call" not in str(whoami.parameters)


async def test_the_history_is_one_across_redis_workers(
    fake: FakeModel, redis_url: str, tmp_path: Path
) -> None:
    from tests.test_multiworker import Balanced

    fake.add(when="first", reply="First answer.")
    fake.add(when="second", reply="Second answer.")
    env = {"OPENAI_BASE_URL": fake.base_url}
    with ExitStack() as stack:
        workers = [
            stack.enter_context(
                aiflow_serve(
                    "tests/llm_served.py:assistant", "--redis", redis_url, log=tmp_path / f"{n}.log", env=env
                )
            )[0]
            for n in range(2)
        ]
        async with Balanced([f"http://{base}/webhook" for base in workers]).call() as call:
            await call.say("the first question")  # every event goes to the other worker
            await hear(call, "First answer.")
            await call.say("the second question")
            await hear(call, "Second answer.")
    assert [(m["role"], m["content"]) for m in turn_of(fake, "the second question")["messages"][1:]] == [
        ("assistant", "Hello."),
        ("user", "the first question"),
        ("assistant", "First answer."),
        ("user", "the second question"),
    ]
    assert call.violations == []


async def test_the_models_client_is_made_while_the_greeting_plays(fake: FakeModel) -> None:
    # The first client of a process takes a tenth of a second or more (its TLS context, openai's
    # chat resource): made in the caller's first turn, it delayed that turn's answer past the
    # deadline on a busy machine.
    agent = Agent("You are a receptionist.", model="fake", base_url=fake.base_url, greeting="Hello.")
    assistant = agent.attach(Assistant())
    emulator = Emulator(assistant, clock=VirtualClock())
    async with emulator.call() as call:
        assert call.said == ["Hello."]
        deadline = time.monotonic() + 5
        while not agent.model.ready():
            assert time.monotonic() < deadline, "no client made during the greeting"
            await asyncio.sleep(0.01)
        assert fake.requests == []  # made, not used
    await assistant.drain()


async def test_a_client_that_cannot_be_made_ahead_leaves_the_greeting_alone(
    fake: FakeModel, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    agent = Agent("You are a receptionist.", model="fake", base_url=fake.base_url, greeting="Hello.")

    async def broken() -> None:
        raise OSError("no certificates")

    monkeypatch.setattr(agent.model, "warm", broken)
    assistant = agent.attach(Assistant())

    def warned() -> list[logging.LogRecord]:
        return [r for r in caplog.records if "not prepared ahead of the first turn" in r.getMessage()]

    async with Emulator(assistant, clock=VirtualClock()).call() as call:
        assert call.said == ["Hello."]
        deadline = time.monotonic() + 5
        while not warned():
            assert time.monotonic() < deadline, "the failure was not logged"
            await asyncio.sleep(0.01)
    await assistant.drain()
    [record] = warned()
    assert record.levelno == logging.WARNING
    assert "OSError" in record.getMessage()
