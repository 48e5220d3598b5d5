"""examples/llm_agent.py: its scenario suite against the fake model on every path, and a call
from the terminal without an API key."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sipgate_ai_flow import Assistant
from sipgate_ai_flow.llm import DEFAULT_MODEL_FALLBACK
from sipgate_ai_flow.testing import Emulator, Evals, FakeModel, load_scenarios, run_scenarios
from tests.helpers import AIFLOW, ROOT, running_server
from tests.test_examples import load

SUITE = ROOT / "examples" / "scenarios" / "llm_agent.yaml"
RULES = ROOT / "examples" / "llm_agent_model.yaml"


@pytest.fixture
def fake() -> Iterator[FakeModel]:
    with FakeModel.from_file(RULES) as model:
        yield model


def read_lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture
def transcripts(tmp_path: Path) -> Path:
    return tmp_path / "calls.jsonl"


@pytest.fixture
def receptionist(fake: FakeModel, monkeypatch: pytest.MonkeyPatch, transcripts: Path) -> Assistant:
    monkeypatch.setenv("OPENAI_BASE_URL", fake.base_url)
    monkeypatch.setenv("AIFLOW_TRANSCRIPTS", str(transcripts))
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    assistant: Assistant = load("llm_agent").assistant
    return assistant


@pytest.mark.parametrize("path", ["inprocess", "http", "ws"])
async def test_the_receptionist_suite_passes(
    receptionist: Assistant, fake: FakeModel, path: str, transcripts: Path
) -> None:
    scenarios = load_scenarios([SUITE])
    assert len(scenarios) >= 8
    evals = Evals(base_url=fake.base_url, caller_model="caller", judge_model="judge", tool_log=fake)
    if path == "inprocess":
        results = await run_scenarios(scenarios, Emulator(receptionist), evals=evals)
    else:
        with running_server(receptionist) as address:
            url = f"http://{address}/webhook" if path == "http" else f"ws://{address}/ws"
            results = await run_scenarios(scenarios, Emulator(url, reply_window=0.2), evals=evals)
    assert [(r.scenario.name, r.failures) for r in results if not r.passed] == []
    assert fake.unmatched == []
    # Each call's transcript, written as JSON lines: every call ended, so every answer is there.
    entries = read_lines(transcripts)
    calls = {e["session_id"] for e in entries}
    assert len(calls) == len(results)
    answers = [e for e in entries if e["kind"] == "assistant"]
    assert sum(e["said"] == ["Hello, this is Example Corp. How can I help you?"] for e in answers) == len(
        calls
    )
    looked_up = [t for e in answers for t in e["tools"] if t["name"] == "opening_hours"]
    assert looked_up
    assert all(e["usage"] or DEFAULT_MODEL_FALLBACK in e["said"] for e in answers if e["requests"])


def test_aiflow_call_talks_to_the_receptionist_without_an_api_key(fake: FakeModel, tmp_path: Path) -> None:
    # Issue 17, item 6: without OPENAI_API_KEY every turn failed with "Illegal header value".
    script = tmp_path / "caller.txt"
    script.write_text("When are you open on Saturday?\nbye\n")
    env = {k: v for k, v in os.environ.items() if k != "OPENAI_API_KEY"}
    result = subprocess.run(
        [str(AIFLOW), "call", "examples/llm_agent.py:assistant", "--script", str(script)],
        cwd=ROOT,
        env={**env, "OPENAI_BASE_URL": fake.base_url},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "On Saturday we are open 10 am to 2 pm." in result.stdout
    assert "Goodbye!" in result.stdout
    assert DEFAULT_MODEL_FALLBACK not in result.stdout
    assert "Illegal header" not in result.stdout + result.stderr
    assert all("authorization" not in headers for headers in fake.request_headers)
