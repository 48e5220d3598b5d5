"""The history the caller heard, fed with the service's reports by hand."""

from __future__ import annotations

import json
from typing import Any

import pytest

from sipgate_ai_flow.llm import CUT_OFF, History

T0 = 1_734_000_000_000.0


def answer(history: History, *sentences: str) -> None:
    for sentence in sentences:
        history.said(sentence)


def roles(history: History) -> list[tuple[str, Any]]:
    return [(m["role"], m.get("content")) for m in history.messages]


def test_what_played_to_the_end_is_kept_whole() -> None:
    history = History({})
    answer(history, "We open at nine.", "We close at five.")
    history.started("We open at nine.", T0, 1500)
    history.started("We close at five.", T0 + 1500, 1500)  # the first one finished
    history.ended()
    history.user("thanks")
    assert roles(history) == [("assistant", "We open at nine. We close at five."), ("user", "thanks")]


def test_a_barge_in_keeps_the_words_played_before_it() -> None:
    history = History({})
    answer(history, "One two three four.", "Five six.")
    history.started("One two three four.", T0, 2000)
    history.voice(T0 + 1000)  # user_speech_started: half of the sentence had played
    history.user("stop", barged_in=True, now=T0 + 1600)
    assert roles(history) == [("assistant", f"One two… {CUT_OFF}"), ("user", "stop")]


def test_without_user_speech_started_the_barge_in_time_is_now() -> None:
    history = History({})
    answer(history, "One two three four.")
    history.started("One two three four.", T0, 2000)
    history.voice(T0 - 5000)  # the caller's previous turn: before this sentence began
    history.user("stop", barged_in=True, now=T0 + 1500)
    assert history.messages[0]["content"] == f"One two three… {CUT_OFF}"


def test_a_barge_in_before_anything_of_the_answer_played() -> None:
    history = History({})
    history.ended()  # the service reports playback in this call
    answer(history, "Never heard.")
    history.user("hello?", barged_in=True, now=T0)
    assert roles(history) == [("assistant", CUT_OFF), ("user", "hello?")]


def test_tool_calls_and_results_stay_and_text_after_the_cut_goes() -> None:
    history = History({})
    answer(history, "Let me look.")
    calls = [{"id": "c1", "type": "function", "function": {"name": "hours", "arguments": "{}"}}]
    history.tool_calls(calls)
    history.tool_result("c1", "9 to 5")
    answer(history, "We are open nine to five.", "Anything else?")
    assert [m["role"] for m in history.for_request()] == ["assistant", "tool", "assistant"]
    assert history.for_request()[-1]["content"] == "We are open nine to five. Anything else?"
    history.started("Let me look.", T0, 800)
    history.started("We are open nine to five.", T0 + 900, 2000)
    history.user("sorry?", barged_in=True, now=T0 + 900)  # cut at its very start
    assert history.messages == [
        {"role": "assistant", "content": "Let me look.", "tool_calls": calls},
        {"role": "tool", "tool_call_id": "c1", "content": "9 to 5"},
        {"role": "assistant", "content": CUT_OFF},
        {"role": "user", "content": "sorry?"},
    ]


def test_sentences_never_played_are_not_kept_without_a_barge_in() -> None:
    history = History({})
    history.started("a hold", T0, 500)  # not ours: ignored, but the service reports playback
    answer(history, "Played.", "Dropped by the runtime.")
    history.started("Played.", T0, 500)
    history.ended()
    history.user("next")
    assert roles(history) == [("assistant", "Played."), ("user", "next")]


def test_a_service_that_never_reports_playback_counts_what_was_sent() -> None:
    history = History({})
    answer(history, "Said.", "Also said.")
    history.user("next")
    assert roles(history) == [("assistant", "Said. Also said."), ("user", "next")]
    answer(history, "Cut somewhere.")
    history.user("stop", barged_in=True, now=T0)
    assert history.messages[2] == {"role": "assistant", "content": f"Cut somewhere. {CUT_OFF}"}


def test_the_history_is_bounded_by_turns_and_characters() -> None:
    history = History({}, max_turns=2, max_chars=None)
    for n in range(4):
        history.user(f"question {n}")
        answer(history, f"Answer {n}.")
        history.settle()
    assert [m["content"] for m in history.messages] == ["question 2", "Answer 2.", "question 3", "Answer 3."]
    short = History({}, max_chars=30)
    for n in range(3):
        short.user(f"question number {n}")
    assert [m["content"] for m in short.messages] == ["question number 2"]  # the last turn stays
    with pytest.raises(ValueError, match="max_turns"):
        History({}, max_turns=0)


def test_a_tool_call_is_never_trimmed_apart_from_its_result() -> None:
    history = History({}, max_turns=1, max_chars=None)
    history.user("first")
    history.tool_calls([{"id": "c1", "type": "function", "function": {"name": "x", "arguments": "{}"}}])
    history.tool_result("c1", "ok")
    history.user("second")
    assert roles(history) == [("user", "second")]


def test_the_history_is_plain_json() -> None:
    data: dict[str, Any] = {}
    history = History(data)
    answer(history, "One.")
    history.started("One.", T0, 400.5)
    history.voice(T0 + 100)
    restored = History(json.loads(json.dumps(data)))  # as Redis gives it back
    restored.user("hi", barged_in=True, now=T0 + 300)
    assert restored.messages[0]["content"] == f"{CUT_OFF}"
