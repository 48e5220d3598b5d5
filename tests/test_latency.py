"""Turn latency in the test kit: ``within_ms`` in scenarios, each turn's latency on every transport.

The slow handler sleeps 600 ms against limits of 300 ms, and fast ones answer at once: margins no
loaded machine closes.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from sipgate_ai_flow import Assistant
from sipgate_ai_flow.testing import Emulator, Scenario, ScenarioError, load_scenarios, run_scenario
from sipgate_ai_flow.testing.latency import Latency, Turn, percentile
from tests.helpers import running_server
from tests.latency_bot import SLOW_S, make_bot


@pytest.fixture(params=["inprocess", "http", "ws"])
def emulator(request: pytest.FixtureRequest) -> Iterator[Emulator]:
    yield from _emulator(request.param, make_bot())


@pytest.fixture(params=["inprocess", "http", "ws"])
def held(request: pytest.FixtureRequest) -> Iterator[Emulator]:
    """The bot with a 300 ms budget: a slow answer is preceded by the hold."""
    yield from _emulator(request.param, make_bot(budget=0.3))


def _emulator(via: str, assistant: Assistant) -> Iterator[Emulator]:
    if via == "inprocess":
        yield Emulator(assistant)
        return
    with running_server(assistant) as address:
        yield Emulator(f"http://{address}/webhook" if via == "http" else f"ws://{address}/ws")


def scenario(tmp_path: Path, text: str) -> Scenario:
    path = tmp_path / "s.yaml"
    path.write_text(text)
    [loaded] = load_scenarios([path])
    return loaded


@pytest.mark.serial  # its answers must come within a time a busy machine can miss
async def test_within_ms_passes_a_fast_answer(emulator: Emulator, tmp_path: Path) -> None:
    fast = scenario(
        tmp_path,
        """
steps:
  - expect: {said: Hello, within_ms: 300}
  - say: fast
  - expect: {said: you said fast, within_ms: 300}
""",
    )
    result = await run_scenario(fast, emulator)
    assert result.passed, result.failures
    assert [(s.number, s.description, s.within_ms) for s in result.steps] == [
        (0, "the call's start", 300),
        (2, "say 'fast'", 300),
    ]
    assert all(s.latency_ms is not None and s.latency_ms < 300 for s in result.steps)
    assert [t.event for t in result.turns] == ["session_start", "user_speak"]


async def test_within_ms_fails_a_slow_answer_and_says_how_slow(emulator: Emulator, tmp_path: Path) -> None:
    slow = scenario(tmp_path, "steps:\n  - say: slow\n  - expect: {said: you said slow, within_ms: 300}\n")
    result = await run_scenario(slow, emulator)
    assert len(result.failures) == 1, result.failures
    [failure] = result.failures
    prefix = (
        "step 2 (after say 'slow'): expected the first action within 300 ms of user_speak; it came after "
    )
    assert failure.startswith(prefix), failure
    measured = float(failure.removeprefix(prefix).split(" ms")[0])
    assert SLOW_S * 1000 <= measured < 5000
    assert failure.endswith("ms (speak)")
    [step] = [s for s in result.steps if s.number == 1]
    assert step.latency_ms == pytest.approx(measured, abs=1)
    assert step.within_ms == 300


async def test_a_hold_is_the_first_action(held: Emulator, tmp_path: Path) -> None:
    # The caller hears the hold at the budget: that is the turn's first action, not the answer.
    crawl = scenario(
        tmp_path,
        """
steps:
  - say: crawl
  - expect: {said: One moment, within_ms: 1000}
""",
    )
    result = await run_scenario(crawl, held)
    assert result.passed, result.failures
    [step] = [s for s in result.steps if s.number == 1]
    assert step.turn is not None
    assert step.turn.action == "speak"
    assert step.latency_ms is not None
    assert step.latency_ms < 1000


async def test_no_answer_at_all_fails_within_ms(emulator: Emulator, tmp_path: Path) -> None:
    silent = scenario(tmp_path, "steps:\n  - say: nothing\n  - expect: {within_ms: 300}\n")
    result = await run_scenario(silent, emulator)
    [failure] = result.failures
    assert failure.startswith(
        "step 2 (after say 'nothing'): expected the first action within 300 ms of user_speak; "
        "no action answered it"
    ), failure
    assert result.turns[-1].latency_ms is None
    assert result.latency.unanswered == 1


async def test_within_ms_for_the_whole_call_names_the_slow_step(emulator: Emulator, tmp_path: Path) -> None:
    # The caller listens after "slow": over a WebSocket the answer comes after the reply window,
    # and a caller who spoke again at once would have cancelled it.
    text = "steps: [{say: fast}, {say: slow}, {listen: 2}, {say: nothing}]\nexpect: {within_ms: 300}\n"
    result = await run_scenario(scenario(tmp_path, text), emulator)
    [failure] = result.failures
    assert failure.startswith(
        "end of call: expected every first action within 300 ms; user_speak of step 2 (say 'slow') "
        "was answered after "
    ), failure
    # Unanswered turns (the step "nothing") are left to the steps' own expectations.
    assert result.latency.count == 3
    assert result.latency.unanswered == 1


async def test_a_keypad_step_is_timed_by_its_last_key(emulator: Emulator, tmp_path: Path) -> None:
    # The caller waits after the "#": the keys before it need no answer.
    pin = scenario(tmp_path, "steps: [{press: '12#'}, {expect: {said: Thank you, within_ms: 300}}]\n")
    result = await run_scenario(pin, emulator)
    assert result.passed, result.failures
    [step] = [s for s in result.steps if s.number == 1]
    assert [(t.event, t.answered) for t in step.turns] == [
        ("dtmf_received", False),
        ("dtmf_received", False),
        ("dtmf_received", True),
    ]
    assert step.turn is step.turns[-1]


async def test_a_step_without_an_awaited_event_cannot_be_timed(tmp_path: Path) -> None:
    text = "steps: [{say: fast}, {listen: 0}, {expect: {within_ms: 300}}]\n"
    result = await run_scenario(scenario(tmp_path, text), Emulator(make_bot()))
    assert result.failures == [
        "step 3 (after listen 0.0): within_ms: the step sent no event the assistant answers "
        "(dtmf_received, session_start, user_input_timeout, user_speak)"
    ]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("-5", "steps[0].expect.within_ms: Input should be greater than 0"),
        ("0", "steps[0].expect.within_ms: Input should be greater than 0"),
        ("fast", "steps[0].expect.within_ms: Input should be a valid number"),
        ("'300'", "steps[0].expect.within_ms: Input should be a valid number"),
        ("true", "steps[0].expect.within_ms: Input should be a valid number"),
        (".inf", "steps[0].expect.within_ms: Input should be a finite number"),
    ],
)
def test_bad_within_ms_names_the_field(tmp_path: Path, value: str, message: str) -> None:
    with pytest.raises(ScenarioError) as caught:
        scenario(tmp_path, f"steps: [{{expect: {{within_ms: {value}}}}}]\n")
    assert message in str(caught.value)


async def test_each_turn_of_a_call_has_its_latency(emulator: Emulator) -> None:
    async with emulator.call() as call:
        await call.say("fast")
        await call.say("slow")
        await call.listen(2)  # over a WebSocket the slow answer comes after the reply window
        await call.say("nothing")
    assert [(t.event, t.action) for t in call.turns] == [
        ("session_start", "speak"),
        ("user_speak", "speak"),
        ("user_speak", "speak"),
        ("user_speak", None),
    ]
    slow = call.turns[2].latency_ms
    assert slow is not None
    assert SLOW_S * 1000 <= slow < 5000
    assert call.latencies == [t.latency_ms for t in call.turns[:3]]
    assert call.latency.max == slow
    assert call.latency.unanswered == 1
    # The first action of each turn carries the latency in the transcript (and recordings).
    timed = [e for e in call.transcript if e.kind == "action" and e.latency_ms is not None]
    assert [e.latency_ms for e in timed] == call.latencies
    assert timed[2].to_dict()["latency_ms"] == round(slow, 1)


def test_percentiles_are_measured_values() -> None:
    values = [float(v) for v in range(1, 21)]  # 1..20
    assert percentile(values, 0.5) == 10
    assert percentile(values, 0.95) == 19
    assert percentile([7.0], 0.95) == 7
    assert percentile([], 0.5) is None
    turns = [Turn("user_speak", 1, 0, 10), Turn("user_speak", 2, 0, None), Turn("user_speak", 3, 0, 30)]
    summary = Latency.of(turns)
    assert (summary.count, summary.unanswered, summary.p50, summary.p95, summary.max) == (2, 1, 10, 30, 30)
    assert str(summary) == "p50 10 ms, p95 30 ms"
