"""``aiflow test``, ``aiflow call`` (scripted and in a real terminal) and ``aiflow replay``."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import aiflow_serve
from tests.test_cli import AIFLOW, ROOT, aiflow, served_support_bot

__all__ = ["served_support_bot"]  # a fixture, used by name

BOT = "examples/support_bot.py:assistant"
SUITE = "examples/scenarios/support_bot.yaml"
ANSI = re.compile(r"\x1b\[[0-9;?]*[a-zA-Z]")


def test_scenarios_pass_in_process() -> None:
    result = aiflow("test", SUITE, "--target", BOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "8 scenarios: 8 passed, 0 failed" in result.stdout
    assert "PASS greeting, then goodbye by keypad" in result.stdout


@pytest.mark.parametrize("url", ["http://{}/webhook", "ws://{}/ws"])
def test_scenarios_pass_against_the_served_bot(served_support_bot: str, url: str) -> None:
    target = url.format(served_support_bot)
    result = aiflow("test", SUITE, "--target", target, "--token", "cli-secret")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "8 passed, 0 failed" in result.stdout
    refused = aiflow("test", SUITE, "--target", target, "--token", "wrong")
    assert refused.returncode == 1
    assert "8 failed" in refused.stdout
    assert "HTTP 401" in refused.stdout


def test_a_failing_scenario_exits_1_and_shows_the_call(tmp_path: Path) -> None:
    scenario = tmp_path / "wrong.yaml"
    scenario.write_text("name: expects too much\nsteps:\n  - press: '2'\n  - expect: {said: free pizza}\n")
    result = aiflow("test", str(scenario), "--target", BOT)
    assert result.returncode == 1
    assert "FAIL expects too much" in result.stdout
    assert "step 2 (after press '2'): expected speech containing 'free pizza'" in result.stdout
    assert 'assistant "I have sent you a text message.' in result.stdout  # the transcript
    assert "1 scenarios: 0 passed, 1 failed" in result.stdout


def test_a_bad_scenario_file_exits_2_and_names_the_field(tmp_path: Path) -> None:
    scenario = tmp_path / "bad.yaml"
    scenario.write_text("steps:\n  - say: hello\n    press: '1'\n")
    result = aiflow("test", str(scenario), "--target", BOT)
    assert result.returncode == 2
    assert "steps[0]" in result.stdout
    assert "exactly one of" in result.stdout


def test_a_bad_target_exits_2() -> None:
    result = aiflow("test", SUITE, "--target", "examples/nope.py:assistant")
    assert result.returncode == 2
    assert "no such file" in result.stderr


@pytest.mark.parametrize("scheme", ["http", "ws"])
def test_call_says_once_that_the_target_cannot_be_reached(scheme: str) -> None:
    path = "webhook" if scheme == "http" else "ws"
    result = aiflow("call", f"{scheme}://127.0.0.1:9/{path}", stdin="hello\nbye\n")
    assert result.returncode == 1
    lines = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert lines[0].startswith("error: cannot ")
    assert "127.0.0.1:9" in lines[0]
    assert "b'" not in lines[0]
    assert "Error(" not in lines[0]


@pytest.mark.parametrize("path", ["webhook", "ws"])
def test_call_says_once_that_the_token_was_refused(served_support_bot: str, path: str) -> None:
    scheme = "http" if path == "webhook" else "ws"
    url = f"{scheme}://{served_support_bot}/{path}"
    result = aiflow("call", url, "--token", "wrong", stdin="hello\nbye\n")
    assert result.returncode == 1
    lines = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert "HTTP 401 (wrong or missing token?)" in lines[0]


def test_a_scripted_call_prints_the_transcript_and_records_it(tmp_path: Path) -> None:
    record = tmp_path / "call.jsonl"
    script = "hello\n/press 2\n/wait 7\n/raw\nbye\n"
    result = aiflow("call", BOT, "--record", str(record), stdin=script)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    for line in [
        'assistant "Welcome to Example Corp.',
        'you "hello"',
        "you press 2",
        "assistant sends an SMS to 4915100000",
        "(silence: user_input_timeout)",
        '← action {"session_id"',
        "assistant hangs up",
        "call ended: the assistant hung up; no violations",
    ]:
        assert line in out
    lines = [json.loads(line) for line in record.read_text().splitlines()]
    assert lines[0]["kind"] == "call"
    assert lines[-1] == {"kind": "end", "at_ms": lines[-1]["at_ms"], "end_reason": "assistant_hangup"}
    assert [line["step"] for line in lines if line["kind"] == "step"][1:] == [
        {"say": "hello"},
        {"press": "2"},
        {"silence": 7.0},
        {"say": "bye"},
        {"listen": 0.0},  # at the end of the script the caller listens to the end
    ]


@pytest.mark.parametrize(
    ("script", "speech", "control"),
    [
        ("/press 3\n", "Goodbye!", "assistant hangs up"),
        ("/press 1\n", "Connecting you to an agent.", "assistant transfers the call to 4921100200"),
    ],
)
def test_the_transcript_follows_what_the_caller_hears(script: str, speech: str, control: str) -> None:
    result = aiflow("call", BOT, stdin=script)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    spoken = next(i for i, line in enumerate(lines) if speech in line)
    done = next(i for i, line in enumerate(lines) if control in line)
    assert spoken < done  # the speech queued ahead of the hangup or transfer plays first
    seconds = float(lines[spoken].split("(")[-1].split(" s")[0])  # "(2.6 s, after 1 ms)"
    started, carried_out = (float(lines[i].split()[0].split(":")[1]) for i in (spoken, done))
    assert carried_out == pytest.approx(started + seconds, abs=0.15)


def test_replay_finds_a_changed_reply(tmp_path: Path) -> None:
    record = tmp_path / "call.jsonl"
    assert aiflow("call", BOT, "--record", str(record), stdin="/press 2\nbye\n").returncode == 0
    same = aiflow("replay", str(record), "--target", BOT)
    assert same.returncode == 0, same.stdout
    assert "same: 4 steps replayed" in same.stdout
    changed = tmp_path / "support_bot.py"
    source = (ROOT / "examples" / "support_bot.py").read_text()
    changed.write_text(source.replace("I have sent you a text message.", "A text is on its way."))
    differs = aiflow("replay", str(record), "--target", f"{changed}:assistant")
    assert differs.returncode == 1
    assert "differs step 1 (press '2'): action 2 was speak 'I have sent you a text message." in differs.stdout
    assert "now speak 'A text is on its way." in differs.stdout
    assert "1 of 4 steps answered differently" in differs.stdout


def test_replay_rejects_a_file_that_is_not_a_recording(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"kind": "step"}\n')
    result = aiflow("replay", str(bad), "--target", BOT)
    assert result.returncode == 2
    assert "expected the 'call' header line" in result.stderr


class Terminal:
    """``aiflow call`` in a real pseudo-terminal, as a person would run it."""

    def __init__(self, *args: str) -> None:
        self.master, slave = pty.openpty()
        env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "200", "TERM": "xterm"}
        self.process = subprocess.Popen(
            [str(AIFLOW), *args], stdin=slave, stdout=slave, stderr=slave, cwd=ROOT, env=env
        )
        os.close(slave)
        self.output = ""

    def expect(self, text: str, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.output:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"{text!r} did not appear; output so far:\n{self.output}")
            ready, _, _ = select.select([self.master], [], [], remaining)
            if ready:
                try:
                    chunk = os.read(self.master, 4096)
                except OSError:  # the child closed the terminal
                    chunk = b""
                if not chunk and self.process.poll() is not None:
                    raise AssertionError(f"{text!r} never appeared; output:\n{self.output}")
                self.output += ANSI.sub("", chunk.decode(errors="replace")).replace("\r", "")

    def type(self, line: str) -> None:
        os.write(self.master, (line + "\n").encode())

    def close(self) -> int:
        try:
            return self.process.wait(20)
        finally:
            os.close(self.master)


def test_an_interactive_call_in_a_terminal(tmp_path: Path) -> None:
    record = tmp_path / "live.jsonl"
    terminal = Terminal("call", BOT, "--wpm", "1200", "--record", str(record))
    try:
        terminal.expect("Type to speak")
        terminal.expect('assistant "Welcome to Example Corp.')
        terminal.type("/help")
        terminal.expect("/press KEYS")
        terminal.type("/raw")
        terminal.type("send me a text")
        terminal.expect("assistant sends an SMS to 4915100000")
        terminal.expect('← action {"session_id"')
        terminal.type("/press 3")
        terminal.expect("call ended: the assistant hung up; no violations")
    finally:
        code = terminal.close()
    assert code == 0, terminal.output
    # Real time passed: the greeting took its 1.4 s or so before the SMS prompt played.
    stamps = re.findall(r"^(\d+):(\d\d\.\d) assistant \"I have sent you", terminal.output, re.MULTILINE)
    assert stamps
    assert float(stamps[0][1]) >= 1.0
    # The live call, recorded with its timing, replays the same in virtual time.
    replayed = aiflow("replay", str(record), "--target", BOT)
    assert replayed.returncode == 0, replayed.stdout
    assert "same:" in replayed.stdout


def test_a_mistyped_command_does_not_end_the_call() -> None:
    script = "/wait soon\n/press x\n/interrupt 99999 hi\n/interrupt\n/bogus\n/press 3\n"
    result = aiflow("call", BOT, stdin=script)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "cannot read '/wait soon'" in out
    assert "press() takes keypad keys 0-9, *, #, A-D; got 'x'" in out
    assert "after_ms=99999 is past the end of what is playing" in out
    assert "interrupt() needs some text" in out
    assert "/press KEYS" in out  # /bogus shows the help
    assert "call ended: the assistant hung up; no violations" in out


LATENCY_SUITE = """
- name: fast
  steps:
    - expect: {said: Hello, within_ms: 300}
    - say: fast
    - expect: {said: you said fast, within_ms: 300}
- name: slow
  steps:
    - say: slow
    - expect: {within_ms: 300}
"""


@pytest.fixture
def served_latency_bot(tmp_path: Path) -> Iterator[str]:
    with aiflow_serve("tests/latency_bot.py:assistant", log=tmp_path / "serve.log") as (base, _):
        yield base


@pytest.mark.parametrize("url", ["http://{}/webhook", "ws://{}/ws"])
def test_the_json_report_holds_pass_fail_and_latencies(
    served_latency_bot: str, url: str, tmp_path: Path
) -> None:
    suite = tmp_path / "latency.yaml"
    suite.write_text(LATENCY_SUITE)
    report = tmp_path / "report.json"
    result = aiflow("test", str(suite), "--target", url.format(served_latency_bot), "--json", str(report))
    assert result.returncode == 1, result.stdout + result.stderr
    assert "FAIL slow" in result.stdout
    assert "step 1 say 'slow': user_speak → first action after " in result.stdout  # a step with a limit
    assert "(limit 300 ms)" in result.stdout
    assert re.search(
        r"2 scenarios: 1 passed, 1 failed; first action p50 \d+ ms, p95 \d+ ms over 4 turns", result.stdout
    )
    document = json.loads(report.read_text())
    assert document["version"] == 1
    assert document["passed"] is False
    assert document["target"] == url.format(served_latency_bot)
    assert {k: document["summary"][k] for k in ("scenarios", "passed", "failed")} == {
        "scenarios": 2,
        "passed": 1,
        "failed": 1,
    }
    fast, slow = document["scenarios"]
    assert (fast["name"], fast["passed"], fast["failures"]) == ("fast", True, [])
    assert [(s["step"], s["event"], s["within_ms"]) for s in fast["steps"]] == [
        (0, "session_start", 300),
        (2, "user_speak", 300),
    ]
    assert all(0 <= s["latency_ms"]["p50"] < 300 for s in fast["steps"])
    assert (slow["name"], slow["passed"], slow["failed_runs"]) == ("slow", False, 1)
    [failure] = slow["failures"]
    assert "expected the first action within 300 ms of user_speak; it came after" in failure
    [slow_step] = [s for s in slow["steps"] if s["step"] == 1]
    assert 600 <= slow_step["latency_ms"]["p50"] < 5000
    assert slow_step["runs_ms"] == [slow_step["latency_ms"]["max"]]
    assert document["summary"]["latency_ms"]["max"] == slow_step["latency_ms"]["max"]
    assert document["summary"]["latency_ms"]["count"] == 4


def test_the_json_report_on_stdout_and_repeated_runs(tmp_path: Path) -> None:
    suite = tmp_path / "latency.yaml"
    suite.write_text(LATENCY_SUITE)
    target = "tests/latency_bot.py:assistant"
    result = aiflow("test", str(suite), "--target", target, "--json", "-", "--repeat", "2")
    assert result.returncode == 1
    document = json.loads(result.stdout)  # nothing but the report on standard output
    assert "2 scenarios: 1 passed, 1 failed" in result.stderr
    assert [(s["runs"], s["failed_runs"]) for s in document["scenarios"]] == [(2, 0), (2, 2)]
    slow = document["scenarios"][1]
    assert [f.split(":")[0] for f in slow["failures"]] == ["run 1", "run 2"]
    [slow_step] = [s for s in slow["steps"] if s["step"] == 1]
    assert len(slow_step["runs_ms"]) == 2
    assert all(v >= 600 for v in slow_step["runs_ms"])
    assert slow_step["latency_ms"]["count"] == 2


def test_a_report_that_cannot_be_written_exits_2(tmp_path: Path) -> None:
    result = aiflow("test", SUITE, "--target", BOT, "--json", str(tmp_path / "missing" / "r.json"))
    assert result.returncode == 2
    assert "cannot write the report to" in result.stderr


@pytest.mark.parametrize("url", ["http://{}/webhook", "ws://{}/ws"])
def test_call_shows_each_turns_latency(served_latency_bot: str, url: str, tmp_path: Path) -> None:
    record = tmp_path / "call.jsonl"
    # Over a WebSocket the slow answer comes after the reply window: /listen 3 waits for it.
    target = url.format(served_latency_bot)
    result = aiflow("call", target, "--record", str(record), stdin="fast\nslow\n/listen 3\nbye\n")
    assert result.returncode == 0, result.stdout + result.stderr
    timed = dict(re.findall(r'assistant "([^"]+)" \(\d+\.\d s, after (\d+) ms\)', result.stdout))
    assert set(timed) == {"Hello.", "You said fast.", "You said slow.", "You said bye."}, result.stdout
    assert int(timed["You said fast."]) < 300
    assert 600 <= int(timed["You said slow."]) < 5000
    assert re.search(r"call ended: you hung up; no violations; first action p50 \d+ ms", result.stdout)
    lines = [json.loads(line) for line in record.read_text().splitlines()]
    recorded = [line["latency_ms"] for line in lines if line["kind"] == "action" and "latency_ms" in line]
    assert len(recorded) == 4
    assert 600 <= recorded[2] < 5000
