"""LLM agents, part 2: the goodbye before the hangup, announce-then-act with rotating holds, and
the semantic end of turn; each through the emulator in-process, over HTTP and over WebSocket,
against the fake model."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator
from contextlib import ExitStack
from typing import Any

import pytest

from sipgate_ai_flow import Assistant, Hangup, UserSpeak
from sipgate_ai_flow.llm import DEFAULT_HOLDS, hang_up, tool, transfer
from sipgate_ai_flow.testing import EmulatedCall, Emulator, FakeModel
from tests import test_llm_agent as base
from tests.helpers import running_server
from tests.test_llm_agent import SALES, Connect, hear

# The fixtures of the agent's tests: a fake model, and an agent on it by each path.
fake, path, connect = base.fake, base.path, base.connect


async def until_ended(call: EmulatedCall, within: float = 15.0) -> None:
    """Let the call run (in real time: the model streams in real time) until it ends."""
    deadline = time.monotonic() + within
    while not call.ended:
        if time.monotonic() > deadline:
            raise AssertionError(f"the call did not end; heard {call.said}")
        await call.listen(0.1)


GOODBYE = "Thank you for calling, it was a pleasure to help you today. Goodbye and have a nice day!"
# Streamed for longer than the reply budget, as models do: the goodbye's last words and the
# hangup come after the first reply (over HTTP) or in messages of their own (WebSocket).
SLOW = 0.1


async def test_the_hangup_waits_until_the_goodbye_has_played(fake: FakeModel, connect: Connect) -> None:
    # The model says goodbye as it calls the tool: no second round is asked for (it would only
    # delay the hangup), and the tool's farewell is not said as well.
    goodbye = {"text": GOODBYE, "tool_calls": [{"name": "end_call"}]}
    fake.add(when="bye", reply=[goodbye, {"text": "", "delay": 1.5}])
    async with connect(tools=[hang_up()]) as emulator, emulator.call() as call:
        await call.say("That's all, bye.")
        await until_ended(call)
    assert call.end_reason == "assistant_hangup"
    assert call.violations == []
    assert [p.interrupted for p in call.played if p.text == "Goodbye and have a nice day!"] == [False]
    assert "Goodbye!" not in call.said  # the tool's farewell is not said after the model's goodbye


async def test_the_transfer_waits_until_the_goodbye_has_played(fake: FakeModel, connect: Connect) -> None:
    fake.add(
        when="sales",
        reply=[
            {"tool_calls": [{"name": "transfer_call", "arguments": {"destination": "sales"}}]},
            {"text": "Of course. I am putting you through to our sales team now.", "chunk_delay": SLOW},
        ],
    )
    async with connect(tools=[transfer({"sales": SALES})]) as emulator, emulator.call() as call:
        await call.say("Sales, please.")
        await until_ended(call)
    assert call.end_reason == "transferred"
    assert call.transferred_to == SALES
    assert call.violations == []
    assert not call.played[-1].interrupted
    assert "sales team now" in (call.played[-1].text or "")


async def test_the_caller_who_speaks_during_the_goodbye_keeps_the_call(
    fake: FakeModel, connect: Connect
) -> None:
    fake.add(when="bye", reply=[{"tool_calls": [{"name": "end_call"}]}, GOODBYE])
    fake.add(when="wait", reply="Sure, what else can I do for you?")
    async with connect(tools=[hang_up()]) as emulator, emulator.call() as call:
        await call.say("That's all, bye.")
        await hear(call, "Thank you", within=10)
        await call.interrupt("wait, one more thing", after_ms=800)
        await hear(call, "what else")
        await call.listen(10)
        assert not call.ended
    assert not call.hung_up
    assert call.violations == []


# Not over WebSocket: there the emulator takes the assistant's messages between playbacks.
@pytest.mark.parametrize("where", ["inprocess", "http"])
async def test_the_emulator_reports_a_hangup_that_cuts_off_speech(where: str) -> None:
    # A hangup in a message of its own while the words before it still play: the service
    # hangs up at once (what production apps work around by waiting for assistant_speech_ended).
    assistant = Assistant()

    @assistant.on_user_speak
    async def answer(event: UserSpeak) -> AsyncIterator[Any]:
        yield "Thank you for calling, it was a pleasure to help you today."
        await asyncio.sleep(1.2)  # past the reply budget: the hangup comes on its own
        yield Hangup()

    with ExitStack() as stack:
        target: Assistant | str = assistant
        if where != "inprocess":
            address = stack.enter_context(running_server(assistant))
            target = f"http://{address}/webhook"
        async with Emulator(target, reply_window=0.2).call() as call:
            await call.say("bye")
            await until_ended(call)
    assert [v.kind for v in call.violations] == ["speech_cut_off"]
    assert call.played[-1].interrupted


SLOT_CHECK = {"de": "Ich schaue kurz im Kalender nach.", "en": "Let me check the calendar."}


@tool(announce=SLOT_CHECK)
async def free_slots(day: str) -> str:
    """The free appointments on a day (the booking system is slow).

    Args:
        day: the weekday
    """
    await asyncio.sleep(5)  # about four reply budgets: holds follow the announcement
    return "10 Uhr und 14 Uhr"


async def test_a_slow_tool_is_announced_then_rotating_holds_in_german_cover_it(
    fake: FakeModel, connect: Connect
) -> None:
    fake.add(
        when="termin",
        reply=[
            {"tool_calls": [{"name": "free_slots", "arguments": {"day": "montag"}}]},
            "Am Montag sind {tool_result} frei.",
        ],
    )
    options = {"language": "de", "tools": [free_slots], "assistant_options": {"max_holds": 6}}
    async with connect(**options) as emulator, emulator.call() as call:
        await call.say("Ich brauche einen Termin am Montag.")
        await hear(call, "frei.", within=20)
    said = call.said[call.said.index(SLOT_CHECK["de"]) :]
    holds = said[1:-1]
    assert said[-1] == "Am Montag sind 10 Uhr und 14 Uhr frei."
    assert len(holds) >= 2
    assert set(holds) <= set(DEFAULT_HOLDS["de"])
    assert all(a != b for a, b in itertools.pairwise(holds))  # they take turns
    assert call.violations == []


async def test_words_the_model_says_before_a_tool_replace_its_announcement(
    fake: FakeModel, connect: Connect
) -> None:
    fake.add(
        when="monday",
        reply=[
            {
                "text": "Sure, one second.",
                "tool_calls": [{"name": "free_slots", "arguments": {"day": "monday"}}],
            },
            "On Monday {tool_result} are free.",
        ],
    )
    async with (
        connect(tools=[free_slots], assistant_options={"max_holds": 6}) as emulator,
        emulator.call() as call,
    ):
        await call.say("Anything free on Monday?")
        await hear(call, "are free.", within=20)
    assert call.said[1] == "Sure, one second."
    assert SLOT_CHECK["en"] not in call.said
    assert set(call.said[2:-1]) <= set(DEFAULT_HOLDS["en"])


PARTIAL = "I'd like to book a table for"
REST = "four people tonight."
WHOLE = f"{PARTIAL} {REST}"


def user_messages(body: dict[str, Any]) -> list[str]:
    return [m["content"] for m in body["messages"] if m["role"] == "user"]


async def test_the_model_waits_for_the_rest_of_a_half_sentence(fake: FakeModel, connect: Connect) -> None:
    fake.add(when="four people", reply="A table for four tonight, noted.")
    fake.add(
        when="table for", reply={"tool_calls": [{"name": "wait_for_turn", "arguments": {"filler": "Mhm."}}]}
    )
    fake.add(when="thanks", reply="You're welcome.")
    async with connect(end_of_turn="model") as emulator, emulator.call() as call:
        await call.say(PARTIAL)
        await hear(call, "Mhm.")
        await call.say(REST)
        await hear(call, "noted.")
        await call.say("thanks")
        await hear(call, "welcome")
    assert "wait_for_turn" in [t["function"]["name"] for t in fake.requests[0]["tools"]]
    answered = fake.requests[1]
    assert user_messages(answered) == [WHOLE]  # joined, and the half never twice
    last = fake.requests[-1]["messages"]
    assert user_messages(fake.requests[-1]) == [WHOLE, "thanks"]
    assert not any("Mhm" in (m.get("content") or "") for m in last)  # the filler stays out
    assert not any(m.get("tool_calls") for m in last)
    assert call.violations == []


async def test_a_classifier_keeps_the_model_from_answering_half_a_sentence(
    fake: FakeModel, connect: Connect
) -> None:
    fake.add(when="four people", reply="A table for four tonight, noted.")
    seen: list[str] = []

    async def finished(text: str, call: Any) -> bool:
        seen.append(text)
        return not text.endswith(" for")

    async with connect(end_of_turn=finished) as emulator, emulator.call() as call:
        await call.say(PARTIAL)
        await call.listen(1)
        await call.say(REST)
        await hear(call, "noted.")
    assert seen == [PARTIAL, WHOLE]
    assert [user_messages(body) for body in fake.requests] == [[WHOLE]]  # the model ran once
    assert call.said == ["Hello.", "A table for four tonight, noted."]


async def test_the_agent_waits_at_most_max_waits_times_in_a_row(fake: FakeModel, connect: Connect) -> None:
    fake.add(when="answer", reply="Here is my answer.")
    options: dict[str, Any] = {"end_of_turn": lambda text, call: False, "max_waits": 1, "filler": "Mhm."}
    async with connect(**options) as emulator, emulator.call() as call:
        await call.say("so")
        await hear(call, "Mhm.")
        await call.say("answer me")
        await hear(call, "Here is my answer.")
    assert user_messages(fake.requests[0]) == ["so answer me"]
