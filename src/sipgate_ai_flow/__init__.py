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
from sipgate_ai_flow.assistant.sentences import SentenceSplitter, sentences, split_sentences
from sipgate_ai_flow.errors import (
    AiFlowError,
    AudioFormatError,
    CallEndedError,
    FieldError,
    HandlerError,
    InvalidActionError,
    InvalidEventError,
    InvalidReplyError,
    ProtocolError,
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
)
from sipgate_ai_flow.state import MemoryStore, SessionStore

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_FALLBACK",
    "DEFAULT_GIVE_UP",
    "DEFAULT_HOLD",
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
    "HandlerError",
    "Hangup",
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
]
