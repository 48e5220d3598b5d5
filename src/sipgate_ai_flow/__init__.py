"""sipgate-ai-flow: build, serve and test sipgate AI Flow voice assistants in Python.

>>> from sipgate_ai_flow import Assistant
>>> assistant = Assistant()
>>> @assistant.on_user_speak
... async def echo(event):
...     return f"You said {event.text}"
"""

from sipgate_ai_flow.assistant import DEFAULT_FALLBACK, Assistant, Call, Reply
from sipgate_ai_flow.errors import (
    AiFlowError,
    AudioFormatError,
    FieldError,
    HandlerError,
    InvalidActionError,
    InvalidEventError,
    InvalidReplyError,
    ProtocolError,
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
)
from sipgate_ai_flow.state import MemoryStore, SessionStore

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_FALLBACK",
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
    "ConfigureTranscription",
    "ConfigureVoiceToVoice",
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
    "ProtocolError",
    "Reply",
    "SendSms",
    "SessionEnd",
    "SessionInfo",
    "SessionStart",
    "SessionStore",
    "SmsFailed",
    "Speak",
    "TargetError",
    "Transfer",
    "TtsConfig",
    "UnknownEvent",
    "UserInputTimeout",
    "UserSpeak",
    "UserSpeechStarted",
    "VadConfig",
    "__version__",
]
