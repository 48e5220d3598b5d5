"""Build SSML for ``speak``: every document is well formed and every text is escaped::

    from sipgate_ai_flow import Speak, ssml

    Speak(ssml=ssml.speak("Table for ", ssml.say_as("4", "cardinal"), ssml.pause(300), lang="en-US"))

gives ``<speak version="1.0" xmlns="http://www.w3.org/2001/10/synthesis" xml:lang="en-US">Table
for <say-as interpret-as="cardinal">4</say-as><break time="300ms" /></speak>``.

Values are checked when a part is made (:class:`~sipgate_ai_flow.errors.SsmlError` names the
bad one); the service's TTS provider decides what it supports (Azure supports all of these).
"""

from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import Final

from sipgate_ai_flow.errors import SsmlError

__all__ = [
    "BREAK_STRENGTHS",
    "EMPHASIS_LEVELS",
    "SAY_AS_TYPES",
    "Content",
    "Node",
    "emphasis",
    "lang",
    "pause",
    "prosody",
    "say_as",
    "speak",
    "sub",
    "voice",
]

SSML_NAMESPACE: Final = "http://www.w3.org/2001/10/synthesis"
_XML_LANG: Final = "{http://www.w3.org/XML/1998/namespace}lang"
BREAK_STRENGTHS: Final = ("none", "x-weak", "weak", "medium", "strong", "x-strong")
EMPHASIS_LEVELS: Final = ("strong", "moderate", "reduced", "none")
SAY_AS_TYPES: Final = (
    "address",
    "cardinal",
    "characters",
    "date",
    "digits",
    "duration",
    "fraction",
    "name",
    "number_digit",
    "ordinal",
    "spell-out",
    "telephone",
    "time",
    "unit",
    "url",
)
"""The ``interpret-as`` values Azure documents; others are passed on as given."""

_RATES = ("x-slow", "slow", "medium", "fast", "x-fast", "default")
_PITCHES = ("x-low", "low", "medium", "high", "x-high", "default")
_VOLUMES = ("silent", "x-soft", "soft", "medium", "loud", "x-loud", "default")
_SIGNED = r"[+-]?\d+(\.\d+)?"
_RATE = re.compile(rf"^({_SIGNED}%|\d+(\.\d+)?)$")  # "+10%", "80%", "1.2" (a multiplier)
_PITCH = re.compile(rf"^({_SIGNED}(%|Hz|st)|\d+(\.\d+)?Hz)$")
_VOLUME = re.compile(rf"^({_SIGNED}(%|dB)|\d+(\.\d+)?)$")
_LANG = re.compile(r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})*$")
_TOKEN = re.compile(r"^[A-Za-z][A-Za-z0-9_-]*$")
# Characters XML 1.0 forbids even when escaped.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


@dataclass(frozen=True, slots=True)
class Node:
    """One SSML element with its content; made by the functions of this module."""

    tag: str
    attributes: tuple[tuple[str, str], ...]
    content: tuple[Content, ...] = ()

    def element(self) -> ET.Element:
        """This node as an ElementTree element."""
        element = ET.Element(self.tag, dict(self.attributes))
        last: ET.Element | None = None
        for part in self.content:
            if isinstance(part, Node):
                last = part.element()
                element.append(last)
            elif last is None:
                element.text = (element.text or "") + part
            else:
                last.tail = (last.tail or "") + part
        return element

    def __str__(self) -> str:
        return ET.tostring(self.element(), encoding="unicode", short_empty_elements=True)


Content = str | Node
"""Text (escaped for you) or an SSML part."""


def _text(value: str, where: str) -> str:
    if not isinstance(value, str):
        raise SsmlError(f"{where}: expected text or an SSML part, got {type(value).__name__}")
    bad = _NOT_XML.search(value)
    if bad:
        raise SsmlError(f"{where}: character {bad.group()!r} at position {bad.start()} cannot appear in SSML")
    return value


def _content(parts: tuple[Content, ...], where: str) -> tuple[Content, ...]:
    return tuple(p if isinstance(p, Node) else _text(p, where) for p in parts)


def _needs_words(parts: tuple[Content, ...], where: str) -> None:
    if not any(isinstance(p, Node) or p.strip() for p in parts):
        raise SsmlError(f"{where} needs some content")


def _choice(value: str, allowed: tuple[str, ...], pattern: re.Pattern[str] | None, what: str) -> str:
    if value in allowed or (pattern is not None and pattern.match(value)):
        return value
    shape = {"rate": "'+10%', '80%' or '1.2'", "pitch": "'+2st', '-10%' or '220Hz'"}.get(
        what, "'+6dB', '-3dB' or '80'"
    )
    raise SsmlError(f"{what} {value!r} is not one of {', '.join(allowed)}, nor a value like {shape}")


def voice(name: str, *content: Content) -> Node:
    """Speak ``content`` with the provider voice ``name`` (e.g. ``de-DE-KatjaNeural``)."""
    if not name.strip():
        raise SsmlError("voice needs a name")
    body = _content(content, "voice")
    _needs_words(body, "voice")
    return Node("voice", (("name", _text(name, "voice name")),), body)


_voice = voice  # speak() takes a parameter of the same name


def speak(*content: Content, lang: str = "en-US", voice: str | None = None) -> str:
    """A whole SSML document for ``Speak(ssml=...)``; ``voice`` wraps the content in ``<voice>``."""
    _check_lang(lang)
    body = _content(content, "speak")
    _needs_words(body, "speak")
    if voice is not None:
        body = (_voice(voice, *body),)
    root = Node("speak", (("version", "1.0"), ("xmlns", SSML_NAMESPACE), (_XML_LANG, lang)), body)
    return str(root)


def lang(code: str, *content: Content) -> Node:
    """Speak ``content`` in another language (BCP-47, e.g. ``de-DE``)."""
    _check_lang(code)
    body = _content(content, "lang")
    _needs_words(body, "lang")
    return Node("lang", ((_XML_LANG, code),), body)


def pause(ms: float | None = None, *, strength: str | None = None) -> Node:
    """A pause of ``ms`` milliseconds, or of a ``strength`` (``weak`` ... ``x-strong``)."""
    if (ms is None) == (strength is None):
        raise SsmlError("pause needs exactly one of ms and strength")
    if strength is not None:
        return Node("break", (("strength", _choice(strength, BREAK_STRENGTHS, None, "strength")),))
    assert ms is not None
    if isinstance(ms, bool) or not math.isfinite(ms) or ms < 0:
        raise SsmlError(f"pause ms must be a number of 0 or more, got {ms!r}")
    return Node("break", (("time", f"{round(ms)}ms"),))


def prosody(
    *content: Content, rate: str | None = None, pitch: str | None = None, volume: str | None = None
) -> Node:
    """Speak ``content`` faster or slower (``rate``), higher or lower (``pitch``), louder or softer."""
    attributes = []
    if rate is not None:
        attributes.append(("rate", _choice(rate, _RATES, _RATE, "rate")))
    if pitch is not None:
        attributes.append(("pitch", _choice(pitch, _PITCHES, _PITCH, "pitch")))
    if volume is not None:
        attributes.append(("volume", _choice(volume, _VOLUMES, _VOLUME, "volume")))
    if not attributes:
        raise SsmlError("prosody needs at least one of rate, pitch and volume")
    body = _content(content, "prosody")
    _needs_words(body, "prosody")
    return Node("prosody", tuple(attributes), body)


def say_as(text: str, interpret_as: str, *, format: str | None = None, detail: str | None = None) -> Node:
    """Say ``text`` as a date, time, number, telephone number, spelled out, ... (``interpret_as``)."""
    if not _TOKEN.match(interpret_as):
        raise SsmlError(f"say_as interpret_as {interpret_as!r} is not a name such as 'date' or 'digits'")
    if not text.strip():
        raise SsmlError("say_as needs some text")
    attributes = [("interpret-as", interpret_as)]
    if format is not None:
        attributes.append(("format", _text(format, "say_as format")))
    if detail is not None:
        attributes.append(("detail", _text(detail, "say_as detail")))
    return Node("say-as", tuple(attributes), (_text(text, "say_as"),))


def emphasis(*content: Content, level: str = "moderate") -> Node:
    """Stress ``content`` (``strong``, ``moderate``, ``reduced``, ``none``)."""
    body = _content(content, "emphasis")
    _needs_words(body, "emphasis")
    return Node("emphasis", (("level", _choice(level, EMPHASIS_LEVELS, None, "level")),), body)


def sub(text: str, alias: str) -> Node:
    """Show ``text`` but say ``alias`` (``sub("Dr.", "Doctor")``)."""
    if not text.strip() or not alias.strip():
        raise SsmlError("sub needs both text and alias")
    return Node("sub", (("alias", _text(alias, "sub alias")),), (_text(text, "sub"),))


def _check_lang(code: str) -> None:
    if not _LANG.match(code):
        raise SsmlError(f"language {code!r} is not a BCP-47 tag such as 'en-US' or 'de-DE'")
