"""The emulator follows the service model, the same way in-process, over HTTP and over WebSocket."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from sipgate_ai_flow import Assistant, SessionStart
from sipgate_ai_flow.testing import EmulatedCall, Emulator, EmulatorError, strip_ssml
from sipgate_ai_flow.testing.speech import playback_ms
from tests.helpers import running_server
from tests.probe import AGENT, LONG, make_probe

PATHS = ["inprocess", "http", "ws"]
Make = Callable[..., Emulator]


@pytest.fixture(params=PATHS)
def path(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def emulator(path: str) -> Iterator[Make]:
    """A factory: Emulator(**options) for a fresh probe assistant, reached the way ``path`` says."""
    assistant = make_probe()
    if path == "inprocess":
        yield lambda **options: Emulator(assistant, **options)
        return
    with running_server(assistant) as address:
        url = f"http://{address}/webhook" if path == "http" else f"ws://{address}/ws"
        yield lambda **options: Emulator(url, reply_window=0.03, **options)


def types(call: EmulatedCall, since: int = 0) -> list[str]:
    return [e["type"] for e in call.events[since:] if e["type"] != "user_speech_started"]


def of_type(call: EmulatedCall, kind: str) -> list[dict[str, Any]]:
    return [e for e in call.events if e["type"] == kind]


async def test_a_call_starts_and_ends(emulator: Make) -> None:
    call = emulator().call(direction="outbound", to_number="4915799999999", session_id="call-1")
    async with call:
        assert call.last_said == "Hello, this is the probe."
    first, last = call.events[0], call.events[-1]
    assert first["type"] == "session_start"
    assert first["session"]["id"] == "call-1"
    assert first["session"]["direction"] == "outbound"
    assert first["session"]["to_phone_number"] == "4915799999999"
    assert first["session"]["from_phone_number"] == "4921100000"
    assert last["type"] == "session_end"
    assert call.end_reason == "caller_hangup"
    assert call.violations == []


async def test_speech_is_announced_and_takes_its_time(emulator: Make) -> None:
    async with emulator(words_per_minute=120).call() as call:
        spoken = of_type(call, "assistant_speak")[0]
        assert spoken["text"] == "Hello, this is the probe."
        assert spoken["duration_ms"] == 2500  # 5 words at 120 words per minute
        started = spoken["speech_started_at"]
        await call.listen()
        assert types(call) == ["session_start", "assistant_speak", "assistant_speech_ended"]
        assert call.elapsed_ms == pytest.approx(2500, abs=50)
        assert call.clock.now() - started == pytest.approx(2500, abs=50)


async def test_ssml_is_timed_without_tags_and_with_breaks(emulator: Make) -> None:
    async with emulator(words_per_minute=60).call() as call:
        await call.say("ssml")
        spoken = of_type(call, "assistant_speak")[-1]
        assert "<break" in spoken["ssml"]
        assert "text" not in spoken
        assert call.last_said == "Hello big & wide world"
        assert spoken["duration_ms"] == 4000 + 2000  # 4 words at one per second, 2 s break


@pytest.mark.serial  # its answers must come within a time a busy machine can miss
async def test_audio_lasts_as_long_as_the_wav(emulator: Make) -> None:
    async with emulator().call() as call:
        await call.say("audio")
        spoken = of_type(call, "assistant_speak")[-1]
        assert spoken["duration_ms"] == 1000
        assert "text" not in spoken


async def test_queued_speech_plays_in_order(emulator: Make) -> None:
    async with emulator().call() as call:
        await call.say("queue")
        since = len(call.events) - 1
        await call.listen()
        spoken = [e.get("text") for e in of_type(call, "assistant_speak")]
        assert spoken[-2:] == ["one", "two"]
        assert types(call, since) == [
            "assistant_speak",
            "assistant_speech_ended",
            "assistant_speak",
            "assistant_speech_ended",
        ]


async def test_user_input_timeout_counts_from_the_end_of_playback(emulator: Make) -> None:
    async with emulator().call() as call:
        await call.say("timeout")
        await call.silence(2.9)
        assert of_type(call, "user_input_timeout") == []
        await call.silence(0.2)
        assert len(of_type(call, "user_input_timeout")) == 1
        assert call.last_said == "still there?"
        await call.silence(10)  # fires once per speak that asks for it
        assert len(of_type(call, "user_input_timeout")) == 1


async def test_caller_input_cancels_the_timeout(emulator: Make) -> None:
    async with emulator().call() as call:
        await call.say("timeout")
        await call.press("5")
        await call.silence(10)
        assert of_type(call, "user_input_timeout") == []


@pytest.mark.parametrize(
    ("config", "words", "after_ms", "interrupts"),
    [
        ("none", "please be quiet", 1000, False),
        ("manual", "please be quiet", 1000, False),
        ("immediate", "hm", 0, True),
        ("min5", "hey", 1000, False),
        ("min5", "hello there", 1000, True),
        ("protected", "hello there", 500, False),
        ("protected", "hello there", 2500, True),
        ("default", "no", 100, False),
        ("default", "yes", 100, True),
    ],
)
@pytest.mark.serial  # its answers must come within a time a busy machine can miss
async def test_barge_in_follows_the_config_of_what_plays(
    emulator: Make, config: str, words: str, after_ms: int, interrupts: bool
) -> None:
    async with emulator().call() as call:
        await call.say(f"barge {config}")
        playing = call.playing
        assert playing is not None
        assert playing.text == LONG
        await call.interrupt(words, after_ms=after_ms)
        speak = of_type(call, "user_speak")[-1]
        assert speak["text"] == words
        assert speak["barged_in"] is interrupts
        assert playing.interrupted is interrupts
        assert (call.playing is playing) is not interrupts
        if interrupts:
            # The interrupted speech never "ends"; what the reply says plays instead.
            assert call.playing is not None
            assert call.playing.text == f"you said {words}"


async def test_a_barge_in_action_stops_playback(emulator: Make) -> None:
    async with emulator().call() as call:
        await call.say("barge manual")
        long = call.playing
        await call.interrupt("stop", after_ms=1000)  # manual: only the assistant's barge_in stops it
        assert of_type(call, "user_speak")[-1]["barged_in"] is False
        assert long is not None
        assert long.interrupted
        assert call.playing is not None
        assert call.playing.text == "stopped"


async def test_user_speech_started_precedes_user_speak_only_over_websocket(emulator: Make, path: str) -> None:
    async with emulator().call() as call:
        await call.say("first")
        await call.interrupt("second thing", after_ms=100)
        await call.say("third")
    kinds = [e["type"] for e in call.events if e["type"] in ("user_speech_started", "user_speak")]
    if path == "ws":
        assert kinds == ["user_speech_started", "user_speak"] * 3
    else:
        assert kinds == ["user_speak"] * 3
    assert call.violations == []


async def test_a_greeting_that_arrives_as_the_caller_starts_speaking_is_played() -> None:
    """Over a WebSocket nothing ties a message to the event just sent: a greeting slower than the
    reply window, arriving after user_speech_started went out, plays like any other message."""
    assistant = Assistant()

    @assistant.on_session_start
    async def greet(event: SessionStart) -> str:
        await asyncio.sleep(0.1)
        return "Hello."

    assistant.on_user_speak(lambda event: f"You said {event.text}.")
    with running_server(assistant) as address:
        async with Emulator(f"ws://{address}/ws", reply_window=0.06).call() as call:
            assert call.said == []  # the greeting is not there yet
            await call.say("hi")  # user_speech_started waits 60 ms: the greeting comes then
            await call.listen(1.0)
    assert call.said == ["Hello.", "You said hi."]
    assert call.violations == []


async def test_each_key_is_one_dtmf_event(emulator: Make) -> None:
    async with emulator().call() as call:
        await call.press("12#")
        assert [e["digit"] for e in of_type(call, "dtmf_received")] == ["1", "2", "#"]
        assert call.last_said == "key 1 key 2 key #"


async def test_hangup_plays_the_goodbye_first(emulator: Make) -> None:
    async with emulator().call() as call:
        await call.say("hangup")
        assert call.hung_up
        assert not call.ended  # "bye now" is still playing
        await call.listen()
        assert call.ended
        assert call.end_reason == "assistant_hangup"
        assert types(call)[-3:] == ["assistant_speak", "assistant_speech_ended", "session_end"]
        with pytest.raises(EmulatorError, match="has ended"):
            await call.say("anyone there?")


async def test_an_answered_transfer_ends_the_call_without_more_events(emulator: Make) -> None:
    async with emulator().call() as call:
        await call.say("transfer")
        await call.listen()
        assert call.ended
        assert call.end_reason == "transferred"
        assert call.transferred_to == AGENT
        assert call.events[-1]["type"] == "user_speak"


async def test_an_unanswered_transfer_with_timeout_comes_back(emulator: Make) -> None:
    async with emulator().call(transfer_answers=False, session_id="back-1") as call:
        await call.say("transfer")
        before = call.elapsed_ms
        await call.listen()
        starts = of_type(call, "session_start")
        assert len(starts) == 2
        assert starts[1]["session"]["id"] == "back-1"
        assert call.elapsed_ms - before == pytest.approx(10_000, abs=2000)
        assert "welcome back" in call.said
        assert not call.ended


async def test_an_unanswered_transfer_without_timeout_ends_the_call(emulator: Make) -> None:
    async with emulator().call(transfer_answers=False) as call:
        await call.say("blind")
        await call.listen()
        assert call.end_reason == "transfer_failed"
        assert call.events[-1]["type"] == "session_end"


async def test_sms_is_recorded_and_can_fail(emulator: Make) -> None:
    async with emulator().call() as call:
        await call.say("sms")
        assert [(s.phone_number, s.message) for s in call.sms] == [("4915100000", "hello by text")]
        assert of_type(call, "sms_failed") == []
    async with emulator().call(sms_failure="no_sms_extension") as call:
        await call.say("sms")
        failed = of_type(call, "sms_failed")
        assert [(f["recipient"], f["reason"]) for f in failed] == [("4915100000", "no_sms_extension")]
        assert call.last_said == "sms failed no_sms_extension"


async def test_session_settings_are_recorded(emulator: Make) -> None:
    async with emulator().call() as call:
        await call.say("settings")
        assert sorted(call.settings) == ["configure_transcription", "configure_voice_to_voice", "mix_audio"]
        await call.say("unmix")
        assert "mix_audio" not in call.settings


async def test_a_reply_of_nothing_is_fine(emulator: Make) -> None:
    async with emulator().call() as call:
        await call.say("silent")
        assert call.last_actions == []
    assert call.violations == []


async def test_interrupting_needs_something_playing(emulator: Make) -> None:
    async with emulator().call() as call:
        await call.listen()
        with pytest.raises(EmulatorError, match="nothing is playing"):
            await call.interrupt("hello")


def test_speech_duration_estimate() -> None:
    from sipgate_ai_flow import Speak

    assert playback_ms(Speak(text="one two three four"), words_per_minute=240) == 1000
    assert strip_ssml("<speak>a &lt; b<break/></speak>") == "a < b"
    assert playback_ms(Speak(ssml='<speak>x<break time="750ms"/></speak>'), 60) == 1750


async def test_an_assistant_target_and_url_targets_are_checked() -> None:
    from sipgate_ai_flow.errors import TargetError

    with pytest.raises(TargetError, match="not a target URL"):
        Emulator("ftp://example.com")
    assert isinstance(Emulator(Assistant()).target, Assistant)
