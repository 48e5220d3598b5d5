"""LLM agents, part 2, item 4: handoffs between agents on one call (a handoff sentence, the
history carried over, a voice per agent); in-process, over HTTP and over WebSocket, against the
fake model, which tells the agents apart by their model names."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest

from sipgate_ai_flow import AiFlowError, Assistant, Speak, TtsConfig
from sipgate_ai_flow.llm import DEFAULT_HOLDS, Agent, ToolError, handoff, hang_up
from sipgate_ai_flow.testing import Emulator, FakeModel, VirtualClock
from tests import test_llm_agent as base
from tests.helpers import running_server
from tests.test_llm_agent import hear
from tests.test_llm_turns import until_ended

fake, path = base.fake, base.path

RECEPTION_VOICE = TtsConfig.azure("en-US-JennyNeural")
BOOKING_VOICE = TtsConfig.azure("en-GB-RyanNeural")
HANDOFF_SENTENCE = "I'll connect you with our booking team."

Connect = Callable[..., Any]


@pytest.fixture
def connect(fake: FakeModel, path: str) -> Connect:
    """``connect(history=..., sentence=...)`` gives ``(emulator, reception, booking)``: a
    receptionist (model ``reception``) that can hand over to a booking agent (model
    ``booking``, another voice), which can hand back."""

    @asynccontextmanager
    async def factory(
        history: Any = "all", sentence: str | None = HANDOFF_SENTENCE, **options: Any
    ) -> AsyncIterator[tuple[Emulator, Agent, Agent]]:
        clock = VirtualClock()
        common = {"base_url": fake.base_url, "clock": clock.now, **options}
        booking = Agent(
            "You book tables.",
            model="booking",
            name="booking",
            tts=BOOKING_VOICE,
            tools=[hang_up()],
            **common,
        )
        reception = Agent(
            "You are the receptionist.",
            model="reception",
            name="reception",
            greeting="Hello, reception.",
            tts=RECEPTION_VOICE,
            tools=[handoff(booking, sentence=sentence, history=history)],
            **common,
        )
        booking.add_tools(handoff(reception, history="all"))
        assistant = reception.attach(Assistant())
        if path == "inprocess":
            yield Emulator(assistant, clock=clock), reception, booking
            return
        with running_server(assistant) as address:
            url = f"http://{address}/webhook" if path == "http" else f"ws://{address}/ws"
            yield Emulator(url, clock=clock, reply_window=0.2), reception, booking

    return factory


def voices(actions: list[Any]) -> list[tuple[str | None, str | None]]:
    """Each speak's text and voice."""
    return [(a.text, a.tts.voice if a.tts else None) for a in actions if isinstance(a, Speak)]


def requests_of(fake: FakeModel, model: str) -> list[dict[str, Any]]:
    return [body for body in fake.requests if body["model"] == model]


def after_a_handoff(text: str) -> list[Any]:
    """A reply to a request that carries the handoff's tool call: the fake's second step."""
    return [{"text": "(not asked)"}, text]


def to_booking() -> dict[str, Any]:
    return {"tool_calls": [{"name": "handoff_to_booking"}]}


async def test_the_receptionist_hands_over_with_a_sentence_and_only_the_callers_turns(
    fake: FakeModel, connect: Connect
) -> None:
    fake.add(model="reception", when="book a table", reply=[to_booking()])
    fake.add(model="booking", when="book a table", reply="Sure. For how many people?")
    fake.add(model="booking", when="four", reply="A table for four is booked.")
    async with connect(history="caller") as (emulator, _, _), emulator.call() as call:
        await call.say("I'd like to book a table.")
        await hear(call, "how many people")
        await call.say("We are four.")
        await hear(call, "is booked.")
    # Each agent speaks in its own voice; the handoff sentence in the receptionist's.
    assert voices(call.actions) == [
        ("Hello, reception.", RECEPTION_VOICE.voice),
        (HANDOFF_SENTENCE, RECEPTION_VOICE.voice),
        ("Sure.", BOOKING_VOICE.voice),
        ("For how many people?", BOOKING_VOICE.voice),
        ("A table for four is booked.", BOOKING_VOICE.voice),
    ]
    assert [body["model"] for body in fake.requests] == ["reception", "booking", "booking"]
    first, second = requests_of(fake, "booking")
    # Only the caller's turns, under the booking agent's instructions and with its tools.
    assert first["messages"][0]["content"].startswith("You book tables.")
    assert first["messages"][1:] == [{"role": "user", "content": "I'd like to book a table."}]
    assert {t["function"]["name"] for t in first["tools"]} == {"end_call", "handoff_to_reception"}
    # From then on its own history: its answer, the caller's next words.
    assert [(m["role"], m.get("content")) for m in second["messages"][1:]] == [
        ("user", "I'd like to book a table."),
        ("assistant", "Sure. For how many people?"),
        ("user", "We are four."),
    ]
    assert call.violations == []


async def test_a_handoff_with_all_of_the_history_and_back(
    fake: FakeModel, connect: Connect, tmp_path: Any
) -> None:
    fake.add(model="reception", when="book a table", reply=[to_booking()])
    fake.add(model="booking", when="book a table", reply=after_a_handoff("Happy to help with your booking."))
    fake.add(
        model="booking", when="opening hours", reply=[{"tool_calls": [{"name": "handoff_to_reception"}]}]
    )
    fake.add(model="reception", when="opening hours", reply=after_a_handoff("We open at nine."))
    transcripts: list[dict[str, Any]] = []
    options = {"history": "all", "sentence": None, "on_transcript": lambda c, e: transcripts.append(e)}
    async with connect(**options) as (emulator, _, _), emulator.call() as call:
        await call.say("I want to book a table.")
        await hear(call, "your booking.")
        await call.say("And your opening hours?")
        await hear(call, "nine.")
    first = requests_of(fake, "booking")[0]
    # All of it: the greeting, the caller, and the receptionist's handoff call with its result.
    assert [(m["role"], m.get("content")) for m in first["messages"][1:4]] == [
        ("assistant", "Hello, reception."),
        ("user", "I want to book a table."),
        ("assistant", None),
    ]
    assert first["messages"][3]["tool_calls"][0]["function"]["name"] == "handoff_to_booking"
    assert first["messages"][4]["content"].startswith("The call is now with booking")
    assert voices(call.actions)[-1] == ("We open at nine.", RECEPTION_VOICE.voice)
    assert HANDOFF_SENTENCE not in call.said
    # The transcript names who answered, and where each turn was handed over.
    answers = [e for e in transcripts if e["kind"] == "assistant"]
    assert [(e["agent"], e.get("handoff"), e["said"]) for e in answers] == [
        ("reception", None, ["Hello, reception."]),
        ("reception", "booking", ["Happy to help with your booking."]),
        ("booking", "reception", ["We open at nine."]),
    ]
    assert call.violations == []


async def test_a_second_handoff_in_one_turn_is_refused(fake: FakeModel, connect: Connect) -> None:
    # The booking agent tries to hand straight back in the same turn: it is told it cannot.
    fake.add(model="reception", when="ping", reply=[to_booking()])
    fake.add(
        model="booking",
        when="ping",
        reply=[
            {"text": "(not asked)"},
            {"tool_calls": [{"name": "handoff_to_reception"}]},
            "I can take it from here.",
        ],
    )
    async with connect(sentence=None) as (emulator, _, _), emulator.call() as call:
        await call.say("ping pong")
        await hear(call, "from here.")
    last = requests_of(fake, "booking")[-1]["messages"][-1]
    assert last == {
        "role": "tool",
        "tool_call_id": last["tool_call_id"],
        "content": "Error: the call was handed over in this turn already.",
    }
    assert [body["model"] for body in fake.requests] == ["reception", "booking", "booking"]


async def test_the_agent_handed_to_ends_the_call_in_its_voice(fake: FakeModel, connect: Connect) -> None:
    fake.add(model="reception", when="book", reply=[to_booking()])
    fake.add(model="booking", when="book", reply="Done, see you then.")
    fake.add(
        model="booking", when="bye", reply=[{"tool_calls": [{"name": "end_call"}]}, "Goodbye from booking."]
    )
    async with connect(sentence=None, history="caller") as (emulator, _, _), emulator.call() as call:
        await call.say("book for tomorrow")
        await hear(call, "see you then.")
        await call.say("bye")
        await until_ended(call)
    assert call.end_reason == "assistant_hangup"
    assert voices(call.actions)[-1] == ("Goodbye from booking.", BOOKING_VOICE.voice)
    assert call.violations == []


def test_handoffs_that_cannot_work_are_refused_early() -> None:
    booking = Agent("x", model="fake", name="booking", state_key="other")
    reception = Agent("x", model="fake", name="reception", tools=[handoff(booking)])
    with pytest.raises(AiFlowError, match="keeps its history under 'other', not 'llm'"):
        reception.attach(Assistant())
    twin = Agent("x", model="fake", name="reception")
    first = Agent("x", model="fake", name="first", tools=[handoff(twin)])
    first.add_tools(handoff(Agent("x", model="fake", name="reception"), name="other_reception"))
    with pytest.raises(AiFlowError, match="two agents are called 'reception'"):
        first.agents()
    with pytest.raises(ToolError, match='history must be "all" or "caller"'):
        handoff(twin, history="everything")  # type: ignore[arg-type]
    with pytest.raises(AiFlowError, match="two tools are called handoff_to_reception"):
        first.add_tools(handoff(twin))


async def test_holds_come_in_the_voice_of_the_agent_answering(fake: FakeModel, connect: Connect) -> None:
    fake.add(model="reception", when="book", reply=[to_booking()])
    fake.add(model="booking", when="book", reply="Booking here.")
    fake.add(model="booking", when="slow", reply={"text": "That took a while.", "delay": 2.5})
    async with connect(sentence=None, history="caller") as (emulator, _, _), emulator.call() as call:
        await call.say("book please")
        await hear(call, "Booking here.")
        await call.say("something slow")
        await hear(call, "a while.", within=15)
    holds = [(text, voice) for text, voice in voices(call.actions) if text in DEFAULT_HOLDS["en"]]
    assert holds
    assert {voice for _, voice in holds} == {BOOKING_VOICE.voice}
