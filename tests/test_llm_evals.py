"""Scenario evals: tool_called, the LLM judge and the simulated caller, against the fake model."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from sipgate_ai_flow import Assistant
from sipgate_ai_flow.llm import Agent, tool
from sipgate_ai_flow.testing import (
    Emulator,
    EvalError,
    Evals,
    FakeModel,
    Scenario,
    ScenarioError,
    load_scenarios,
    run_scenario,
    transcript_text,
)


@tool
def lookup(item: str) -> str:
    """Look an item up."""
    return f"{item} is in stock"


@pytest.fixture
def fake() -> Iterator[FakeModel]:
    with FakeModel() as model:
        yield model


@pytest.fixture
def emulator(fake: FakeModel) -> Emulator:
    agent = Agent(
        "Shop assistant.",
        model="agent",
        base_url=fake.base_url,
        greeting="Hi, how can I help?",
        tools=[lookup],
    )
    return Emulator(agent.attach(Assistant()))


def evals(fake: FakeModel, *, tool_log: FakeModel | None = None) -> Evals:
    return Evals(base_url=fake.base_url, caller_model="caller", judge_model="judge", tool_log=tool_log)


def scenario(tmp_path: Path, text: str) -> Scenario:
    path = tmp_path / "s.yaml"
    path.write_text(text)
    [loaded] = load_scenarios([path])
    return loaded


async def test_tool_called_passes_and_fails_by_the_tool_log(
    fake: FakeModel, emulator: Emulator, tmp_path: Path
) -> None:
    fake.add(
        model="agent",
        when="chairs",
        reply=[{"tool_calls": [{"name": "lookup", "arguments": {"item": "chairs"}}]}, "Yes."],
    )
    fake.add(model="agent", reply="No idea.")
    loaded = scenario(
        tmp_path,
        """
steps:
  - say: any chairs?
  - expect: {tool_called: lookup}
  - say: any tables?
  - expect: {tool_called: lookup}
expect: {tool_called: [lookup, transfer_call]}
""",
    )
    result = await run_scenario(loaded, emulator, evals=evals(fake, tool_log=fake))
    assert result.failures == [
        "step 4 (after say 'any tables?'): expected a call of the tool 'lookup'; tools called: []",
        "end of call: expected a call of the tool 'transfer_call'; tools called: ['lookup']",
    ]
    without_log = await run_scenario(loaded, emulator, evals=evals(fake))
    assert without_log.failures[0].endswith(
        "tool_called needs a tool log: run with Evals(tool_log=...), e.g. the fake model"
    )


async def test_the_judge_passes_fails_and_must_answer_pass_or_fail(
    fake: FakeModel, emulator: Emulator, tmp_path: Path
) -> None:
    fake.add(model="agent", reply="We have chairs.")
    fake.add(
        model="judge",
        matches="Assistant: We have chairs[\\s\\S]*Statement: the caller heard about chairs",
        reply="PASS",
    )
    fake.add(model="judge", when="tables", reply="FAIL\nNobody mentioned tables.")
    fake.add(model="judge", reply="Maybe?")
    text = "steps: [{say: any chairs}]\nexpect: {judge: %s}\n"
    passed = await run_scenario(
        scenario(tmp_path, text % "the caller heard about chairs"), emulator, evals=evals(fake)
    )
    assert passed.failures == []
    failed = await run_scenario(
        scenario(tmp_path, text % "the caller heard about tables"), emulator, evals=evals(fake)
    )
    assert failed.failures == [
        "end of call: the judge does not find that 'the caller heard about tables': Nobody mentioned tables."
    ]
    vague = await run_scenario(scenario(tmp_path, text % "something else"), emulator, evals=evals(fake))
    assert vague.failures == ["EvalError: the judge answered neither PASS nor FAIL: 'Maybe?'"]
    judged = next(r for r in fake.requests if r["model"] == "judge")
    assert (
        "Transcript:\nAssistant: Hi, how can I help?\nCaller: any chairs\nAssistant: We have chairs."
        in judged["messages"][1]["content"]
    )


async def test_a_simulated_caller_talks_until_done_or_out_of_turns(
    fake: FakeModel, emulator: Emulator, tmp_path: Path
) -> None:
    fake.add(model="caller", when="how can i help", reply="Do you have chairs?")
    fake.add(model="caller", when="plenty", reply="Great, thanks. Bye! [done]")
    fake.add(model="caller", reply="Hm, what?")
    fake.add(model="agent", when="chairs", reply="Plenty of chairs.")
    fake.add(model="agent", reply="Sorry?")
    done = await run_scenario(
        scenario(tmp_path, "steps: [{simulate: {goal: buy a chair, max_turns: 5}}]\n"),
        emulator,
        evals=evals(fake),
    )
    assert done.failures == []
    assert done.call is not None
    assert [e["text"] for e in done.call.events if e["type"] == "user_speak"] == [
        "Do you have chairs?",
        "Great, thanks. Bye!",
    ]
    first = next(r for r in fake.requests if r["model"] == "caller")
    assert "buy a chair" in first["messages"][0]["content"]
    assert first["messages"][1:] == [{"role": "user", "content": "Hi, how can I help?"}]
    fake.rules.clear()
    fake.add(model="caller", reply="Hm, what?")
    fake.add(model="agent", reply="Sorry?")
    capped = await run_scenario(
        scenario(tmp_path, "steps: [{simulate: {goal: chat, max_turns: 3}}]\n"), emulator, evals=evals(fake)
    )
    assert capped.call is not None
    assert sum(e["type"] == "user_speak" for e in capped.call.events) == 3


async def test_an_unreachable_eval_model_fails_the_scenario_readably(
    emulator: Emulator, fake: FakeModel, tmp_path: Path
) -> None:
    fake.add(model="agent", reply="Hello there.")
    unreachable = Evals(base_url="http://127.0.0.1:9/v1", timeout=2)
    result = await run_scenario(
        scenario(tmp_path, "steps: [{simulate: {goal: x}}]\n"), emulator, evals=unreachable
    )
    assert len(result.failures) == 1
    assert result.failures[0].startswith("EvalError: the eval model 'gpt-4o-mini' failed: APIConnectionError")


def test_bad_eval_steps_name_the_field(tmp_path: Path) -> None:
    with pytest.raises(
        ScenarioError, match=r"steps\[0\]\.simulate\.max_turns: Input should be less than or equal to 50"
    ):
        scenario(tmp_path, "steps: [{simulate: {goal: x, max_turns: 99}}]\n")
    with pytest.raises(ScenarioError, match=r"expect\.judge: String should have at least 1 character"):
        scenario(tmp_path, "steps: [{say: hi}]\nexpect: {judge: ''}\n")


async def test_the_transcript_shows_both_sides(fake: FakeModel, emulator: Emulator) -> None:
    fake.add(model="agent", reply="Noted.")
    async with emulator.call() as call:
        await call.say("hello")
        await call.press("5")
    assert transcript_text(call).splitlines() == [
        "Assistant: Hi, how can I help?",
        "Caller: hello",
        "Assistant: Noted.",
        "[The caller presses 5]",
        "Assistant: Noted.",
        "[The caller hangs up]",
    ]


def test_evals_read_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIFLOW_EVAL_MODEL", "m")
    monkeypatch.setenv("AIFLOW_EVAL_JUDGE_MODEL", "j")
    monkeypatch.setenv("OPENAI_BASE_URL", "http://x/v1")
    monkeypatch.delenv("AIFLOW_EVAL_BASE_URL", raising=False)
    monkeypatch.delenv("AIFLOW_EVAL_CALLER_MODEL", raising=False)
    configured = Evals()
    assert (configured.caller_model, configured.judge_model, configured.base_url) == ("m", "j", "http://x/v1")
    assert isinstance(EvalError("x"), Exception)
