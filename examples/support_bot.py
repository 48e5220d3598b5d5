"""A small IVR for "Example Corp" that uses every kind of handler.

Press 1 (or ask for an agent) to be transferred, 2 (or ask for a text) to get an SMS
confirmation, 3 (or say goodbye) to hang up. Silence is re-prompted; after three silent prompts
the bot says goodbye and hangs up.

    aiflow serve examples/support_bot.py:assistant
"""

import logging
import os

from sipgate_ai_flow import (
    Assistant,
    AssistantSpeak,
    BargeInConfig,
    Call,
    DtmfReceived,
    Event,
    Hangup,
    SendSms,
    SessionEnd,
    SessionStart,
    SmsFailed,
    Speak,
    Transfer,
    UserInputTimeout,
    UserSpeak,
)

log = logging.getLogger("support_bot")

AGENT_NUMBER = os.environ.get("SUPPORT_AGENT_NUMBER", "4921100200")
SILENCE_SECONDS = 6
MAX_SILENT_PROMPTS = 3
MENU = (
    "Press 1 or say agent to talk to a person, 2 or say text for an SMS confirmation, "
    "3 or say goodbye to end the call."
)

assistant = Assistant(
    token=os.environ.get("AIFLOW_TOKEN"),
    fallback="Sorry, I had a problem just now. " + MENU,
)


def prompt(text: str) -> Speak:
    """Say ``text``, let the caller interrupt after the first half second, and wait for an answer."""
    return Speak(
        text=text,
        barge_in=BargeInConfig(strategy="minimum_characters", minimum_characters=3, allow_after_ms=500),
        user_input_timeout_seconds=SILENCE_SECONDS,
    )


def goodbye() -> list[Speak | Hangup]:
    return [Speak(text="Thank you for calling Example Corp. Goodbye!"), Hangup()]


def transfer_to_agent() -> list[Speak | Transfer]:
    # With a timeout the call comes back (a new session_start) if nobody answers.
    return [
        Speak(text="Connecting you to an agent."),
        Transfer(target_phone_number=AGENT_NUMBER, caller_id_name="Example Corp Hotline", timeout=30),
    ]


def send_confirmation(call: Call) -> list[SendSms | Speak]:
    number = call.session.from_phone_number
    if not number:
        return [prompt("I cannot see your number, so I cannot text you. " + MENU)]
    call.state["sms_to"] = number
    return [
        SendSms(phone_number=number, message="Example Corp: your request has been received."),
        prompt("I have sent you a text message. Anything else? " + MENU),
    ]


def choose(choice: str, call: Call) -> list[Speak | Hangup | Transfer | SendSms]:
    call.state["silent_prompts"] = 0
    if choice == "agent":
        return [*transfer_to_agent()]
    if choice == "sms":
        return [*send_confirmation(call)]
    if choice == "bye":
        return [*goodbye()]
    return [prompt("Sorry, I did not get that. " + MENU)]


@assistant.on_session_start
async def start(event: SessionStart, call: Call) -> Speak:
    if call.is_return:
        return prompt("Sorry, nobody is free right now. " + MENU)
    call.state.update(silent_prompts=0, spoken_ms=0)
    return prompt("Welcome to Example Corp. " + MENU)


@assistant.on_user_speech_started
async def speech_started(event: Event) -> None:
    log.debug("caller started speaking in %s", event.session.id)


@assistant.on_user_speak
async def speak(event: UserSpeak, call: Call) -> list[Speak | Hangup | Transfer | SendSms]:
    text = event.text.lower()
    if "agent" in text or "person" in text:
        return choose("agent", call)
    if "text" in text or "sms" in text:
        return choose("sms", call)
    if "bye" in text:
        return choose("bye", call)
    return choose("unknown", call)


@assistant.on_user_barge_in
async def barge_in(event: UserSpeak, call: Call) -> list[Speak | Hangup | Transfer | SendSms]:
    call.state["interruptions"] = call.state.get("interruptions", 0) + 1
    return await speak(event, call)


@assistant.on_dtmf_received
async def keypad(event: DtmfReceived, call: Call) -> list[Speak | Hangup | Transfer | SendSms]:
    return choose({"1": "agent", "2": "sms", "3": "bye"}.get(event.digit, "unknown"), call)


@assistant.on_user_input_timeout
async def silence(event: UserInputTimeout, call: Call) -> list[Speak | Hangup]:
    count = call.state.get("silent_prompts", 0) + 1
    call.state["silent_prompts"] = count
    if count >= MAX_SILENT_PROMPTS:
        return goodbye()
    return [prompt(f"Are you still there? {MENU}")]


@assistant.on_sms_failed
async def sms_failed(event: SmsFailed, call: Call) -> Speak:
    call.state.pop("sms_to", None)
    if event.reason == "insufficient_balance":
        return prompt("Sorry, I could not send the text message right now. " + MENU)
    return prompt("Sorry, the text message could not be delivered. " + MENU)


@assistant.on_assistant_speak
async def spoke(event: AssistantSpeak, call: Call) -> None:
    call.state["spoken_ms"] = call.state.get("spoken_ms", 0) + event.duration_ms


@assistant.on_assistant_speech_ended
async def speech_ended(event: Event, call: Call) -> None:
    call.state["prompts_played"] = call.state.get("prompts_played", 0) + 1


@assistant.on_session_end
async def ended(event: SessionEnd, call: Call) -> None:
    log.debug("call %s ended after %s ms of speech", call.id, call.state.get("spoken_ms", 0))


@assistant.on_event
async def other(event: Event) -> None:
    log.info("ignoring an event of type %s", event.type)
