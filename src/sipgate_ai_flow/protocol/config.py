"""Nested settings used inside actions: TTS voice, barge-in behaviour, end-of-turn detection."""

from __future__ import annotations

import re
from collections.abc import Mapping
from types import MappingProxyType
from typing import Annotated, Literal, Self, get_args

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = [
    "BARGE_IN_STRATEGIES",
    "TTS_PRESETS",
    "TTS_PROVIDERS",
    "BargeInConfig",
    "BargeInStrategy",
    "TtsConfig",
    "TtsProvider",
    "VadConfig",
    "tts_preset",
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

    model_config = ConfigDict(extra="allow", frozen=True, allow_inf_nan=False)

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

    @classmethod
    def azure(cls, voice: str, language: str | None = None) -> TtsConfig:
        """An Azure voice such as ``de-DE-KatjaNeural``; ``language`` defaults to the voice's own."""
        found = _AZURE_LANGUAGE.match(voice)
        return cls(provider="azure", voice=voice, language=language or (found.group(1) if found else None))

    @classmethod
    def eleven_labs(cls, voice: str) -> TtsConfig:
        """An ElevenLabs voice, by its voice id (e.g. ``21m00Tcm4TlvDq8ikWAM``)."""
        return cls(provider="eleven_labs", voice=voice)


_AZURE_LANGUAGE = re.compile(r"^([a-z]{2,3}-[A-Z]{2})-")

TTS_PRESETS: Mapping[str, TtsConfig] = MappingProxyType(
    {
        # The Azure voices sipgate's own documentation and workshop use.
        **{
            name.lower(): TtsConfig.azure(f"de-DE-{name}Neural")
            for name in ("Katja", "Conrad", "Amala", "Bernd", "Elke", "Klarissa")
        },
        **{name.lower(): TtsConfig.azure(f"en-US-{name}Neural") for name in ("Jenny", "Guy", "Aria")},
        # ElevenLabs voices named in sipgate's documentation.
        "rachel": TtsConfig.eleven_labs("21m00Tcm4TlvDq8ikWAM"),
        "mimi": TtsConfig.eleven_labs("zrHiDhphv9ZnVXBqCLjz"),
    }
)
"""Ready-made voices by short name: ``katja``, ``conrad``, ``amala``, ``bernd``, ``elke``,
``klarissa`` (Azure, German), ``jenny``, ``guy``, ``aria`` (Azure, US English), ``rachel``, ``mimi``
(ElevenLabs)."""


def tts_preset(name: str) -> TtsConfig:
    """The preset voice called ``name`` (any case); a ``KeyError`` lists the names there are."""
    try:
        return TTS_PRESETS[name.lower()]
    except KeyError:
        raise KeyError(f"no TTS preset {name!r}; there are: {', '.join(TTS_PRESETS)}") from None


class BargeInConfig(BaseModel):
    """How the caller may interrupt this playback.

    ``none`` plays to the end; ``manual`` stops only on a ``BargeIn`` action; ``minimum_characters``
    stops once the caller's recognised text reaches ``minimum_characters`` (service default 3);
    ``immediate`` stops on voice activity. ``allow_after_ms`` protects the start of playback.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

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

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    end_of_turn_silence_ms: int = Field(
        gt=0, description="Silence in ms that ends the caller's turn; 150-2000 recommended."
    )
