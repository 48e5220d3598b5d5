"""Events: what the AI Flow service sends to the assistant.

``Event`` is a union told apart by ``type``; a ``type`` this SDK does not know parses as
:class:`UnknownEvent` (D10), so ``match event:`` over the classes below always works.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, model_validator

from sipgate_ai_flow.protocol.session import SessionInfo

__all__ = [
    "EVENT_TYPES",
    "SMS_FAILURE_REASONS",
    "AssistantSpeak",
    "AssistantSpeechEnded",
    "DtmfReceived",
    "Event",
    "EventBase",
    "SessionEnd",
    "SessionStart",
    "SmsFailed",
    "SmsFailureReason",
    "UnknownEvent",
    "UserInputTimeout",
    "UserSpeak",
    "UserSpeechStarted",
]


class EventBase(BaseModel):
    """Fields shared by every event. Unknown extra fields are kept (D10)."""

    model_config = ConfigDict(extra="allow", frozen=True)

    type: str
    session: SessionInfo

    @property
    def session_id(self) -> str:
        """Shortcut for ``event.session.id``."""
        return self.session.id


class SessionStart(EventBase):
    """A call begins; also sent again, same session id, when a transfer with ``timeout`` fails."""

    type: Literal["session_start"] = "session_start"


class UserSpeechStarted(EventBase):
    """The caller started speaking (voice activity, before any text). WebSocket only (D11)."""

    type: Literal["user_speech_started"] = "user_speech_started"


class UserSpeak(EventBase):
    """The caller said something; ``barged_in`` is true when it interrupted the assistant."""

    type: Literal["user_speak"] = "user_speak"
    text: str = Field(description="Recognised speech.")
    barged_in: bool = Field(default=False, description="True if the caller interrupted playback.")

    @model_validator(mode="before")
    @classmethod
    def _legacy_transcript(cls, data: Any) -> Any:
        # Earlier AI Flow versions sent `transcript` instead of `text` (D9).
        if isinstance(data, dict) and "text" not in data and "transcript" in data:
            return {**data, "text": data["transcript"]}
        return data


class DtmfReceived(EventBase):
    """The caller pressed one key on the keypad."""

    type: Literal["dtmf_received"] = "dtmf_received"
    # The docs list 0-9, * and #; A-D are real DTMF tones too, so a newer service sending them
    # must not make us reject the event.
    digit: str = Field(pattern=r"^[0-9*#A-Da-d]$", description='"0"-"9", "*" or "#".')


class AssistantSpeak(EventBase):
    """The assistant spoke (may be omitted by some TTS models)."""

    type: Literal["assistant_speak"] = "assistant_speak"
    text: str | None = Field(default=None, description="Text that was spoken.")
    ssml: str | None = Field(default=None, description="SSML that was spoken, if any.")
    duration_ms: int | float = Field(ge=0, description="Duration of the speech in milliseconds.")
    # The seeds type it as a number: a fraction of a millisecond must not reject the event (D10).
    speech_started_at: int | float = Field(description="Unix time in milliseconds when speech started.")


class AssistantSpeechEnded(EventBase):
    """Playback of the assistant's speech finished."""

    type: Literal["assistant_speech_ended"] = "assistant_speech_ended"


class UserInputTimeout(EventBase):
    """The caller said nothing for ``user_input_timeout_seconds`` after the assistant spoke."""

    type: Literal["user_input_timeout"] = "user_input_timeout"


class SessionEnd(EventBase):
    """The call ended. No action may be sent in reply (D12)."""

    type: Literal["session_end"] = "session_end"


SmsFailureReason = Literal[
    "sender_not_allowed", "insufficient_balance", "no_sms_extension", "smsc_unavailable", "unknown"
]
SMS_FAILURE_REASONS: tuple[str, ...] = get_args(SmsFailureReason)


class SmsFailed(EventBase):
    """A ``send_sms`` action failed; the call goes on (D14)."""

    type: Literal["sms_failed"] = "sms_failed"
    recipient: str = Field(description="The phone_number of the failed send_sms.")
    # An open enum: newer services may add reasons (D14).
    reason: SmsFailureReason | str = Field(description="Why it failed, e.g. `insufficient_balance`.")
    message: str | None = Field(default=None, description="Technical detail, safe to log.")


class UnknownEvent(EventBase):
    """An event whose ``type`` this SDK does not know; every field is kept (D10)."""

    type: str

    @property
    def raw(self) -> dict[str, Any]:
        """The event as received."""
        return self.model_dump(mode="json")


KNOWN_EVENTS: tuple[type[EventBase], ...] = (
    SessionStart,
    UserSpeechStarted,
    UserSpeak,
    DtmfReceived,
    AssistantSpeak,
    AssistantSpeechEnded,
    UserInputTimeout,
    SessionEnd,
    SmsFailed,
)
EVENT_TYPES: frozenset[str] = frozenset(cls.model_fields["type"].default for cls in KNOWN_EVENTS)


def _event_tag(value: Any) -> str | None:
    kind = value.get("type") if isinstance(value, dict) else getattr(value, "type", None)
    if not isinstance(kind, str):
        return None
    return kind if kind in EVENT_TYPES else "__unknown__"


Event = Annotated[
    Annotated[SessionStart, Tag("session_start")]
    | Annotated[UserSpeechStarted, Tag("user_speech_started")]
    | Annotated[UserSpeak, Tag("user_speak")]
    | Annotated[DtmfReceived, Tag("dtmf_received")]
    | Annotated[AssistantSpeak, Tag("assistant_speak")]
    | Annotated[AssistantSpeechEnded, Tag("assistant_speech_ended")]
    | Annotated[UserInputTimeout, Tag("user_input_timeout")]
    | Annotated[SessionEnd, Tag("session_end")]
    | Annotated[SmsFailed, Tag("sms_failed")]
    | Annotated[UnknownEvent, Tag("__unknown__")],
    Discriminator(
        _event_tag,
        custom_error_type="missing_type",
        custom_error_message="the event has no string field 'type'",
    ),
]
"""Any event the service sends: a union told apart by ``type``."""
