"""Dr. Example's practice books appointments by phone: keypad entry, SSML, SMS and a call-back.

The caller types the day and month of the visit as four digits (2411 for 24 November) or says
them; the assistant offers the first free time that day, 1 books it, 2 picks another day. The
booking is confirmed by SMS. Pressing * at any point asks for a call-back: the assistant hangs up
and, once the line is free, has AI Flow call the caller back (an outbound call).

    aiflow serve examples/appointments.py:assistant

The call-back needs the outbound-call API: set AIFLOW_API_TOKEN, AIFLOW_FLOW_ID and
AIFLOW_BILLING_DEVICE (and AIFLOW_API_URL to use another API, such as the emulated one).
"""

from __future__ import annotations

import logging
import os
from datetime import date

from sipgate_ai_flow import (
    Action,
    ApiError,
    Assistant,
    Call,
    DigitCollector,
    DtmfReceived,
    Hangup,
    SendSms,
    SessionEnd,
    SessionStart,
    SmsFailed,
    Speak,
    UserInputTimeout,
    UserSpeak,
    ssml,
)

log = logging.getLogger("appointments")

PRACTICE = [ssml.sub("Dr.", "Doctor"), " Example's practice"]
SLOTS = ("09:00", "10:30", "14:00", "16:30")
CALL_BACK_KEY = "*"

assistant = Assistant(token=os.environ.get("AIFLOW_TOKEN"))


class Calendar:
    """The practice's bookings, in memory (a real one would ask the practice software)."""

    def __init__(self) -> None:
        self.booked: set[tuple[str, str]] = set()

    def first_free(self, day: str) -> str | None:
        return next((slot for slot in SLOTS if (day, slot) not in self.booked), None)

    def book(self, day: str, slot: str) -> None:
        self.booked.add((day, slot))


calendar = Calendar()


def say(*content: ssml.Content) -> Speak:
    return Speak(ssml=ssml.speak(*content, lang="en-US"))


def check_day(digits: str) -> str | None:
    """Four digits, DDMM, naming a day that exists (29 February included)."""
    day, month = int(digits[:2]), int(digits[2:])
    try:
        date(2000, month, day)  # a leap year: 2902 is a real day in some years
    except ValueError:
        return f"{digits[:2]} {digits[2:]} is not a date I know."
    return None


day_entry = DigitCollector(
    "day",
    prompt=say(
        "Please type the day and month of your visit as four digits, for example ",
        ssml.say_as("2411", "digits"),
        " for the 24th of November. Press star for a call-back.",
    ),
    max_digits=4,
    terminator=None,
    clear_key=None,
    validate=check_day,
    retry="Sorry, I did not get a date.",
    give_up="I could not get a date. Please call again later. Goodbye.",
)
choice = DigitCollector(
    "choice",
    prompt="Press 1 to book it, or 2 for another day.",
    max_digits=1,
    terminator=None,
    clear_key=None,
    validate=lambda digit: None if digit in "12" else "Please press 1 or 2.",
    give_up="I did not get your choice. Please call again later. Goodbye.",
)


def caller_number(call: Call) -> str | None:
    session = call.session
    return session.to_phone_number if session.direction == "outbound" else session.from_phone_number


def as_date(day: str) -> ssml.Node:
    return ssml.say_as(f"{day[:2]}.{day[2:]}.", "date", format="dm")


def offer(day: str, call: Call) -> list[Action]:
    slot = calendar.first_free(day)
    if slot is None:
        return [say("Sorry, ", as_date(day), " is fully booked."), *day_entry.start(call)]
    call.state.update(day=day, slot=slot)
    return [
        say("The first free time on ", as_date(day), " is ", ssml.say_as(slot, "time"), ".", ssml.pause(300)),
        *choice.start(call),
    ]


def book(call: Call) -> list[Action]:
    day, slot = call.state["day"], call.state["slot"]
    calendar.book(day, slot)
    actions: list[Action] = []
    number = caller_number(call)
    if number:
        text = f"Dr. Example: your appointment on {day[:2]}.{day[2:]}. at {slot} is booked."
        actions.append(SendSms(phone_number=number, message=text))
    actions += [
        say(
            "You are booked for ",
            as_date(day),
            " at ",
            ssml.say_as(slot, "time"),
            ". ",
            "We sent you a text message. " if number else "",
            ssml.prosody("Goodbye!", rate="slow"),
        ),
        Hangup(),
    ]
    return actions


def call_back(call: Call) -> list[Action]:
    day_entry.cancel(call)
    choice.cancel(call)
    if not caller_number(call):
        return [say("I cannot see your number, so I cannot call you back."), *day_entry.start(call)]
    call.state["call_back"] = True
    return [say("We will call you back in a moment. Goodbye."), Hangup()]


@assistant.on_session_start
async def start(event: SessionStart, call: Call) -> list[Action]:
    if event.session.direction == "outbound":
        greeting = say("Hello, this is ", *PRACTICE, " calling you back, as you asked.")
    else:
        greeting = say("Welcome to ", *PRACTICE, ".")
    return [greeting, *day_entry.start(call)]


@assistant.on_dtmf_received
async def key(event: DtmfReceived, call: Call) -> list[Action]:
    if event.digit == CALL_BACK_KEY:
        return call_back(call)
    return entry(event, call)


@assistant.on_user_input_timeout
async def silence(event: UserInputTimeout, call: Call) -> list[Action]:
    return entry(event, call)


@assistant.on_user_speak
async def speech(event: UserSpeak, call: Call) -> list[Action]:
    if "call" in event.text.lower() and "back" in event.text.lower():
        return call_back(call)
    return entry(event, call)


def entry(event: DtmfReceived | UserInputTimeout | UserSpeak, call: Call) -> list[Action]:
    """Hand the event to whichever entry is running and act on what it got."""
    for collector in (day_entry, choice):
        result = collector.feed(event, call)
        if result.status == "inactive":
            continue
        if result.status == "gave_up":
            return [*result.reply, Hangup()]
        if not result.complete:
            return result.reply
        if collector is day_entry:
            return offer(result.digits, call)
        return book(call) if result.digits == "1" else day_entry.start(call)
    return [say("Please use your keypad, or press star for a call-back."), *day_entry.start(call)]


@assistant.on_sms_failed
async def sms_failed(event: SmsFailed) -> None:
    log.warning("the confirmation SMS for call %s failed: %s", event.session.id, event.reason)


@assistant.on_session_end
async def ended(event: SessionEnd, call: Call) -> None:
    number = caller_number(call)
    if call.state.get("call_back") and number:
        try:
            await assistant.dial(number)
        except (ApiError, ValueError) as exc:
            log.warning("the call-back for call %s failed: %s", call.id, exc)
