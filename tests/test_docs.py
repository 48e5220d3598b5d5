"""Every Python example in the README and docs/ runs, and the API reference names every export."""

from __future__ import annotations

import asyncio
import logging
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sipgate_ai_flow import Assistant
from sipgate_ai_flow.testing import FakeModel
from tests.helpers import event

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"```python\n(.*?)```", re.DOTALL)


FILE_MARK = "# file: "


def all_blocks() -> list[tuple[str, str]]:
    found = []
    for path in DOCS:
        for number, code in enumerate(BLOCK.findall(path.read_text()), 1):
            found.append((f"{path.relative_to(ROOT)}#{number}", code))
    return found


def blocks() -> list[tuple[str, str]]:
    """Blocks that run as they are."""
    return [(where, code) for where, code in all_blocks() if not code.startswith(FILE_MARK)]


def doc_test_files() -> list[tuple[str, str]]:
    """Blocks that are whole test files (``# file: test_x.py``): they run under pytest."""
    return [(where, code) for where, code in all_blocks() if code.startswith(FILE_MARK)]


@pytest.fixture(autouse=True)
def offline_model(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    # LLM examples read OPENAI_BASE_URL: they talk to the test kit's fake model, not the network.
    with FakeModel(default="Fine.") as model:
        monkeypatch.setenv("OPENAI_BASE_URL", model.base_url)
        yield


def test_the_docs_have_examples() -> None:
    assert len(blocks()) >= 10


@pytest.mark.parametrize(("where", "code"), blocks(), ids=[w for w, _ in blocks()])
def test_doc_example_runs(where: str, code: str, caplog: pytest.LogCaptureFixture) -> None:
    # Synchronous on purpose: examples may call asyncio.run themselves.
    namespace: dict[str, Any] = {"__name__": "doc_example"}
    exec(compile(code, where, "exec"), namespace)
    assistants = [v for v in namespace.values() if isinstance(v, Assistant)]
    # A documented assistant must get through a whole call without a handler failing.
    with caplog.at_level(logging.ERROR, "sipgate_ai_flow"):
        asyncio.run(whole_call(assistants))
    assert "handler failed" not in caplog.text


@pytest.mark.parametrize(("where", "code"), doc_test_files(), ids=[w for w, _ in doc_test_files()])
def test_documented_test_file_passes(where: str, code: str, tmp_path: Path) -> None:
    name = code.splitlines()[0].removeprefix(FILE_MARK).strip()
    (tmp_path / name).write_text(code)
    # As a user runs it: next to the assistant's module, in pytest-asyncio's default strict mode.
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            # pytest-asyncio 0.24+ warns while this one is unset (-W error would make that fatal).
            "-o",
            "asyncio_default_fixture_loop_scope=function",
            "-W",
            "error",
            str(tmp_path / name),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT / "examples",
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(r"\b[1-9]\d* passed", result.stdout)
    # pytest's own count; the aiflow summary line may name a test with "failed" in its name.
    assert not re.search(r"\b\d+ failed\b", result.stdout), result.stdout


def test_the_docs_have_test_files() -> None:
    assert len(doc_test_files()) >= 1


async def whole_call(assistants: list[Assistant]) -> None:
    for assistant in assistants:
        for kind in [
            "session_start",
            "user_speak",
            "dtmf_received",
            "user_input_timeout",
            "sms_failed",
            "assistant_speech_ended",
            "session_end",
        ]:
            await assistant.handle(event(kind, "doc-call"))


def test_api_reference_names_every_export() -> None:
    import sipgate_ai_flow.testing

    reference = (ROOT / "docs" / "api.md").read_text()
    names = [*sipgate_ai_flow.__all__, *sipgate_ai_flow.testing.__all__]
    missing = [
        name for name in names if name != "__version__" and not re.search(rf"[`, ]{name}\b", reference)
    ]
    assert missing == []


def test_every_cited_decision_is_defined() -> None:
    defined = set(re.findall(r"^\| (D\d+) \|", (ROOT / "docs" / "protocol.md").read_text(), re.MULTILINE))
    assert defined == {f"D{n}" for n in range(1, 19)}
    cited: dict[str, set[str]] = {}
    for path in [*ROOT.glob("src/**/*.py"), *ROOT.glob("tests/*.py"), *ROOT.glob("docs/*.md")]:
        for number in re.findall(r"\b(D\d{1,2})\b", path.read_text()):
            cited.setdefault(number, set()).add(str(path.relative_to(ROOT)))
    assert len(cited) >= 10  # the code does cite them
    undefined = {number: sorted(paths) for number, paths in cited.items() if number not in defined}
    assert undefined == {}
