"""How long the service takes to play what the assistant sends."""

from __future__ import annotations

import html
import re
from collections.abc import Iterable

from sipgate_ai_flow.protocol.actions import Audio, Speak
from sipgate_ai_flow.protocol.audio import check_wav_base64

__all__ = ["DEFAULT_WORDS_PER_MINUTE", "heard", "playback_ms", "spoken_text", "strip_ssml"]

DEFAULT_WORDS_PER_MINUTE = 160.0
_TAG = re.compile(r"<[^>]*>")
_BREAK = re.compile(r"<break\b[^>]*\btime\s*=\s*[\"']\s*([\d.]+)\s*(ms|s)\s*[\"'][^>]*>", re.IGNORECASE)
_WORD = re.compile(r"\w+")


def strip_ssml(ssml: str) -> str:
    """The words of an SSML document, without tags and with entities decoded."""
    return " ".join(html.unescape(_TAG.sub(" ", ssml)).split())


def spoken_text(action: Speak) -> str:
    """What a caller hears of a ``speak``: its text, or the words of its SSML."""
    return action.text if action.text is not None else strip_ssml(action.ssml or "")


def heard(actions: Iterable[object]) -> list[str]:
    """What a caller hears of each ``speak`` among ``actions``; silence alone (SSML breaks) is left out."""
    return [text for a in actions if isinstance(a, Speak) and (text := spoken_text(a))]


def playback_ms(action: Speak | Audio, words_per_minute: float = DEFAULT_WORDS_PER_MINUTE) -> float:
    """Playing time of a ``speak`` (estimated from its words and SSML breaks) or an ``audio`` (exact)."""
    if isinstance(action, Audio):
        return check_wav_base64(action.audio).duration_ms
    words = len(_WORD.findall(spoken_text(action)))
    pauses = 0.0
    for amount, unit in _BREAK.findall(action.ssml or ""):
        pauses += float(amount) * (1000 if unit.lower() == "s" else 1)
    # SSML of breaks alone is pure silence: it lasts as long as its breaks.
    return (words if words or pauses else 1) * 60_000 / words_per_minute + pauses
