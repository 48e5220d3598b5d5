"""sipgate-ai-flow: build, serve and test sipgate AI Flow voice assistants in Python.

>>> from sipgate_ai_flow import Assistant
>>> assistant = Assistant()
>>> @assistant.on_user_speak
... async def echo(event):
...     return f"You said {event.text}"
"""

from sipgate_ai_flow.assistant import (
    DEFAULT_FALLBACK,
    DEFAULT_GIVE_UP,
    DEFAULT_HOLD,
    Assistant,
    Call,
    Observer,
    Reply,
)
from sipgate_ai_flow.assistant.assistant import AsgiApp
from sipgate_ai_flow.assistant.digits import Collected, DigitCollector
from sipgate_ai_flow.assistant.sentences import SentenceSplitter, sentences, split_sentences
from sipgate_ai_flow.audio import AudioClip, load_audio
from sipgate_ai_flow.errors import (
    AiFlowError,
    ApiConnectionError,
    ApiError,
    AudioFormatError,
    AuthenticationError,
    BadRequestError,
    CallEndedError,
    FieldError,
    HandlerError,
    InvalidActionError,
    InvalidEventError,
    InvalidReplyError,
    NotFoundError,
    PermissionDeniedError,
    ProtocolError,
    RateLimitError,
    ServerError,
    SsmlError,
    StateError,
    TargetError,
)
from sipgate_ai_flow.protocol import (
    Action,
    AssistantSpeak,
    AssistantSpeechEnded,
    Audio,
    BargeIn,
    BargeInConfig,
    ConfigureTranscription,
    ConfigureVoiceToVoice,
    DtmfReceived,
    Event,
    Hangup,
    MixAudio,
    SendSms,
    SessionEnd,
    SessionInfo,
    SessionStart,
    SmsFailed,
    Speak,
    Transfer,
    TtsConfig,
    UnknownEvent,
    UserInputTimeout,
    UserSpeak,
    UserSpeechStarted,
    VadConfig,
    ssml,
)
from sipgate_ai_flow.protocol.config import TTS_PRESETS, tts_preset
from sipgate_ai_flow.state import MemoryStore, SessionStore

__version__ = "0.1.0"


def _serve(assistant: Assistant) -> AsgiApp:
    # The package root sits above every layer, so it is the one place that may join the core to
    # the server: `uvicorn app:assistant` then works while assistant/ never imports server/.
    from sipgate_ai_flow.server.app import create_app  # noqa: PLC0415 - starlette only when served

    return create_app(assistant)


Assistant.asgi_factory = _serve

__all__ = [
    "DEFAULT_FALLBACK",
    "DEFAULT_GIVE_UP",
    "DEFAULT_HOLD",
    "TTS_PRESETS",
    "Action",
    "AiFlowError",
    "ApiConnectionError",
    "ApiError",
    "Assistant",
    "AssistantSpeak",
    "AssistantSpeechEnded",
    "Audio",
    "AudioClip",
    "AudioFormatError",
    "AuthenticationError",
    "BadRequestError",
    "BargeIn",
    "BargeInConfig",
    "Call",
    "CallEndedError",
    "Collected",
    "ConfigureTranscription",
    "ConfigureVoiceToVoice",
    "DigitCollector",
    "DtmfReceived",
    "Event",
    "FieldError",
    "HandlerError",
    "Hangup",
    "InvalidActionError",
    "InvalidEventError",
    "InvalidReplyError",
    "MemoryStore",
    "MixAudio",
    "NotFoundError",
    "Observer",
    "PermissionDeniedError",
    "ProtocolError",
    "RateLimitError",
    "Reply",
    "SendSms",
    "SentenceSplitter",
    "ServerError",
    "SessionEnd",
    "SessionInfo",
    "SessionStart",
    "SessionStore",
    "SmsFailed",
    "Speak",
    "SsmlError",
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
    "load_audio",
    "sentences",
    "split_sentences",
    "ssml",
    "tts_preset",
]
