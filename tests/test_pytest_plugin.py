"""The pytest plugin: its fixtures in this suite, and its options in a separate pytest run."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from sipgate_ai_flow import Assistant
from sipgate_ai_flow.testing import EmulatedCall, Emulator
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
