"""DigitCollector through the emulator: entries end at N digits, at '#', or at a pause; silence,
short and refused entries are re-prompted; the caller hears the give-up after the last attempt."""

from __future__ import annotations

from typing import Any

import pytest

from sipgate_ai_flow import (
    Assistant,
    Call,
    DigitCollector,
    DtmfReceived,
    Event,
    Hangup,
    UserInputTimeout,
    UserSpeak,
)
from sipgate_ai_flow.testing import EmulatedCall, Emulator


def ivr(collector: DigitCollector, results: list[Any]) -> Assistant:
    """Asks for an entry at the start and says what it got."""
    assistant = Assistant()

    @assistant.on_session_start
    async def start(event: Event, call: Call) -> Any:
        return collector.start(call)

    async def feed(event: DtmfReceived | UserInputTimeout | UserSpeak, call: Call) -> Any:
        result = collector.feed(event, call)
        results.append(result)
        if result.complete:
            return f"You entered {' '.join(result.digits)}."
        if result.status == "gave_up":
            return [*result.reply, Hangup()]
        if result.status == "inactive":
            return "The entry is over."
        return result.reply

    assistant.add_handler("on_dtmf_received", feed)
    assistant.add_handler("on_user_input_timeout", feed)
    assistant.add_handler("on_user_speak", feed)
    return assistant


async def place(collector: DigitCollector) -> tuple[EmulatedCall, list[Any]]:
    results: list[Any] = []
    call = Emulator(ivr(collector, results), strict=True).call()
    await call.start()
    return call, results


PIN = {"prompt": "Please type your four digit PIN.", "max_digits": 4}


async def test_an_entry_ends_at_max_digits() -> None:
    call, results = await place(DigitCollector(**PIN))
    await call.press("2411")
    await call.listen()
    assert call.said == ["Please type your four digit PIN.", "You entered 2 4 1 1."]
    assert [r.status for r in results] == ["collecting"] * 3 + ["complete"]
    assert results[-1].digits == "2411"
    assert call.violations == []


async def test_an_entry_ends_at_the_terminator_and_star_starts_over() -> None:
    call, results = await place(DigitCollector(prompt="Your customer number, then hash."))
    await call.press("98*12345#")
    assert call.last_said == "You entered 1 2 3 4 5."
    assert results[-1].attempt == 1


async def test_a_pause_after_enough_digits_ends_the_entry() -> None:
    collector = DigitCollector(prompt="Your extension, please.", inter_digit_timeout=3)
    call, _ = await place(collector)
    await call.press("12")
    await call.silence(2.9)  # not yet: the wait for the next key is 3 s
    assert call.last_said == ""
    await call.silence(1)
    assert call.last_said == "You entered 1 2."
    timeouts = [e for e in call.events if e["type"] == "user_input_timeout"]
    assert len(timeouts) == 1


async def test_a_pause_before_enough_digits_re_prompts() -> None:
    call, results = await place(DigitCollector(**PIN, inter_digit_timeout=2))
    await call.press("24")
    await call.silence(3)
    assert call.last_said == "Sorry, I did not get that. Please type your four digit PIN."
    assert (results[-1].status, results[-1].reason, results[-1].attempt) == ("retry", "too few digits", 2)
    await call.press("2411")
    assert call.last_said == "You entered 2 4 1 1."
    assert results[-1].attempt == 2


async def test_silence_is_re_prompted_then_given_up() -> None:
    collector = DigitCollector(**PIN, first_digit_timeout=5, attempts=2, give_up="Let us try another time.")
    call, results = await place(collector)
    await call.silence(5)
    assert call.last_said == "Sorry, I did not get that. Please type your four digit PIN."
    assert results[-1].reason == "nothing typed"
    await call.silence(5)
    await call.listen()
    assert call.last_said == "Let us try another time."
    assert (results[-1].status, call.end_reason) == ("gave_up", "assistant_hangup")


async def test_the_first_wait_is_not_cut_short() -> None:
    call, _ = await place(DigitCollector(**PIN, first_digit_timeout=6))
    await call.silence(5.9)
    assert call.last_said == ""


async def test_validate_refusals_are_said_and_count_as_an_attempt() -> None:
    def valid_month(digits: str) -> str | None:
        return None if 1 <= int(digits) <= 12 else f"There is no month {int(digits)}."

    call, results = await place(DigitCollector(prompt="Which month?", max_digits=2, validate=valid_month))
    await call.press("13")
    assert call.last_said == "There is no month 13. Which month?"
    assert results[-1].attempt == 2
    await call.press("07")
    assert call.last_said == "You entered 0 7."


async def test_digits_said_aloud_count_as_an_entry() -> None:
    call, _ = await place(DigitCollector(**PIN))
    await call.say("it is 2 4 1 1")
    assert call.last_said == "You entered 2 4 1 1."
    await call.say("hello again")
    assert call.last_said == "The entry is over."


async def test_speech_without_digits_is_a_failed_attempt() -> None:
    call, results = await place(DigitCollector(**PIN))
    await call.say("I do not know it")
    assert results[-1].reason == "no digits in what was said"
    assert call.last_said.startswith("Sorry, I did not get that.")


async def test_the_first_key_stops_the_prompt() -> None:
    call, _ = await place(DigitCollector(**PIN))
    await call.press("2", at_ms=500)  # the prompt takes longer than that to say
    await call.press("411")
    assert call.played[0].interrupted
    assert call.last_said == "You entered 2 4 1 1."


async def test_the_collector_keeps_its_state_per_call() -> None:
    results: list[Any] = []
    emulator = Emulator(ivr(DigitCollector(**PIN), results), strict=True)
    async with emulator.call() as first, emulator.call() as second:
        await first.press("12")
        await second.press("9876")
        await first.press("34")
    assert second.said[-1] == "You entered 9 8 7 6."
    assert first.said[-1] == "You entered 1 2 3 4."


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"terminator": "1"}, "terminator must be one of the keys"),
        ({"clear_key": "##"}, "clear_key must be one of the keys"),
        ({"clear_key": "#"}, "must be different keys"),
        ({"max_digits": 0}, "max_digits must be 1 or more"),
        ({"max_digits": 4, "min_digits": 5}, "min_digits must be between 1 and max_digits"),
        ({"terminator": None}, "set max_digits, a terminator, or both"),
        ({"inter_digit_timeout": 0}, "timeouts must be more than 0"),
        ({"attempts": 0}, "attempts 1 or more"),
    ],
)
def test_impossible_settings_are_refused(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        DigitCollector(prompt="x", **options)
