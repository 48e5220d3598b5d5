"""Turning a stream of text chunks (an LLM's tokens) into sentence-sized ``speak`` actions.

A sentence ends at ``.``, ``!``, ``?`` or ``…`` followed by white space, or at a line break.
Not at: decimals (``3.5``, ``3,5``), abbreviations in English and German (``Dr.``, ``e.g.``,
``z. B.``, ``usw.``), initials (``J. Smith``), ordinals (``am 3. Mai``, ``der 2. Platz``), list
numbers (``1. Step``), and anything inside SSML markup. Where a boundary depends on the next
word, the splitter waits for it, so a sentence is only given once it is certain.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterable, AsyncIterator, Iterable
from typing import Any

from sipgate_ai_flow.protocol.actions import Speak

__all__ = ["SentenceSplitter", "sentences", "split_sentences"]


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


_ABBREVIATIONS = _words(
    # English
    "mr mrs ms dr prof sr jr st vs approx dept est inc ltd co corp no nos fig tel ext ave blvd "
    "e.g i.e a.k.a cf resp "
    # German
    "hr fr frl str nr bzw ca z.b d.h u.a o.ä s.o s.u u.u v.a z.t inkl exkl evtl ggf vgl sog "
    "geb gest abs abt jh mio mrd tsd bspw max min zzgl mwst"
)
# These end sentences as often as not: a boundary when the next word starts with a capital.
_MAY_END = _words("etc usw a.m p.m uvm")
_ORDINAL_NOUNS = _words(
    "januar februar märz april mai juni juli august september oktober november dezember "
    "jan feb mär apr jun jul aug sep sept okt nov dez "
    "mal platz stock etage klasse jahrhundert geburtstag jahrestag quartal liga runde stelle "
    "lebensjahr semester tag woche monat"
)
_END = re.compile("[.!?…]+[\"'\u201d\u2019)\\]]*")  # closing quotes and brackets stay
_WORD = re.compile(r"[^\s.,;:!?…\"'()\[\]]+")


class SentenceSplitter:
    """Feed text chunks with :meth:`feed`; it returns the sentences completed so far.
    Call :meth:`flush` at the end for the rest."""

    def __init__(self) -> None:
        self._buffer = ""

    def feed(self, chunk: str) -> list[str]:
        """Add ``chunk``; return the sentences that are now complete."""
        self._buffer += chunk
        return self._take(final=False)

    def flush(self) -> list[str]:
        """The text still buffered, as the last sentence (or nothing)."""
        return self._take(final=True)

    def _take(self, *, final: bool) -> list[str]:
        done: list[str] = []
        while True:
            cut = _boundary(self._buffer, final=final)
            if cut is None:
                break
            sentence, self._buffer = self._buffer[:cut].strip(), self._buffer[cut:]
            if sentence:
                done.append(sentence)
        if final:
            rest, self._buffer = self._buffer.strip(), ""
            if rest:
                done.append(rest)
        return done


def _boundary(text: str, *, final: bool) -> int | None:
    """Where the first sentence of ``text`` ends, or ``None`` if that is not known yet."""
    depth = 0  # open SSML elements
    i, n = 0, len(text)
    while i < n:
        char = text[i]
        if char == "<":
            close = text.find(">", i)
            if close < 0:
                return None  # a tag still arriving
            depth = _nest(text[i + 1 : close], depth)
            i = close + 1
        elif depth or char not in ".!?…\n":
            i += 1
        elif char == "\n":
            if text[:i].strip():
                return i + 1
            i += 1
        else:
            end = _END.match(text, i).end()  # type: ignore[union-attr]  # char matched already
            if end == n:
                return None  # the text may go on ("3." then "5"); flush() takes the rest
            if text[end].isspace():
                verdict = _ends_sentence(text, i, end, final=final)
                if verdict is None or verdict:
                    return end if verdict else None
            i = end  # "3.5", "e.g.x", or not an end
    return None


def _nest(tag: str, depth: int) -> int:
    if tag.startswith("/"):
        return max(depth - 1, 0)
    if tag.endswith("/") or tag.startswith(("!", "?")):
        return depth  # <break/>, comments, declarations
    return depth + 1


def _ends_sentence(text: str, start: int, end: int, *, final: bool) -> bool | None:
    """Whether the punctuation at ``text[start:end]`` ends a sentence (``None``: need more text)."""
    mark = text[start:end]
    trailing = "…" in mark or mark.startswith("..")
    if mark[0] in "!?":
        return True
    before = text[:start]
    word = before.rsplit(None, 1)[-1] if before.strip() else ""
    bare = word.lower().lstrip("\"'([")
    if not trailing:
        if bare in _ABBREVIATIONS or (len(bare) == 1 and bare.isalpha()):
            return False  # "Dr.", "z. B.", an initial as in "J. Smith"
        if bare.isdigit() and before.strip() == word:
            return False  # a list number at the start: "1. Open the app"
        if bare not in _MAY_END and not (bare.isdigit() and len(bare) <= 4):
            return True
    # "etc.", "3." and "…" depend on the word that follows.
    rest = text[end:].lstrip()
    following = _WORD.match(rest)
    if following is None or (following.end() == len(rest) and not final):
        return True if final or (following is None and rest) else None
    nxt = following.group()
    if trailing or bare in _MAY_END:
        return nxt[0].isupper()
    # An ordinal: "am 3. Mai", "der 2. Platz", "zum 3. mal".
    return not (nxt[0].islower() or nxt.lower() in _ORDINAL_NOUNS)


def split_sentences(text: str | Iterable[str]) -> list[str]:
    """Split a whole text (or its chunks) into sentences."""
    splitter = SentenceSplitter()
    parts = [text] if isinstance(text, str) else text
    done = [sentence for part in parts for sentence in splitter.feed(part)]
    return done + splitter.flush()


async def sentences(chunks: AsyncIterable[str], **speak: Any) -> AsyncIterator[Speak]:
    """Yield a ``speak`` action per sentence of a stream of text chunks, as soon as it is complete.

    ``speak`` options (``tts``, ``barge_in``, ...) go to every action. A sentence with SSML
    markup is sent as ``ssml``. Typical use, in a handler::

        async for item in sentences(llm_tokens(prompt)):
            yield item
    """
    splitter = SentenceSplitter()
    async for chunk in chunks:
        for sentence in splitter.feed(chunk):
            yield _speak(sentence, speak)
    for sentence in splitter.flush():
        yield _speak(sentence, speak)


def _speak(sentence: str, options: dict[str, Any]) -> Speak:
    if "<" in sentence and ">" in sentence:
        ssml = sentence if sentence.startswith("<speak") else f"<speak>{sentence}</speak>"
        return Speak(ssml=ssml, **options)
    return Speak(text=sentence, **options)
