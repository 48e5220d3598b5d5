"""Protocol models: the constraints of the spec and decisions D2-D10, D14, D18."""

from __future__ import annotations

import json
from typing import Any

import pytest

from sipgate_ai_flow import (
    AssistantSpeak,
    Audio,
    AudioFormatError,
    BargeInConfig,
    ConfigureTranscription,
    ConfigureVoiceToVoice,
    DtmfReceived,
    Hangup,
    InvalidActionError,
    InvalidEventError,
    MixAudio,
    SendSms,
    SessionStart,
    SmsFailed,
    Speak,
    Transfer,
    TtsConfig,
    UnknownEvent,
    UserSpeak,
    VadConfig,
)
from sipgate_ai_flow.protocol import (
    check_wav,
    dump_actions,
    dump_event,
    event_json_schema,
    parse_action,
    parse_actions,
    parse_event,
)
from sipgate_ai_flow.protocol.session import SessionInfo
from tests.helpers import event, wav_b64, wav_bytes


def error_paths(
    exc: pytest.ExceptionInfo[InvalidActionError] | pytest.ExceptionInfo[InvalidEventError],
) -> list[str]:
    return [e.path for e in exc.value.errors]


# -- events -------------------------------------------------------------------------------------


def test_unknown_event_type_keeps_the_raw_payload() -> None:
    parsed = parse_event(event("call_recording_ready", url="https://x", nested={"a": [1, 2]}))
    assert isinstance(parsed, UnknownEvent)
    assert parsed.type == "call_recording_ready"
    assert parsed.raw["nested"] == {"a": [1, 2]}
    assert parsed.raw["url"] == "https://x"


def test_unknown_fields_on_known_events_are_kept() -> None:
    parsed = parse_event(event("user_speak", confidence=0.93))
    assert isinstance(parsed, UserSpeak)
    assert parsed.model_extra == {"confidence": 0.93}
    assert json.loads(dump_event(parsed))["confidence"] == 0.93


def test_missing_optional_session_fields_are_tolerated() -> None:
    parsed = parse_event({"type": "session_start", "session": {"id": "abc"}})
    assert isinstance(parsed, SessionStart)
    assert parsed.session.direction is None
    assert parsed.session.from_phone_number is None


@pytest.mark.parametrize(
    ("document", "path", "words"),
    [
        ({"session": {"id": "a"}}, "type", "missing"),
        ({"type": 7, "session": {"id": "a"}}, "type", "not a string"),
        ({"type": "user_speak", "text": "x", "session": {}}, "session.id", "required"),
        ({"type": "user_speak", "text": "x"}, "session", "required"),
        ({"type": "user_speak", "session": {"id": "a"}}, "text", "required"),
        ({"type": "dtmf_received", "digit": "12", "session": {"id": "a"}}, "digit", "pattern"),
        ({"type": "user_speak", "text": 5, "session": {"id": "a"}}, "text", "string"),
        ({"type": "session_start", "session": {"id": "a", "direction": 5}}, "session.direction", ""),
    ],
)
def test_bad_events_name_the_field(document: dict[str, Any], path: str, words: str) -> None:
    with pytest.raises(InvalidEventError) as info:
        parse_event(json.dumps(document))
    assert path in error_paths(info)
    assert words in str(info.value)


@pytest.mark.parametrize(
    ("raw", "words"),
    [(b"not json", "not valid JSON"), (b"[1, 2]", "expected a JSON object"), (b"\xff\xfe", "not valid JSON")],
)
def test_event_bytes_that_are_not_an_object(raw: bytes, words: str) -> None:
    with pytest.raises(InvalidEventError, match=words):
        parse_event(raw)


def test_legacy_transcript_field_is_used_when_text_is_missing() -> None:
    parsed = parse_event({"type": "user_speak", "transcript": "old style", "session": {"id": "a"}})
    assert isinstance(parsed, UserSpeak)
    assert parsed.text == "old style"
    assert parsed.barged_in is False


def test_an_unknown_direction_is_kept_and_known_ones_stay_typed() -> None:
    newer = parse_event({"type": "session_start", "session": {"id": "a", "direction": "sideways"}})
    assert newer.session.direction == "sideways"
    known = parse_event({"type": "session_start", "session": {"id": "a", "direction": "outbound"}})
    assert known.session.direction == "outbound"
    assert set(SessionInfo.model_json_schema()["properties"]["direction"]["anyOf"][0]["enum"]) == {
        "inbound",
        "outbound",
    }


def test_speech_started_at_is_any_number() -> None:
    parsed = parse_event(
        event("assistant_speak", text="hi", duration_ms=812.5, speech_started_at=1712345678901.25)
    )
    assert isinstance(parsed, AssistantSpeak)
    assert parsed.speech_started_at == 1712345678901.25
    assert json.loads(dump_event(parsed))["speech_started_at"] == 1712345678901.25


def test_sms_failed_reason_is_an_open_enum() -> None:
    known = parse_event(event("sms_failed", reason="insufficient_balance"))
    newer = parse_event(event("sms_failed", reason="carrier_blocked"))
    assert isinstance(known, SmsFailed)
    assert isinstance(newer, SmsFailed)
    assert newer.reason == "carrier_blocked"


def test_dtmf_digits() -> None:
    for digit in [*"0123456789", "*", "#"]:
        parsed = parse_event(event("dtmf_received", digit=digit))
        assert isinstance(parsed, DtmfReceived)
        assert parsed.digit == digit


def test_event_schema_lists_every_event() -> None:
    text = json.dumps(event_json_schema())
    for kind in [
        "session_start",
        "user_speech_started",
        "user_speak",
        "dtmf_received",
        "assistant_speak",
        "assistant_speech_ended",
        "user_input_timeout",
        "session_end",
        "sms_failed",
    ]:
        assert f'"{kind}"' in text


# -- actions ------------------------------------------------------------------------------------


def test_actions_can_be_built_without_session_id_and_leave_out_unset_fields() -> None:
    action = Speak(text="Hi")
    assert action.session_id is None
    assert json.loads(action.model_dump_json(exclude_none=True)) == {"type": "speak", "text": "Hi"}
    addressed = action.with_session("s1")
    assert addressed.session_id == "s1"
    assert Speak(text="Hi", session_id="other").with_session("s1").session_id == "other"


@pytest.mark.parametrize(
    ("build", "path", "words"),
    [
        (lambda: Speak(text="a", ssml="<speak/>"), "", "exactly one of 'text' and 'ssml'"),
        (Speak, "", "exactly one of 'text' and 'ssml'"),
        (lambda: Speak(text=""), "text", "at least 1 character"),
        (lambda: Speak(text="a", user_input_timeout_seconds=-1), "user_input_timeout_seconds", "greater"),
        (lambda: Speak(text="a", txt="typo"), "txt", "Extra inputs"),
        (lambda: Speak(text="a", tts={"provider": "azure", "voic": "x"}), "tts", "voic"),
        (
            lambda: Speak(text="a", barge_in={"strategy": "none", "minimum_characters": 3}),
            "barge_in",
            "only applies to strategy 'minimum_characters'",
        ),
        (
            lambda: Speak(text="a", barge_in={"strategy": "minimum_characters", "minimum_characters": 0}),
            "barge_in.minimum_characters",
            "greater than or equal to 1",
        ),
        (
            lambda: Speak(text="a", barge_in={"strategy": "immediate", "allow_after_ms": 10_001}),
            "barge_in.allow_after_ms",
            "less than or equal to 10000",
        ),
        (lambda: Speak(text="a", vad={"end_of_turn_silence_ms": 0}), "vad.end_of_turn_silence_ms", "greater"),
        (
            lambda: Transfer(target_phone_number="4921100200", timeout=4),
            "timeout",
            "greater than or equal to 5",
        ),
        (
            lambda: Transfer(target_phone_number="4921100200", timeout=121),
            "timeout",
            "less than or equal to 120",
        ),
        (lambda: Transfer(target_phone_number="call me"), "target_phone_number", "pattern"),
        (Transfer, "target_phone_number", "required"),
        (MixAudio, "", "'audio' is required unless 'stop' is true"),
        (lambda: MixAudio(stop=True, volume=1.5), "volume", "less than or equal to 1"),
        (lambda: ConfigureTranscription(languages=[]), "languages", "at least 1"),
        (lambda: ConfigureTranscription(languages=["de-DE"] * 5), "languages", "at most 4"),
        (
            lambda: ConfigureTranscription(custom_vocabulary=["x" * 201]),
            "custom_vocabulary[0]",
            "at most 200",
        ),
        (lambda: ConfigureTranscription(custom_vocabulary=["x"] * 101), "custom_vocabulary", "at most 100"),
        (lambda: ConfigureTranscription(provider="azure"), "provider", "AZURE"),
        (
            lambda: ConfigureVoiceToVoice(system_prompt="x", temperature=2.5),
            "temperature",
            "less than or equal",
        ),
        (ConfigureVoiceToVoice, "system_prompt", "required"),
        (lambda: SendSms(phone_number="+4915112345678", message=""), "message", "at least 1"),
        (lambda: Hangup(session_id=""), "session_id", "at least 1"),
    ],
)
def test_invalid_actions_fail_at_construction_naming_the_field(build: Any, path: str, words: str) -> None:
    with pytest.raises(InvalidActionError) as info:
        build()
    assert path in error_paths(info), info.value
    assert words in str(info.value)
    assert isinstance(info.value, ValueError)  # catchable as a plain ValueError too


def test_transfer_accepts_the_transfer_to_alias_and_both_number_forms() -> None:
    alias = Transfer(transfer_to="+49211100200")
    assert alias.target_phone_number == "+49211100200"  # D7: never rewritten
    assert "transfer_to" not in alias.model_dump_json()
    assert Transfer(target_phone_number="4921100200").target_phone_number == "4921100200"


def test_barge_in_strategies_known_and_newer() -> None:
    for strategy in ["none", "manual", "immediate"]:
        assert BargeInConfig(strategy=strategy, allow_after_ms=500).strategy == strategy
    assert BargeInConfig(strategy="minimum_characters", minimum_characters=100).minimum_characters == 100
    assert BargeInConfig(strategy="semantic").strategy == "semantic"  # D8: newer services


def test_tts_known_and_other_providers() -> None:
    assert TtsConfig(provider="eleven_labs", voice="21m00Tcm4TlvDq8ikWAM").voice == "21m00Tcm4TlvDq8ikWAM"
    other = TtsConfig(provider="kugelaudio", speaker="anna")
    assert other.model_extra == {"speaker": "anna"}


def test_vad_config_round_trip() -> None:
    assert Speak(text="x", vad=VadConfig(end_of_turn_silence_ms=800)).vad == VadConfig(
        end_of_turn_silence_ms=800
    )


def test_parse_actions_paths_point_into_the_array() -> None:
    with pytest.raises(InvalidActionError) as info:
        parse_actions('[{"type": "hangup"}, {"type": "speak", "text": "x", "tts": {"voice": "v"}}]')
    assert error_paths(info) == ["[1].tts.provider"]


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        ('{"type": "dance", "session_id": "s"}', "unknown action type 'dance'"),
        ('{"session_id": "s"}', "missing or not a string"),
        ('"speak"', "expected an action object or an array"),
        ("{", "not valid JSON"),
    ],
)
def test_bad_action_documents(raw: str, words: str) -> None:
    with pytest.raises(InvalidActionError, match=words):
        parse_actions(raw)


def test_parse_action_single() -> None:
    action = parse_action({"type": "barge_in", "session_id": "s"})
    assert action.type == "barge_in"


def test_dump_actions_forms() -> None:
    assert dump_actions([]) is None
    one = dump_actions([Hangup(session_id="s")])
    assert one is not None
    assert json.loads(one) == {"type": "hangup", "session_id": "s"}
    many = dump_actions([Hangup(session_id="s"), Speak(text="x", session_id="s")])
    assert many is not None
    assert [a["type"] for a in json.loads(many)] == ["hangup", "speak"]


def test_numbers_keep_their_json_form() -> None:
    encoded = dump_actions([Speak(text="x", session_id="s", user_input_timeout_seconds=5)])
    assert encoded is not None
    assert b'"user_input_timeout_seconds":5' in encoded
    encoded = dump_actions([Speak(text="x", session_id="s", user_input_timeout_seconds=2.5)])
    assert encoded is not None
    assert b'"user_input_timeout_seconds":2.5' in encoded


# -- audio (D6) ---------------------------------------------------------------------------------


def test_audio_accepts_16khz_mono_16bit() -> None:
    assert Audio(audio=wav_b64()).audio
    info = check_wav(wav_bytes(frames=8000))
    assert (info.sample_rate, info.channels, info.sample_width, info.duration_ms) == (16_000, 1, 2, 500.0)
    assert MixAudio(audio=wav_b64(), volume=0.3).volume == 0.3


@pytest.mark.parametrize(
    ("fmt", "words"),
    [
        ({"rate": 8000}, "sample rate 8000 Hz"),
        ({"channels": 2}, "2 channels, needs mono"),
        ({"width": 1}, "8-bit samples, needs 16-bit"),
        ({"rate": 44_100, "channels": 2, "width": 3}, "sample rate 44100 Hz, needs 16000, 2 channels"),
    ],
)
def test_audio_in_other_formats_is_rejected(fmt: dict[str, int], words: str) -> None:
    with pytest.raises(InvalidActionError, match=words) as info:
        Audio(audio=wav_b64(**fmt))
    assert error_paths(info) == ["audio"]
    with pytest.raises(AudioFormatError, match=words):
        check_wav(wav_bytes(**fmt))


def test_audio_that_is_not_wav() -> None:
    with pytest.raises(AudioFormatError, match="not a PCM WAV"):
        check_wav(b"ID3\x04not a wav at all")
    with pytest.raises(InvalidActionError, match="not a PCM WAV"):
        MixAudio(audio="aGVsbG8=")
