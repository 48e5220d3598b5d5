"""examples/llm_agent.py against a local fake OpenAI-compatible server that streams slowly."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from sipgate_ai_flow import DEFAULT_HOLD, Assistant
from sipgate_ai_flow.cli.target import load_target
from sipgate_ai_flow.testing import EmulatedCall, Emulator
from tests.helpers import running_server

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
sys.path.insert(0, str(EXAMPLES))
from fake_llm import create_app  # noqa: E402

GREETING = "Hello, this is Example Corp. How can I help you?"


@pytest.fixture
def agent(monkeypatch: pytest.MonkeyPatch) -> Iterator[Assistant]:
    # The model takes 0.5 s to its first token, longer than the 0.4 s budget: a hold comes first.
    # (Emulated playback takes no real time, so the answer must start within two budgets to
    # follow a single hold.)
    with running_server(create_app(first_token_delay=0.5, token_delay=0.02)) as address:
        monkeypatch.setenv("OPENAI_BASE_URL", f"http://{address}/v1")
        monkeypatch.setenv("OPENAI_API_KEY", "test-key")
        assistant = load_target(f"{EXAMPLES / 'llm_agent.py'}:assistant")
        assistant.budget = 0.4
        yield assistant


@pytest.mark.parametrize("path", ["inprocess", "http", "ws"])
async def test_the_agent_holds_then_streams_and_keeps_the_conversation(agent: Assistant, path: str) -> None:
    if path == "inprocess":
        await converse(Emulator(agent))
        return
    with running_server(agent) as address:
        url = f"http://{address}/webhook" if path == "http" else f"ws://{address}/ws"
        await converse(Emulator(url, reply_window=0.03))


async def converse(emulator: Emulator) -> None:
    async with emulator.call() as call:
        await call.say("What are your opening hours?")
        await hear_all(call, "on the 3. Mai?")
        first = call.said
        await call.say("Thanks.")
        await hear_all(call, "on the 3. Mai?", times=2)
    assert first == [
        GREETING,
        DEFAULT_HOLD,
        "You said: What are your opening hours.",
        "This conversation has 3 messages.",  # system prompt, greeting, question
        "Is there anything else, e.g. opening hours on the 3. Mai?",
    ]
    assert call.said[5:] == [
        DEFAULT_HOLD,
        "You said: Thanks.",
        "This conversation has 5 messages.",  # + the answer it gave, + the new question
        "Is there anything else, e.g. opening hours on the 3. Mai?",
    ]
    assert call.violations == []


async def hear_all(call: EmulatedCall, ending: str, times: int = 1) -> None:
    """Listen until ``times`` answers ending in ``ending`` were spoken."""
    deadline = time.monotonic() + 10
    while sum(text.endswith(ending) for text in call.said) < times:
        if time.monotonic() > deadline:
            raise AssertionError(f"the answer never ended: {call.said}")
        await call.listen(0.2)
