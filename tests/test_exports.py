"""The public surface is deliberate: this pins it."""

from __future__ import annotations

import subprocess
import sys

import sipgate_ai_flow


def test_public_names() -> None:
    # The order of __all__ is kept sorted by ruff (RUF022); this pins the content.
    assert set(sipgate_ai_flow.__all__) == {
        "DEFAULT_FALLBACK",
        "DEFAULT_GIVE_UP",
        "DEFAULT_HOLD",
        "TTS_PRESETS",
        "ApiConnectionError",
        "ApiError",
        "AudioClip",
        "AuthenticationError",
        "BadRequestError",
        "Collected",
        "DigitCollector",
        "NotFoundError",
        "PermissionDeniedError",
        "RateLimitError",
        "ServerError",
        "SsmlError",
        "load_audio",
        "ssml",
        "tts_preset",
        "Action",
        "AiFlowError",
        "Assistant",
        "AssistantSpeak",
        "AssistantSpeechEnded",
        "Audio",
        "AudioFormatError",
        "BargeIn",
        "BargeInConfig",
        "Call",
        "CallEndedError",
        "ConfigureTranscription",
        "ConfigureVoiceToVoice",
        "DtmfReceived",
        "Event",
        "FieldError",
        "Hangup",
        "HandlerError",
        "InvalidActionError",
        "InvalidEventError",
        "InvalidReplyError",
        "MemoryStore",
        "MixAudio",
        "Observer",
        "ProtocolError",
        "Reply",
        "SendSms",
        "SentenceSplitter",
        "SessionEnd",
        "SessionInfo",
        "SessionStart",
        "SessionStore",
        "SmsFailed",
        "Speak",
        "StateError",
        "TargetError",
        "Transfer",
        "TtsConfig",
        "UnknownEvent",
        "UserInputTimeout",
        "UserSpeak",
        "UserSpeechStarted",
        "VadConfig",
        "__version__",
        "sentences",
        "split_sentences",
    }
    for name in sipgate_ai_flow.__all__:
        assert getattr(sipgate_ai_flow, name) is not None


def test_importing_the_package_loads_no_server_cli_http_or_audio_library() -> None:
    code = (
        "import sys, sipgate_ai_flow; "
        "heavy = ('starlette', 'uvicorn', 'typer', 'rich', 'httpx', 'redis', 'prometheus_client', "
        "'numpy', 'soundfile', 'soxr'); "
        "print(sorted(m for m in heavy if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_py_typed_ships() -> None:
    from importlib.resources import files

    assert files("sipgate_ai_flow").joinpath("py.typed").is_file()


def test_importing_the_test_kit_loads_no_server_or_http_client() -> None:
    # The pytest plugin imports it in every test run of every user.
    code = (
        "import sys, sipgate_ai_flow.testing; "
        "heavy = ('starlette', 'uvicorn', 'httpx', 'numpy'); "
        "print(sorted(m for m in heavy if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
