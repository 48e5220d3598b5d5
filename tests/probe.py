"""An assistant for testing the emulator: the caller's words choose what it answers."""

from __future__ import annotations

import base64

from sipgate_ai_flow import (
    Action,
    Assistant,
    Audio,
    BargeIn,
    BargeInConfig,
    Call,
    ConfigureTranscription,
    ConfigureVoiceToVoice,
    DtmfReceived,
    Hangup,
    MixAudio,
    SendSms,
    SessionStart,
    SmsFailed,
    Speak,
    Transfer,
    UserSpeak,
)
from tests.helpers import wav_bytes

AGENT = "4921100200"
LONG = "This is a long announcement that goes on for quite a while so that there is time to talk over it."
ONE_SECOND_WAV = base64.b64encode(wav_bytes(frames=16_000)).decode()
BARGE_IN = {
    "none": BargeInConfig(strategy="none"),
    "manual": BargeInConfig(strategy="manual"),
    "immediate": BargeInConfig(strategy="immediate"),
    "min5": BargeInConfig(strategy="minimum_characters", minimum_characters=5),
    "protected": BargeInConfig(strategy="immediate", allow_after_ms=2000),
}


def reply(text: str) -> Action | list[Action] | str:
    command, _, rest = text.partition(" ")
    if command == "barge":
        return Speak(text=LONG, barge_in=BARGE_IN[rest]) if rest != "default" else Speak(text=LONG)
    simple: dict[str, Action | list[Action] | str] = {
        "timeout": Speak(text="Anything else?", user_input_timeout_seconds=3),
        "queue": [Speak(text="one"), Speak(text="two")],
        "stop": [BargeIn(), Speak(text="stopped")],
        "hangup": [Speak(text="bye now"), Hangup()],
        "transfer": Transfer(target_phone_number=AGENT, timeout=10),
        "blind": Transfer(target_phone_number=AGENT),
        "sms": SendSms(phone_number="4915100000", message="hello by text"),
        "settings": [
            MixAudio(audio=ONE_SECOND_WAV, volume=0.2),
            ConfigureTranscription(languages=["de-DE"]),
            ConfigureVoiceToVoice(system_prompt="Be brief."),
        ],
        "unmix": MixAudio(stop=True),
        "audio": Audio(audio=ONE_SECOND_WAV),
        "ssml": Speak(ssml='<speak>Hello <break time="2s"/> big &amp; wide world</speak>'),
        "silent": "",
    }
    return simple.get(command, f"you said {text}")


def make_probe() -> Assistant:
    """A fresh probe assistant (no state shared between tests)."""
    assistant = Assistant()

    @assistant.on_session_start
    async def start(event: SessionStart, call: Call) -> str:
        return "welcome back" if call.is_return else "Hello, this is the probe."

    @assistant.on_user_speak
    async def speak(event: UserSpeak) -> Action | list[Action] | str:
        return reply(event.text)

    @assistant.on_dtmf_received
    async def keypad(event: DtmfReceived) -> str:
        return f"key {event.digit}"

    @assistant.on_user_input_timeout
    async def timeout(event: object) -> str:
        return "still there?"

    @assistant.on_sms_failed
    async def sms_failed(event: SmsFailed) -> str:
        return f"sms failed {event.reason}"

    return assistant
