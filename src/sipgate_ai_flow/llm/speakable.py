"""Making a model's text speakable: no markdown and no emoji reach ``speak``.

Models write for screens: ``**bold**``, ``## headings``, ``- bullets``, links, code spans and
emoji. Read out by a TTS voice these become "asterisk asterisk" or silence. :func:`speakable`
keeps the words and drops the markup. It works on one sentence at a time, as the agent speaks
them, so it also cleans up emphasis that a sentence boundary split in two.
"""

from __future__ import annotations

import re
from functools import lru_cache

import emoji
from markdown_it import MarkdownIt
from markdown_it.token import Token

__all__ = ["speakable"]

# Emphasis markers left over when a sentence boundary split **bold text** in two: at a word's
# edge only, so the star key in "press *" survives.
_STRAY_EMPHASIS = re.compile(r"(?<!\w)[*_]{1,3}(?=\w)|(?<=\w)[*_]{1,3}(?!\w)|[*_]{2,}")
_TABLE_RULE = re.compile(r"^[\s|:\-]+$")
_PIPES = re.compile(r"\s*\|\s*")
_SPACES = re.compile(r"\s+")
_LOOSE_MARK = re.compile(r"\s+([.,!?;:…])(?=\s|$)")  # "2 😀." loses the emoji, then the gap
_TAG = re.compile(r"<[^>]*>")
_BLOCK_TEXT = ("code_block", "fence")


@lru_cache(maxsize=1)
def _parser() -> MarkdownIt:
    # With HTML on, tags become tokens of their own (dropped); a lone "<" stays text.
    return MarkdownIt("commonmark", {"html": True})


def speakable(text: str) -> str:
    """``text`` without markdown markup and emoji, with white space collapsed.

    Ordered list numbers stay ("1. Open the app", "am 3. Mai"); bullets, heading marks,
    emphasis, link targets, code markers and table rules go.
    """
    parts: list[str] = []
    for token in _parser().parse(text):
        if token.type == "inline":
            parts.append(_inline(token.children or []))
        elif token.type in _BLOCK_TEXT:
            parts.append(token.content)
        elif token.type == "html_block":
            parts.append(_TAG.sub(" ", token.content))
        elif token.type == "list_item_open" and token.markup in (".", ")"):
            parts.append(f"{token.info}.")
    spoken = " ".join(p for p in parts if p)
    if _TABLE_RULE.match(spoken):
        return ""
    spoken = _PIPES.sub(", ", spoken).strip(" ,")
    spoken = _STRAY_EMPHASIS.sub("", emoji.replace_emoji(spoken, replace=""))
    return _LOOSE_MARK.sub(r"\1", _SPACES.sub(" ", spoken)).strip()


def _inline(children: list[Token]) -> str:
    words: list[str] = []
    for child in children:
        if child.type in ("text", "code_inline"):
            words.append(child.content)
        elif child.type in ("softbreak", "hardbreak"):
            words.append(" ")
        elif child.type == "image":
            words.append(child.content)  # the alt text
    return "".join(words)
