"""The sentence splitter that turns LLM token streams into speak actions."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from sipgate_ai_flow import BargeInConfig, SentenceSplitter, Speak, sentences, split_sentences


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Hello there. How are you? I am fine!", ["Hello there.", "How are you?", "I am fine!"]),
        ("It costs 3.5 euros. Or 3,5 Euro. Fine.", ["It costs 3.5 euros.", "Or 3,5 Euro.", "Fine."]),
        ("Wir sehen uns am 3. Mai um 10 Uhr. Bis dann!", ["Wir sehen uns am 3. Mai um 10 Uhr.", "Bis dann!"]),
        ("Sie wurde 2. Platz. Toll.", ["Sie wurde 2. Platz.", "Toll."]),
        ("Das ist der 3. mal heute. Ja.", ["Das ist der 3. mal heute.", "Ja."]),
        ("The total is 42. Anything else?", ["The total is 42.", "Anything else?"]),
        (
            "Dr. Smith said e.g. this. Then Mr. J. Doe left.",
            ["Dr. Smith said e.g. this.", "Then Mr. J. Doe left."],
        ),
        ("Das ist z. B. gut, d.h. sehr gut. Ja.", ["Das ist z. B. gut, d.h. sehr gut.", "Ja."]),
        ("Bitte Nr. 5 wählen, bzw. die Taste. Danke.", ["Bitte Nr. 5 wählen, bzw. die Taste.", "Danke."]),
        ("Apples, pears etc. Then more.", ["Apples, pears etc.", "Then more."]),
        ("Apples, pears etc. and more.", ["Apples, pears etc. and more."]),
        ("1. Open the app.\n2. Tap login.", ["1. Open the app.", "2. Tap login."]),
        ("Wait… what? Ok.", ["Wait… what?", "Ok."]),
        ('He said "Stop." Then he left.', ['He said "Stop."', "Then he left."]),
        (
            'Say <say-as interpret-as="date">3. 5. 2024</say-as> please. Next.',
            ['Say <say-as interpret-as="date">3. 5. 2024</say-as> please.', "Next."],
        ),
        ('Wait <break time="1s"/> now. Go.', ['Wait <break time="1s"/> now.', "Go."]),
        ("No ending", ["No ending"]),
        ("", []),
    ],
)
def test_split(text: str, expected: list[str]) -> None:
    assert split_sentences(text) == expected


def test_chunks_split_anywhere_give_the_same_sentences() -> None:
    text = "Am 3. Mai kostet es 3,5 Euro. Dr. Weber kommt um 10.30 Uhr. Passt das? Gut."
    whole = split_sentences(text)
    for size in range(1, 8):
        chunks = [text[i : i + size] for i in range(0, len(text), size)]
        assert split_sentences(chunks) == whole, size


def test_a_sentence_is_given_as_soon_as_it_is_certain() -> None:
    splitter = SentenceSplitter()
    assert splitter.feed("Hello there") == []
    assert splitter.feed(".") == []  # the next character decides: "3." may become "3.5"
    assert splitter.feed(" How") == ["Hello there."]
    assert splitter.feed(" is it on the 3.") == []
    assert splitter.feed(" Ma") == []  # "Ma..." may be "Mai": an ordinal, no boundary
    assert splitter.feed("i?") == []
    assert splitter.feed(" ") == ["How is it on the 3. Mai?"]
    assert splitter.flush() == []


async def test_sentences_yields_speak_actions_with_options() -> None:
    async def tokens() -> AsyncIterator[str]:
        for token in ["Hel", "lo. ", "Say <emphasis>", "this. now</emphasis>. ", "Bye"]:
            yield token

    barge_in = BargeInConfig(strategy="none")
    items = [item async for item in sentences(tokens(), barge_in=barge_in)]
    assert items == [
        Speak(text="Hello.", barge_in=barge_in),
        Speak(ssml="<speak>Say <emphasis>this. now</emphasis>.</speak>", barge_in=barge_in),
        Speak(text="Bye", barge_in=barge_in),
    ]
