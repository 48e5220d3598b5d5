"""Scenario files: the support bot's suite passes over every path; broken ones fail readably."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from sipgate_ai_flow.testing import (
    Emulator,
    Expect,
    ScenarioError,
    load_scenarios,
    run_scenario,
    run_scenarios,
)
from tests.helpers import running_server
from tests.probe import make_probe
from tests.test_examples import load

SUITE = Path(__file__).resolve().parent.parent / "examples" / "scenarios" / "support_bot.yaml"


@pytest.fixture(params=["inprocess", "http", "ws"])
def support_bot(request: pytest.FixtureRequest) -> Iterator[Emulator]:
    assistant = load("support_bot").assistant
    if request.param == "inprocess":
        yield Emulator(assistant)
        return
    with running_server(assistant) as address:
        url = f"http://{address}/webhook" if request.param == "http" else f"ws://{address}/ws"
        yield Emulator(url, reply_window=0.03)


async def test_the_support_bot_suite_passes(support_bot: Emulator) -> None:
    scenarios = load_scenarios([SUITE])
    assert len(scenarios) >= 8
    results = await run_scenarios(scenarios, support_bot)
    assert [(r.scenario.name, r.failures) for r in results if not r.passed] == []
    assert all(r.call is not None and r.call.violations == [] for r in results)


def write(tmp_path: Path, text: str, name: str = "s.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


async def test_failed_expectations_say_what_was_heard(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
steps:
  - say: queue
  - expect: {said: three, actions: [speak]}
  - say: hangup
expect: {end_reason: transferred, transferred_to: "4921"}
""",
    )
    [scenario] = load_scenarios([path])
    assert scenario.name == "s"
    result = await run_scenario(scenario, Emulator(make_probe()))
    assert not result.passed
    assert result.failures == [
        "step 2 (after say 'queue'): expected speech containing 'three'; said: 'one two'",
        "step 2 (after say 'queue'): expected actions ['speak'], got ['speak', 'speak']",
        "end of call: expected a transfer to 4921, got None",
        "end of call: expected the call to end by transferred, it ended by assistant_hangup",
    ]


async def test_every_expectation_kind_can_pass(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        json.dumps(
            {
                "scenarios": [
                    {
                        "name": "all kinds",
                        "call": {"sms_failure": "unknown", "from": "4915111111111"},
                        "steps": [
                            {"expect": {"said_matches": r"^hello, this is", "not_said": "bye"}},
                            {"say": "silent"},
                            {"expect": {"said_nothing": True, "actions": []}},
                            {"say": "sms"},
                            {"expect": {"sms_to": "+4915100000", "sms_contains": "BY TEXT"}},
                            {"listen": 0},
                            {"expect": {"said": "sms failed unknown"}},
                            {"say": "settings"},
                            {"say": "transfer"},
                        ],
                        "expect": {
                            "transferred_to": "4921100200",
                            "ended": True,
                            "hung_up": False,
                            "settings": ["mix_audio", "configure_transcription", "configure_voice_to_voice"],
                            "violations": [],
                        },
                    }
                ]
            }
        ),
        "all.json",
    )
    result = await run_scenario(load_scenarios([path])[0], Emulator(make_probe()))
    assert result.failures == []


async def test_violations_fail_a_scenario_unless_expected(tmp_path: Path) -> None:
    from tests.test_emulator_violations import BROKEN

    unexpected = write(tmp_path, "steps: [{say: missing id}]\n", "a.yaml")
    expected = write(
        tmp_path, "steps: [{say: missing id}]\nexpect: {violations: [missing_session_id]}\n", "b.yaml"
    )
    with running_server(BROKEN) as address:
        emulator = Emulator(f"http://{address}/webhook")
        first, second = await run_scenarios(load_scenarios([unexpected, expected]), emulator)
    assert first.failures == [
        "violation: missing_session_id (in reply to user_speak): speak has no session_id",
        "violation: reply_to_session_end (in reply to session_end): "
        "no action may answer session_end; the service ignores it",
    ]
    # Final expectations are checked before the caller hangs up, so session_end is not in them.
    assert second.passed


async def test_strict_scenarios_stop_at_the_first_violation(tmp_path: Path) -> None:
    from tests.test_emulator_violations import BROKEN

    path = write(tmp_path, "strict: true\nsteps: [{say: both}, {say: fine}]\n")
    with running_server(BROKEN) as address:
        result = await run_scenario(load_scenarios([path])[0], Emulator(f"http://{address}/webhook"))
    assert result.failures[0].startswith("strict mode: text_and_ssml")
    assert result.call is not None
    assert result.call.end_reason == "strict_failure"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("steps: [{say: hi, press: '1'}]", "steps[0]: a step has exactly one of"),
        ("steps: [{shout: hi}]", "steps[0].shout: Extra inputs are not permitted"),
        ("steps: [{press: '12x'}]", "steps[0].press: String should match pattern"),
        ("steps: [{expect: {said_matches: '('}}]", "steps[0].expect.said_matches: not a regular expression"),
        ("steps: [{expect: {violations: [rude]}}]", "steps[0].expect.violations[0]: Input should be"),
        ("steps: []", "steps: List should have at least 1 item"),
        ("steps: [{say: hi}", "not valid YAML"),
    ],
)
def test_bad_scenario_files_name_the_field(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ScenarioError) as caught:
        load_scenarios([write(tmp_path, text)])
    assert message in str(caught.value)
    assert str(tmp_path / "s.yaml") in str(caught.value)


def test_shorthand_steps_and_folders(tmp_path: Path) -> None:
    write(tmp_path, "- steps: [listen, hangup]\n- steps: [{silence: 2}]\n", "list.yml")
    first, second = load_scenarios([tmp_path])
    assert [s.kind for s in first.steps] == ["listen", "hangup"]
    assert (first.name, second.name) == ("list #1", "list #2")
    with pytest.raises(ScenarioError, match="no such file"):
        load_scenarios([tmp_path / "missing.yaml"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(ScenarioError, match="no scenario files"):
        load_scenarios([tmp_path / "empty"])


def test_expect_checks_case_insensitively() -> None:
    expect = Expect(said=["HELLO", "probe"])
    assert expect.about_speech
    assert not expect.needs_playback


async def test_a_scenario_sets_the_flows_number_and_the_speaking_rate(tmp_path: Path) -> None:
    # Steps at fixed moments need the speech at the pace it had when the scenario was made.
    path = write(
        tmp_path,
        """
call: {direction: outbound, to: "4917000000", flow_number: "4930123456"}
words_per_minute: 60
steps:
  - wait_until: 2500
  - expect: {said_matches: "^hello"}
""",
    )
    [scenario] = load_scenarios([path])
    result = await run_scenario(scenario, Emulator(make_probe()))
    assert result.passed, result.failures
    assert result.call is not None
    session = result.call.session
    assert (session.phone_number, session.from_phone_number, session.to_phone_number) == (
        "4930123456",
        "4930123456",
        "4917000000",
    )
    greeting = next(e for e in result.call.events if e["type"] == "assistant_speak")
    assert greeting["duration_ms"] == len(greeting["text"].split()) * 1000  # a word a second
