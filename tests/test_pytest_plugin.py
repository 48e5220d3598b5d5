"""The pytest plugin: its fixtures in this suite, and its options in a separate pytest run."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from sipgate_ai_flow import Assistant
from sipgate_ai_flow.testing import EmulatedCall, Emulator
from tests.helpers import running_server
from tests.latency_bot import make_bot
from tests.probe import make_probe

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def aiflow_target() -> Assistant:
    return make_probe()


async def test_the_call_fixture_is_a_started_call(aiflow_call: EmulatedCall) -> None:
    assert aiflow_call.last_said == "Hello, this is the probe."
    await aiflow_call.say("queue")
    assert aiflow_call.said == ["Hello, this is the probe.", "one", "two"]


def test_the_emulator_fixture_uses_virtual_time(aiflow_emulator: Emulator) -> None:
    assert not aiflow_emulator.realtime
    assert isinstance(aiflow_emulator.target, Assistant)


def run_pytest(tmp_path: Path, *args: str, marked: bool = True) -> subprocess.CompletedProcess[str]:
    test = tmp_path / "test_bot.py"
    test.write_text(
        "import pytest\n\n"
        + ("@pytest.mark.asyncio\n" if marked else "")
        + "async def test_greeting(aiflow_call):\n"
        "    assert 'Welcome to Example Corp' in aiflow_call.last_said\n"
        "    await aiflow_call.press('3')\n"
        "    await aiflow_call.listen()\n"
        "    assert aiflow_call.end_reason == 'assistant_hangup'\n"
    )
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(test), *args],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
        check=False,
    )


def test_a_command_line_target(tmp_path: Path) -> None:
    bot = ROOT / "examples" / "support_bot.py"
    result = run_pytest(tmp_path, "--aiflow-target", f"{bot}:assistant", "--aiflow-strict")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed" in result.stdout


def test_no_target_says_how_to_give_one(tmp_path: Path) -> None:
    result = run_pytest(tmp_path)
    assert result.returncode == 1
    assert "override the aiflow_target fixture or pass --aiflow-target" in result.stdout


@pytest.mark.parametrize("mode", ["strict", "auto"])
def test_unmarked_async_tests_run_in_any_asyncio_mode(tmp_path: Path, mode: str) -> None:
    bot = ROOT / "examples" / "support_bot.py"
    result = run_pytest(
        tmp_path, "--aiflow-target", f"{bot}:assistant", "-o", f"asyncio_mode={mode}", marked=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed" in result.stdout


async def test_a_call_fixture_has_each_turns_latency(aiflow_call: EmulatedCall) -> None:
    await aiflow_call.say("hello")
    await aiflow_call.press("1")
    assert [(t.event, t.action) for t in aiflow_call.turns] == [
        ("session_start", "speak"),
        ("user_speak", "speak"),
        ("dtmf_received", "speak"),
    ]
    assert len(aiflow_call.latencies) == 3
    assert aiflow_call.latency.count == 3
    assert aiflow_call.latency.p95 == max(aiflow_call.latencies)


def test_the_summary_ends_with_the_turns_latency(tmp_path: Path) -> None:
    # Served over HTTP: the slow turn's 600 ms are real, and the slowest turn names its test.
    test = tmp_path / "test_speed.py"
    test.write_text(
        "async def test_fast(aiflow_call):\n"
        "    await aiflow_call.say('fast')\n"
        "    assert aiflow_call.latency.p95 < 300\n"
        "\n"
        "async def test_slow(aiflow_call):\n"
        "    await aiflow_call.say('slow')\n"
        "    assert aiflow_call.latency.max >= 600\n"
        "    await aiflow_call.say('nothing')\n"
        "    assert aiflow_call.latency.unanswered == 1\n"
    )
    with running_server(make_bot()) as address:
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "pytest",
                "-q",
                "-p",
                "no:cacheprovider",
                "--aiflow-target",
                f"http://{address}/webhook",
                str(test),
            ],
            capture_output=True,
            text=True,
            cwd=tmp_path,
            timeout=120,
            check=False,
        )
    assert result.returncode == 0, result.stdout + result.stderr
    line = next(line for line in result.stdout.splitlines() if line.startswith("aiflow: "))
    assert re.fullmatch(
        r"aiflow: first action p50 \d+ ms, p95 \d+ ms over 4 turns, 1 unanswered; "
        r"slowest (\d+) ms \(user_speak in test_speed.py::test_slow\)",
        line,
    ), line
    slowest = re.search(r"slowest (\d+) ms", line)
    assert slowest is not None
    assert 600 <= int(slowest.group(1)) < 5000
