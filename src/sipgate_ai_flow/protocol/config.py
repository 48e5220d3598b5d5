"""Nested settings used inside actions: TTS voice, barge-in behaviour, end-of-turn detection."""

from __future__ import annotations

from typing import Annotated, Literal, Self, get_args

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = [
    "BARGE_IN_STRATEGIES",
    "TTS_PROVIDERS",
    "BargeInConfig",
    "BargeInStrategy",
    "TtsConfig",
    "TtsProvider",
    "VadConfig",
]

TtsProvider = Literal["azure", "eleven_labs"]
TTS_PROVIDERS: tuple[str, ...] = get_args(TtsProvider)

_Name = Annotated[str, Field(min_length=1)]

BargeInStrategy = Literal["none", "manual", "minimum_characters", "immediate"]
BARGE_IN_STRATEGIES: tuple[str, ...] = get_args(BargeInStrategy)


class TtsConfig(BaseModel):
    """Which text-to-speech voice speaks. Omit it to use the flow's default voice.

    ``azure`` takes ``language`` (BCP-47) and ``voice`` (e.g. ``de-DE-KatjaNeural``);
    ``eleven_labs`` takes ``voice`` (a voice id). Other providers are passed through as given.
    """

    model_config = ConfigDict(extra="allow", frozen=True)

    provider: TtsProvider | _Name
    language: str | None = Field(default=None, min_length=1)
    voice: str | None = Field(default=None, min_length=1)

    @model_validator(mode="after")
    def _known_provider_fields(self) -> Self:
        # Newer providers may need fields we do not know (Kugelaudio is mentioned, never
        # specified); for the documented ones an unknown field is a typo.
        if self.provider in TTS_PROVIDERS and self.model_extra:
            names = ", ".join(sorted(self.model_extra))
            raise ValueError(f"unknown field(s) for provider {self.provider!r}: {names}")
        return self


class BargeInConfig(BaseModel):
    """How the caller may interrupt this playback.

    ``none`` plays to the end; ``manual`` stops only on a ``BargeIn`` action; ``minimum_characters``
    stops once the caller's recognised text reaches ``minimum_characters`` (service default 3);
    ``immediate`` stops on voice activity. ``allow_after_ms`` protects the start of playback.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    # Unknown strategies from newer services are accepted (D8).
    strategy: BargeInStrategy | _Name
    minimum_characters: int | None = Field(default=None, ge=1, le=100)
    allow_after_ms: int | None = Field(default=None, ge=0, le=10_000)

    @model_validator(mode="after")
    def _threshold_needs_strategy(self) -> Self:
        if self.minimum_characters is not None and self.strategy != "minimum_characters":
            raise ValueError(
                f"minimum_characters only applies to strategy 'minimum_characters', not {self.strategy!r}"
            )
        return self


class VadConfig(BaseModel):
    """End-of-turn detection: how long the caller must be silent before their turn counts as over."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    end_of_turn_silence_ms: int = Field(
        gt=0, description="Silence in ms that ends the caller's turn; 150-2000 recommended."
    )
