"""LLM agents, part 2, item 7: the call's transcript (turns with what was heard, tool calls,
latency and token usage), in the session-end handler, as JSON lines, through a callback and in
the emulator's recordings; in-process, over HTTP and over WebSocket, against the fake model."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from sipgate_ai_flow import Assistant, Call, SessionEnd
from sipgate_ai_flow.llm import CUT_OFF, Agent
from sipgate_ai_flow.testing import Emulator, FakeModel, VirtualClock, load_recording
from tests import test_llm_agent as base
from tests.helpers import running_server
from tests.test_llm_agent import hear, opening_hours, playing

fake, path = base.fake, base.path

Connect = Callable[..., Any]


@pytest.fixture
def connect(fake: FakeModel, path: str) -> Connect:
    """``connect(agent_options..., assistant_options=...)`` gives ``(emulator, agent)``: a
    fresh agent on the fake model, called by ``path``."""

    @asynccontextmanager
    async def factory(
        assistant_options: dict[str, Any] | None = None, **options: Any
    ) -> AsyncIterator[tuple[Emulator, Agent]]:
        clock = VirtualClock()
        options = {"greeting": "Hello.", "tools": [opening_hours], **options}
        agent = Agent(
            "You are a receptionist.", model="fake", base_url=fake.base_url, clock=clock.now, **options
        )
        assistant = agent.attach(Assistant(**(assistant_options or {})))
        if path == "inprocess":
            yield Emulator(assistant, clock=clock), agent
            return
        with running_server(assistant) as address:
            url = f"http://{address}/webhook" if path == "http" else f"ws://{address}/ws"
            yield Emulator(url, clock=clock, reply_window=0.2), agent

    return factory


def read_lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def words(body: dict[str, Any]) -> int:
    """The fake model's prompt tokens for a request: the words of its messages."""
    return sum(len((m.get("content") or "").split()) for m in body["messages"])


async def test_the_transcript_goes_to_a_file_a_callback_and_the_recording(
    fake: FakeModel, connect: Connect, tmp_path: Path
) -> None:
    fake.add(
        when="saturday",
        reply=[
            {"tool_calls": [{"name": "opening_hours", "arguments": {"day": "saturday"}}], "delay": 0.3},
            "We are open from 10 to 2.",
        ],
    )
    lines = tmp_path / "transcripts.jsonl"
    emulators: list[Emulator] = []

    def note(call: Call, entry: dict[str, Any]) -> None:
        assert emulators[0].note(call.id, entry)

    async with connect(transcript_path=lines, on_transcript=note) as (emulator, _):
        emulators.append(emulator)
        async with emulator.call() as call:
            await call.say("Are you open on Saturday?")
            await hear(call, "10 to 2.")
    written = read_lines(lines)
    assert {entry.pop("session_id") for entry in written} == {call.session.id}
    assert [(e["kind"], e.get("said"), e.get("text")) for e in written] == [
        ("assistant", ["Hello."], None),
        ("user", None, "Are you open on Saturday?"),
        ("assistant", ["We are open from 10 to 2."], None),
    ]
    answer = written[2]
    assert answer["heard"] == "We are open from 10 to 2."
    assert answer["interrupted"] is False
    assert answer["agent"] == "agent"
    assert answer["tools"] == [
        {
            "name": "opening_hours",
            "arguments": {"day": "saturday"},
            "result": '{"day": "saturday", "hours": "10 to 2"}',
            "error": False,
            "ms": answer["tools"][0]["ms"],
        }
    ]
    # Two requests: the tool call (one completion token), then seven streamed words.
    asked = fake.requests
    assert all(body["stream_options"] == {"include_usage": True} for body in asked)
    prompt = sum(words(body) for body in asked)
    assert len(asked) == answer["requests"] == 2
    assert answer["usage"] == {"prompt_tokens": prompt, "completion_tokens": 8, "total_tokens": prompt + 8}
    assert answer["latency_ms"] >= 300  # the model waited 0.3 s before its tool call
    assert answer["duration_ms"] >= answer["latency_ms"]
    assert written[0]["latency_ms"] is None  # the greeting waits for nobody
    # The same entries are notes in the emulator's recording, which still loads for replays.
    notes = [line["note"] for line in call.recording() if line["kind"] == "note"]
    assert notes == written
    call.save(tmp_path / "call.jsonl")
    assert len(load_recording(tmp_path / "call.jsonl").steps) == len(
        [e for e in call.transcript if e.kind == "step"]
    )


async def test_the_session_end_handler_reads_what_the_caller_heard(fake: FakeModel, connect: Connect) -> None:
    first = "One two three four five six seven eight."
    rest = [f" w{n}" for n in range(30)]
    fake.add(when="long", reply={"text": [first + " Nine", *rest, "."], "chunk_delay": 0.1})
    fake.add(when="stop", reply="Okay.")
    fake.add(when="[keypad: 1]", reply="You pressed one.")
    seen: list[list[dict[str, Any]]] = []
    holder: list[Agent] = []

    def ended(event: SessionEnd, call: Call) -> None:
        seen.append(holder[0].transcript(call))

    async with connect(assistant_options={"on_session_end": ended}) as (emulator, agent):
        holder.append(agent)
        async with emulator.call() as call:
            await call.say("tell me something long")
            await playing(call)
            await call.interrupt("stop", after_ms=1200)
            await hear(call, "Okay.")
            await call.press("1")
            await hear(call, "You pressed one.")
    [transcript] = seen
    assert [(e["kind"], e.get("text"), e.get("heard")) for e in transcript] == [
        ("assistant", None, "Hello."),
        ("user", "tell me something long", None),
        ("assistant", None, "One two three…"),
        ("user", "stop", None),
        ("assistant", None, "Okay."),
        ("user", "[keypad: 1]", None),
        ("assistant", None, "You pressed one."),  # the last answer: what had played at the end
    ]
    long_answer = transcript[2]
    assert long_answer["interrupted"] is True
    assert long_answer["said"][0] == first
    assert CUT_OFF not in long_answer["heard"]
    assert transcript[3]["barged_in"] is True
    assert transcript[5]["keys"] == "1"
    assert transcript[6]["usage"]["completion_tokens"] == 3


@pytest.mark.parametrize("path", ["inprocess"])
async def test_without_usage_no_stream_options_are_sent(fake: FakeModel, connect: Connect) -> None:
    fake.add(when="hello", reply="Hi there.")
    seen: list[list[dict[str, Any]]] = []
    holder: list[Agent] = []
    options = {
        "usage": False,
        "assistant_options": {"on_session_end": lambda e, c: seen.append(holder[0].transcript(c))},
    }
    async with connect(**options) as (emulator, agent):
        holder.append(agent)
        async with emulator.call() as call:
            await call.say("hello")
            await hear(call, "Hi there.")
    assert "stream_options" not in fake.requests[0]
    assert seen[0][-1]["usage"] is None
    assert seen[0][-1]["requests"] == 1


@pytest.mark.parametrize("path", ["inprocess"])
async def test_a_failing_transcript_writer_does_not_break_the_call(
    fake: FakeModel, connect: Connect, caplog: pytest.LogCaptureFixture
) -> None:
    fake.add(when="hello", reply="Hi there.")

    async def broken(call: Call, entry: dict[str, Any]) -> None:
        raise OSError("disk full")

    async with connect(on_transcript=broken) as (emulator, _), emulator.call() as call:
        await call.say("hello")
        await hear(call, "Hi there.")
    assert "writing the transcript failed (OSError)" in caplog.text
    assert "hello" not in caplog.text  # no call text in the log


async def test_a_turn_the_agent_waited_on_is_in_the_transcript_once(
    fake: FakeModel, connect: Connect
) -> None:
    fake.add(when="four people", reply="A table for four tonight, noted.")
    seen: list[list[dict[str, Any]]] = []
    holder: list[Agent] = []
    options = {
        "end_of_turn": lambda text, call: not text.endswith(" for"),
        "filler": "Mhm.",
        "assistant_options": {"on_session_end": lambda e, c: seen.append(holder[0].transcript(c))},
    }
    async with connect(**options) as (emulator, agent):
        holder.append(agent)
        async with emulator.call() as call:
            await call.say("I'd like to book a table for")
            await hear(call, "Mhm.")
            await call.say("four people tonight.")
            await hear(call, "noted.")
    assert [(e["kind"], e.get("text"), e.get("said"), e.get("waited")) for e in seen[0]] == [
        ("assistant", None, ["Hello."], None),
        ("user", "I'd like to book a table for", None, None),
        ("assistant", None, ["Mhm."], True),
        ("user", "four people tonight.", None, None),
        ("assistant", None, ["A table for four tonight, noted."], None),
    ]
    assert seen[0][2]["requests"] == 0  # the classifier decided; the model never ran
