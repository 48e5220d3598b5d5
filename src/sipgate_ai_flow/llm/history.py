"""The history the caller heard: the conversation as the model should remember it.

An answer is spoken sentence by sentence, and the caller may cut it short. The model must then
remember what the caller heard, not what it wrote. This module keeps, in ``call.state`` (plain
JSON, so it works with Redis and several workers):

- ``messages``: the settled conversation, in the chat completions format;
- the answer in progress: its assistant and tool messages, and each sentence sent with what
  the service reported about it.

The service's reports decide what was heard: ``assistant_speak`` (with ``speech_started_at`` and
``duration_ms``) says a sentence started playing, ``assistant_speech_ended`` that it finished,
``user_speech_started`` when the caller started talking, and a ``user_speak`` with ``barged_in``
that they talked over the assistant. When the caller next says something, the answer is
*settled*: sentences that finished playing are kept, the one playing at a barge-in keeps the
words played before it (by its share of ``duration_ms``), marked with :data:`CUT_OFF`, and
nothing after it is kept. Tool calls and their results stay, as they happened.

A service that never reports playback (``assistant_speak`` "may be omitted for some
text-to-speech models") gets every sentence sent counted as heard.
"""

from __future__ import annotations

import json
import math
from typing import Any, Literal

__all__ = ["CUT_OFF", "History"]

CUT_OFF = "[cut off: the caller interrupted]"
"""Ends an assistant message the caller interrupted; what follows it in the answer was not heard."""

SpeechState = Literal["sent", "playing", "played"]


class History:
    """A call's conversation, kept in the dict ``data`` (which lives in ``call.state``).

    ``max_turns`` caller turns and about ``max_chars`` characters are kept; older turns go
    first, whole (a tool call never loses its result).
    """

    __slots__ = ("data", "max_chars", "max_turns")

    def __init__(self, data: dict[str, Any], *, max_turns: int = 20, max_chars: int | None = 24_000) -> None:
        if max_turns < 1:
            raise ValueError(f"max_turns must be 1 or more, got {max_turns!r}")
        self.data = data
        self.max_turns = max_turns
        self.max_chars = max_chars
        data.setdefault("messages", [])
        data.setdefault("answer", [])
        data.setdefault("speech", [])
        data.setdefault("reports", False)
        data.setdefault("voice_at", None)

    # -- reading ------------------------------------------------------------------------------

    @property
    def messages(self) -> list[dict[str, Any]]:
        """The settled conversation (a live list; do not change it while a turn runs)."""
        messages: list[dict[str, Any]] = self.data["messages"]
        return messages

    def for_request(self) -> list[dict[str, Any]]:
        """The conversation for the next model request: the settled messages, then the answer in
        progress as it was written (its own tool rounds need to see it whole)."""
        speech = self.data["speech"]
        answer = []
        for item in self.data["answer"]:
            message = {k: v for k, v in item.items() if k != "said"}
            if item["role"] == "assistant":
                text = " ".join(speech[i]["text"] for i in item.get("said", []))
                message["content"] = text or None
            answer.append(message)
        return [*self.messages, *answer]

    # -- the answer in progress ---------------------------------------------------------------

    def said(self, text: str) -> None:
        """A sentence of the assistant went out to be spoken."""
        speech = self.data["speech"]
        speech.append({"text": text, "state": "sent", "at": None, "ms": None})
        self._open_message().setdefault("said", []).append(len(speech) - 1)

    def tool_calls(self, calls: list[dict[str, Any]]) -> None:
        """The model called tools (chat completions ``tool_calls`` entries) after what it said."""
        self._open_message()["tool_calls"] = calls

    def tool_result(self, call_id: str, content: str) -> None:
        """A tool call's result, as the model will read it."""
        self.data["answer"].append({"role": "tool", "tool_call_id": call_id, "content": content})

    def _open_message(self) -> dict[str, Any]:
        answer: list[dict[str, Any]] = self.data["answer"]
        if not answer or answer[-1]["role"] != "assistant" or "tool_calls" in answer[-1]:
            answer.append({"role": "assistant", "said": []})
        return answer[-1]

    # -- what the service reports -------------------------------------------------------------

    def started(self, text: str | None, started_at: float, duration_ms: float) -> None:
        """``assistant_speak``: the sentence with ``text`` started playing (``None``: the next one)."""
        self.data["reports"] = True
        speech = self.data["speech"]
        for index, sentence in enumerate(speech):
            if sentence["state"] == "sent" and (text is None or sentence["text"] == text.strip()):
                for earlier in speech[:index]:
                    if earlier["state"] == "playing":
                        earlier["state"] = "played"  # speech plays in order: it has finished
                sentence.update(state="playing", at=started_at, ms=duration_ms)
                return
        # Not ours (a hold, the fallback, speech sent by other handlers): nothing to note.

    def ended(self) -> None:
        """``assistant_speech_ended``: what was playing has finished."""
        speech = self.data["speech"]
        playing = [s for s in speech if s["state"] == "playing"]
        if not playing and not self.data["reports"]:
            # No assistant_speak for this call so far: the oldest sentence sent is the one that ended.
            playing = [s for s in speech if s["state"] == "sent"][:1]
        self.data["reports"] = True
        for sentence in playing:
            sentence["state"] = "played"

    def heard_answer(
        self, *, barged_in: bool = False, now: float | None = None
    ) -> tuple[list[str], str, bool]:
        """The answer in progress so far: the sentences sent, the words the caller heard of them,
        and whether they cut it off (``barged_in`` and ``now`` as for :meth:`settle`)."""
        heard = self._heard(barged_in, now)
        words = " ".join(text for text, _ in heard if text)
        return [s["text"] for s in self.data["speech"]], words, any(cut for _, cut in heard)

    def unplayed(self) -> bool:
        """Whether a sentence of the answer in progress has not finished playing yet."""
        return any(s["state"] != "played" for s in self.data["speech"])

    def voice(self, at: float) -> None:
        """``user_speech_started``: the caller started talking at ``at`` (Unix ms)."""
        self.data["voice_at"] = at

    # -- the caller's turn --------------------------------------------------------------------

    def user(
        self, content: str, *, barged_in: bool = False, now: float | None = None
    ) -> tuple[list[str], str, bool]:
        """The caller said (or keyed) ``content``: settle the answer, then add their message.

        ``barged_in`` and ``now`` (Unix ms) say whether and when they cut the answer short.
        Returns the settled answer as :meth:`heard_answer` does.
        """
        settled = self.settle(barged_in=barged_in, now=now)
        self.messages.append({"role": "user", "content": content})
        self._trim()
        return settled

    def settle(self, *, barged_in: bool = False, now: float | None = None) -> tuple[list[str], str, bool]:
        """Move the answer in progress into the conversation, keeping what the caller heard;
        returns it as :meth:`heard_answer` does."""
        answer: list[dict[str, Any]] = self.data["answer"]
        settled = self.heard_answer(barged_in=barged_in, now=now)
        heard = self._heard(barged_in, now)
        cut_at = next((i for i, (_, cut) in enumerate(heard) if cut), None)
        speech = self.data["speech"]
        for item in answer:
            if item["role"] != "assistant":
                self.messages.append(item)
                continue
            said: list[int] = item.get("said", [])
            parts = [heard[i][0] for i in said if heard[i][0]]
            cut = cut_at is not None and cut_at in said
            past = cut_at is not None and bool(said) and min(said) > cut_at
            if cut:
                parts.append(CUT_OFF)
            message: dict[str, Any] = {"role": "assistant", "content": " ".join(parts) or None}
            if "tool_calls" in item:
                message["tool_calls"] = item["tool_calls"]
            elif past or message["content"] is None:
                continue  # nothing of it reached the caller
            self.messages.append(message)
        answer.clear()
        speech.clear()
        self.data["voice_at"] = None
        self._trim()
        return settled

    def _heard(self, barged_in: bool, now: float | None) -> list[tuple[str, bool]]:
        # Per sentence: the words heard, and whether the caller cut in there.
        speech = self.data["speech"]
        reports = self.data["reports"]
        heard: list[tuple[str, bool]] = []
        cut = False
        for sentence in speech:
            state: SpeechState = sentence["state"]
            text: str = sentence["text"]
            if cut:
                heard.append(("", False))
            elif state == "played" or (not reports and not barged_in):
                heard.append((text, False))
            elif state == "playing" and not barged_in:
                heard.append((text, False))  # no barge-in: it plays to the end
            elif state == "playing":
                heard.append((self._part(sentence, now), True))
                cut = True
            elif barged_in and not reports:
                heard.append((text, False))  # no reports: we cannot tell, so keep what was sent
            elif barged_in:
                heard.append(("", True))  # something else was playing (a hold): none of it
                cut = True
            else:
                heard.append(("", False))
        if barged_in and not cut and speech and not reports:
            text, _ = heard[-1]
            heard[-1] = (text, True)
        return heard

    def _part(self, sentence: dict[str, Any], now: float | None) -> str:
        # The words of a sentence played before the caller cut in: its share of duration_ms.
        voice_at = self.data["voice_at"]
        started: float = sentence["at"]
        at = voice_at if voice_at is not None and voice_at >= started else now
        duration: float = sentence["ms"] or 0
        if at is None or duration <= 0:
            return ""
        share = min(max((at - started) / duration, 0.0), 1.0)
        words = sentence["text"].split()
        count = math.floor(len(words) * share + 1e-9)
        return " ".join(words[:count]) + ("…" if 0 < count < len(words) else "")

    def _trim(self) -> None:
        messages = self.messages
        while True:
            starts = [i for i, m in enumerate(messages) if m["role"] == "user"]
            too_long = self.max_chars is not None and _size(messages) > self.max_chars
            if len(starts) < 2 or (len(starts) <= self.max_turns and not too_long):
                return
            del messages[: starts[1] if starts[0] == 0 else starts[0]]


def _size(messages: list[dict[str, Any]]) -> int:
    total = 0
    for message in messages:
        total += len(message.get("content") or "")
        if "tool_calls" in message:
            total += len(json.dumps(message["tool_calls"]))
    return total
