"""@tool (schema, validation, errors, timeouts), the call-control tools, and speakable text."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Annotated, Literal

import pytest
from pydantic import BaseModel, Field

from sipgate_ai_flow import Call, Hangup, SendSms, SessionInfo, Transfer
from sipgate_ai_flow.llm import ToolError, ToolResult, hang_up, send_sms, speakable, tool, transfer


class Booking(BaseModel):
    day: str
    people: int = Field(ge=1)


@tool
async def book(booking: Booking, note: Annotated[str, Field(description="for the kitchen")] = "") -> str:
    """Book a table.

    Args:
        booking: when and for how many
            people
        note: ignored, Annotated wins
    """
    return f"booked {booking.day} for {booking.people}"


def test_the_schema_comes_from_the_signature_and_the_docstring() -> None:
    assert book.schema["function"]["name"] == "book"
    assert book.description == "Book a table."
    parameters = book.parameters
    assert parameters["required"] == ["booking"]
    assert parameters["additionalProperties"] is False
    assert parameters["properties"]["booking"]["description"] == "when and for how many people"
    assert parameters["properties"]["note"]["description"] == "for the kitchen"
    assert parameters["$defs"]["Booking"]["properties"]["people"]["minimum"] == 1
    assert "title" not in json.dumps(parameters)


async def test_arguments_are_validated_before_the_call() -> None:
    ok = await book.run('{"booking": {"day": "friday", "people": 2}}', None)
    assert (ok.content, ok.error) == ("booked friday for 2", False)
    bad = await book.run('{"booking": {"day": "friday", "people": 0}, "extra": 1}', None)
    assert bad.error
    assert "booking.people: Input should be greater than or equal to 1" in bad.content
    assert "extra: Extra inputs are not permitted" in bad.content
    not_json = await book.run("{nope", None)
    assert not_json.error
    assert "Invalid JSON" in not_json.content


async def test_sync_tools_run_in_a_thread_and_time_out() -> None:
    @tool(timeout=0.1)
    def slow(seconds: float) -> str:
        """Sleeps."""
        time.sleep(seconds)
        return "woke"

    async def other_work() -> str:
        await asyncio.sleep(0.01)
        return "not blocked"

    timed_out, other = await asyncio.gather(slow.run('{"seconds": 0.3}', None), other_work())
    assert timed_out.error
    assert timed_out.content == "Error: slow did not finish within 0.1 s"
    assert other == "not blocked"
    assert (await slow.run('{"seconds": 0}', None)).content == "woke"


async def test_what_a_tool_returns_becomes_data_and_actions() -> None:
    @tool
    def shape(kind: Literal["none", "dict", "action", "both", "object"]) -> object:
        """Returns one shape of result."""
        return {
            "none": None,
            "dict": {"open": True},
            "action": Hangup(),
            "both": ToolResult({"sent": 1}, [SendSms(phone_number="4915100000", message="hi")]),
            "object": object,
        }[kind]

    results = {
        kind: await shape.run(json.dumps({"kind": kind}), None) for kind in ("none", "dict", "action", "both")
    }
    assert results["none"].content == "Done."
    assert (results["dict"].content, results["dict"].actions) == ('{"open": true}', [])
    assert results["action"].content == "Done: hangup."
    assert [a.type for a in results["action"].actions] == ["hangup"]  # type: ignore[attr-defined]
    assert results["both"].content == '{"sent": 1}'
    assert [a.type for a in results["both"].actions] == ["send_sms"]  # type: ignore[attr-defined]
    assert (await shape.run('{"kind": "object"}', None)).content == "<class 'object'>"


def test_functions_that_cannot_be_tools_are_refused_with_the_reason() -> None:
    def no_doc(x: int) -> None:
        pass

    def untyped(x) -> None:  # type: ignore[no-untyped-def]
        """Doc."""

    def star(*names: str) -> None:
        """Doc."""

    with pytest.raises(ToolError, match="needs a docstring"):
        tool(no_doc)
    with pytest.raises(ToolError, match="parameter x has no type annotation"):
        tool(untyped)
    with pytest.raises(ToolError, match=r"\*names cannot be shown to the model"):
        tool(star)
    with pytest.raises(ToolError, match="must be 1-64 letters"):
        tool(name="has space")(book_function)
    with pytest.raises(ToolError, match="timeout must be a positive"):
        tool(timeout=0)(book_function)


def book_function(day: str) -> str:
    """Doc."""
    return day


def call(direction: Literal["inbound", "outbound"] = "inbound", caller: str = "4915100000") -> Call:
    session = SessionInfo(
        id="s",
        phone_number="4921100000",
        direction=direction,
        from_phone_number=caller,
        to_phone_number="4921100000",
    )
    return Call(session, {})


async def test_transfer_to_a_fixed_number_or_a_named_set() -> None:
    fixed = transfer("4921100200", timeout=20)
    assert fixed.parameters["properties"] == {}
    done = await fixed.run("", call())
    assert done.actions == [Transfer(target_phone_number="4921100200", timeout=20)]
    assert done.farewell
    named = transfer({"sales": "4921100200", "support": "4921100300"})
    assert named.parameters["properties"]["destination"]["enum"] == ["sales", "support"]
    support = await named.run('{"destination": "support"}', call())
    assert support.actions == [Transfer(target_phone_number="4921100300")]
    assert "support" in support.content
    wrong = await named.run('{"destination": "legal"}', call())
    assert wrong.error
    with pytest.raises(Exception, match="target_phone_number"):
        transfer("not a number")


async def test_hang_up_and_send_sms() -> None:
    ended = await hang_up(farewell="Bye!").run("{}", call())
    assert (ended.actions, ended.farewell) == ([Hangup()], "Bye!")
    sms = send_sms()
    sent = await sms.run('{"message": "Your table is booked."}', call())
    assert sent.actions == [SendSms(phone_number="4915100000", message="Your table is booked.")]
    outbound = await sms.run('{"message": "x"}', call(direction="outbound"))
    assert outbound.actions == [SendSms(phone_number="4921100000", message="x")]
    anonymous = await sms.run('{"message": "x"}', call(caller="anonymous"))
    assert (anonymous.actions, "number is unknown" in anonymous.content) == ([], True)
    fixed = await send_sms(to="4930111111").run('{"message": "x"}', call())
    assert fixed.actions == [SendSms(phone_number="4930111111", message="x")]
    assert (await sms.run('{"message": ""}', call())).error


@pytest.mark.parametrize(
    ("written", "spoken"),
    [
        ("**Opening hours:** Mon-Fri 9-17.", "Opening hours: Mon-Fri 9-17."),
        ("## Hours", "Hours"),
        ("- Monday: 9 to 5", "Monday: 9 to 5"),
        ("1. Open the app", "1. Open the app"),
        ("Am 3. Mai ist zu.", "Am 3. Mai ist zu."),
        ("See [our site](https://example.com) 😀 now!", "See our site now!"),
        ("We are open 👍🏽.", "We are open."),
        ("Use `code` here", "Use code here"),
        ("| Mon | 9-17 |", "Mon, 9-17"),
        ("|---|---|", ""),
        ("**Half of a bold sentence.", "Half of a bold sentence."),
        ("Press # and then *.", "Press # and then *."),
        ("x < 5 and <b>bold</b>", "x < 5 and bold"),
        ("snake_case stays", "snake_case stays"),
        ("🎉", ""),
    ],
)
def test_speakable_text_has_no_markdown_or_emoji(written: str, spoken: str) -> None:
    assert speakable(written) == spoken
