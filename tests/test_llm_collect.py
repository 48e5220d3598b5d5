"""LLM agents, part 2, item 6: collecting values with validators (re-asked when invalid,
confirmed when asked to), in ``call.state`` and ``agent.values(call)``; in-process, over HTTP
and over WebSocket, against the fake model."""

from __future__ import annotations

import datetime
from typing import Any

import pytest

from sipgate_ai_flow import Call, SessionEnd
from sipgate_ai_flow.llm import Agent, ToolError, Value
from sipgate_ai_flow.testing import FakeModel
from tests import test_llm_transcripts as transcripts
from tests.test_llm_agent import hear

fake, path, connect = transcripts.fake, transcripts.path, transcripts.connect
Connect = transcripts.Connect


def iso_date(text: str) -> str:
    """A date as YYYY-MM-DD; raises ValueError for anything else."""
    try:
        return datetime.date.fromisoformat(text).isoformat()
    except ValueError:
        raise ValueError("it is not a real date") from None


VALUES = [
    Value("customer_number", "the customer number, six digits", pattern=r"\d{6}"),
    Value("date", "the date of the appointment, as YYYY-MM-DD", check=iso_date, confirm=True),
]


def save(name: str, value: str, then: str) -> list[Any]:
    return [{"tool_calls": [{"name": "save_value", "arguments": {"name": name, "value": value}}]}, then]


def system(body: dict[str, Any]) -> str:
    content: str = body["messages"][0]["content"]
    return content


async def test_values_are_validated_re_asked_confirmed_and_kept(fake: FakeModel, connect: Connect) -> None:
    fake.add(when="12 34 56", reply=save("customer_number", "12 34 56", "Thanks, got it."))
    fake.add(when="12 34", reply=save("customer_number", "12 34", "That number seems short. Once more?"))
    fake.add(when="friday", reply=save("date", "2026-13-40", "Which date was that exactly?"))
    fake.add(when="december", reply=save("date", "2026-12-04", "The fourth of December, right?"))
    fake.add(
        when="yes",
        reply=[{"tool_calls": [{"name": "confirm_value", "arguments": {"name": "date"}}]}, "All set."],
    )
    seen: list[tuple[dict[str, str], list[str], dict[str, Any]]] = []
    holder: list[Agent] = []

    def ended(event: SessionEnd, call: Call) -> None:
        agent = holder[0]
        seen.append((agent.values(call), agent.missing(call), dict(call.state["llm"]["values"])))

    options = {"collect": VALUES, "assistant_options": {"on_session_end": ended}}
    async with connect(**options) as (emulator, agent):
        holder.append(agent)
        async with emulator.call() as call:
            for words, answer in [
                ("my number is 12 34", "Once more?"),
                ("it is 12 34 56", "got it."),
                ("next friday", "exactly?"),
                ("the fourth of december", "right?"),
                ("yes", "All set."),
            ]:
                await call.say(words)
                await hear(call, answer)
    results = [(c.arguments["name"], c.result) for c in fake.tool_calls]  # type: ignore[index]
    assert results == [
        (
            "customer_number",
            "Not saved, it does not have the form of the customer number, six digits. Tell the caller "
            "and ask for the customer number, six digits again.",
        ),
        ("customer_number", "Saved customer_number: 123456."),
        (
            "date",
            "Not saved, it is not a real date. Tell the caller and ask for the date of the appointment, "
            "as YYYY-MM-DD again.",
        ),
        (
            "date",
            "Read 2026-12-04 back to the caller and ask whether it is right. If it is, call "
            "confirm_value; if not, ask again.",
        ),
        ("date", "Saved date: 2026-12-04."),
    ]
    expected = {"customer_number": "123456", "date": "2026-12-04"}
    assert seen == [(expected, [], expected)]
    # The instructions say what is missing, then what is saved.
    assert "- customer_number: the customer number, six digits" in system(fake.requests[0])
    assert "Saved so far: customer_number = 123456" in system(fake.requests[-1])
    assert "(all collected)" in system(fake.requests[-1])
    assert call.violations == []


@pytest.mark.parametrize("path", ["inprocess"])
async def test_a_value_check_may_be_async_and_say_false(fake: FakeModel, connect: Connect) -> None:
    async def known(text: str) -> bool:
        return text == "ACME"

    fake.add(when="globex", reply=save("company", "Globex", "Which company?"))
    options = {"collect": [Value("company", "the caller's company", check=known)]}
    async with connect(**options) as (emulator, _), emulator.call() as call:
        await call.say("globex")
        await hear(call, "Which company?")
    assert fake.tool_calls[0].result == (
        "Not saved, it is not the caller's company. Tell the caller and ask for the caller's company again."
    )


def test_bad_values_are_refused_when_the_agent_is_made() -> None:
    with pytest.raises(ToolError, match="value name 'customer number' must be an identifier"):
        Value("customer number", "x")
    with pytest.raises(ToolError, match="pattern '\\(' is not a regex"):
        Value("n", "x", pattern="(")
    with pytest.raises(ToolError, match="two values are called n"):
        Agent("x", model="fake", collect=[Value("n", "x"), Value("n", "y")])
