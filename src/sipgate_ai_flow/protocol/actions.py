"""Actions: what the assistant sends back to the AI Flow service.

Every action may be built without ``session_id``: the SDK fills it from the event it answers (D2).
Constructors validate at once and raise :class:`~sipgate_ai_flow.errors.InvalidActionError`
naming the bad field (D18). Serialisation leaves out fields that are not set.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Literal, Self

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from sipgate_ai_flow.errors import InvalidActionError
from sipgate_ai_flow.protocol.audio import check_wav_base64
from sipgate_ai_flow.protocol.config import BargeInConfig, TtsConfig, VadConfig

__all__ = [
    "ACTION_TYPES",
    "Action",
    "ActionBase",
    "Audio",
    "BargeIn",
    "ConfigureTranscription",
    "ConfigureVoiceToVoice",
    "Hangup",
    "MixAudio",
    "PhoneNumber",
    "SendSms",
    "Speak",
    "TranscriptionProvider",
    "Transfer",
]

# D7: with or without a leading "+", never rewritten.
PhoneNumber = Annotated[str, Field(pattern=r"^\+?[0-9]{3,20}$", examples=["4921100200"])]
TranscriptionProvider = Literal["AZURE", "DEEPGRAM", "ELEVEN_LABS"]
# `int | float` keeps 5 as 5 and 0.5 as 0.5 when a document round-trips.
Number = int | float


# Constructors must raise our InvalidActionError. Overriding __init__ would make pydantic call it
# for every nested validation too (slower, doubled messages); a metaclass's __call__ runs only for
# direct construction (Python's own rule). The metaclass is reached as type(BaseModel), not by its
# private module path. pydantic does not document its metaclass: this relies on it being
# subclassable, as it has been through 2.x (pinned <3), and tests/test_protocol.py pins the error.
if TYPE_CHECKING:  # type checkers see pydantic's model constructors, unchanged
    _ModelMeta = type
else:
    _ModelMeta = type(BaseModel)


class _ActionMeta(_ModelMeta):
    def __call__(cls, *args: Any, **kwargs: Any) -> Any:  # noqa: N805 - a metaclass method
        try:
            return super().__call__(*args, **kwargs)
        except ValidationError as exc:
            raise InvalidActionError.from_validation_error(f"invalid {cls.__name__} action", exc) from None


class ActionBase(BaseModel, metaclass=_ActionMeta):  # type: ignore[metaclass]
    """Fields shared by every action."""

    # A number JSON cannot carry (inf, NaN) would go out as null: refuse it here (found by fuzzing).
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True, allow_inf_nan=False)

    session_id: str | None = Field(
        default=None, min_length=1, description="The session this action is for; the SDK fills it."
    )

    def with_session(self, session_id: str) -> Self:
        """This action with ``session_id`` set, unless it already names a session (D2)."""
        if self.session_id is not None:
            return self
        return self.model_copy(update={"session_id": session_id})


class Speak(ActionBase):
    """Say ``text`` or ``ssml`` (exactly one)."""

    type: Literal["speak"] = "speak"
    text: str | None = Field(default=None, min_length=1)
    ssml: str | None = Field(default=None, min_length=1)
    tts: TtsConfig | None = None
    barge_in: BargeInConfig | None = None
    user_input_timeout_seconds: Number | None = Field(
        default=None,
        ge=0,
        description="After playback, send user_input_timeout if the caller is silent this long.",
    )
    vad: VadConfig | None = None

    @model_validator(mode="after")
    def _text_or_ssml(self) -> Self:
        if (self.text is None) == (self.ssml is None):
            raise ValueError("set exactly one of 'text' and 'ssml'")
        return self


class Audio(ActionBase):
    """Play a WAV file (base64; 16 kHz, mono, 16-bit PCM)."""

    type: Literal["audio"] = "audio"
    audio: str = Field(description="Base64 WAV, 16 kHz, mono, 16-bit PCM.")
    barge_in: BargeInConfig | None = None

    @field_validator("audio")
    @classmethod
    def _playable(cls, value: str) -> str:
        check_wav_base64(value)
        return value


class MixAudio(ActionBase):
    """Loop a background sound under the call; ``stop=True`` removes it."""

    type: Literal["mix_audio"] = "mix_audio"
    audio: str | None = Field(default=None, description="Base64 WAV, 16 kHz, mono, 16-bit PCM.")
    volume: Number | None = Field(default=None, ge=0, le=1, description="0.0-1.0, service default 0.5.")
    stop: bool | None = None

    @field_validator("audio")
    @classmethod
    def _playable(cls, value: str | None) -> str | None:
        if value is not None:
            check_wav_base64(value)
        return value

    @model_validator(mode="after")
    def _audio_unless_stop(self) -> Self:
        if self.audio is None and not self.stop:
            raise ValueError("'audio' is required unless 'stop' is true")
        return self


class Hangup(ActionBase):
    """End the call."""

    type: Literal["hangup"] = "hangup"


class Transfer(ActionBase):
    """Transfer the call to another number.

    ``transfer_to`` is accepted as another name for ``target_phone_number`` (D3). When the caller
    id fields are left out the SDK fills both from the flow's own number. With ``timeout`` set
    (5-120 s) an unanswered transfer brings the call back with a new ``session_start``.
    """

    type: Literal["transfer"] = "transfer"
    target_phone_number: PhoneNumber = Field(
        validation_alias=AliasChoices("target_phone_number", "transfer_to")
    )
    caller_id_name: str | None = Field(default=None, min_length=1)
    caller_id_number: PhoneNumber | None = None
    timeout: int | None = Field(default=None, ge=5, le=120)


class BargeIn(ActionBase):
    """Stop whatever is playing now."""

    type: Literal["barge_in"] = "barge_in"


class ConfigureTranscription(ActionBase):
    """Change speech recognition mid-call: provider, languages, vocabulary, end-of-turn detection."""

    type: Literal["configure_transcription"] = "configure_transcription"
    provider: TranscriptionProvider | None = None
    languages: list[Annotated[str, Field(min_length=2)]] | None = Field(
        default=None, min_length=1, max_length=4
    )
    custom_vocabulary: list[Annotated[str, Field(min_length=1, max_length=200)]] | None = Field(
        default=None, max_length=100
    )
    vad: VadConfig | None = None


class ConfigureVoiceToVoice(ActionBase):
    """Hand the call to a speech-to-speech model (preview, needs approval by sipgate)."""

    type: Literal["configure_voice_to_voice"] = "configure_voice_to_voice"
    system_prompt: str = Field(min_length=1)
    greeting: str | None = Field(default=None, min_length=1)
    temperature: Number | None = Field(default=None, ge=0, le=2)
    language: str | None = Field(default=None, min_length=2)


class SendSms(ActionBase):
    """Send an SMS from the account (needs approval by sipgate); failures arrive as ``sms_failed``."""

    type: Literal["send_sms"] = "send_sms"
    phone_number: PhoneNumber
    message: str = Field(min_length=1)


Action = Annotated[
    Speak
    | Audio
    | MixAudio
    | Hangup
    | Transfer
    | BargeIn
    | ConfigureTranscription
    | ConfigureVoiceToVoice
    | SendSms,
    Field(discriminator="type"),
]
"""Any action: a union told apart by ``type``."""

ACTION_TYPES: frozenset[str] = frozenset(
    cls.model_fields["type"].default
    for cls in (
        Speak,
        Audio,
        MixAudio,
        Hangup,
        Transfer,
        BargeIn,
        ConfigureTranscription,
        ConfigureVoiceToVoice,
        SendSms,
    )
)
