"""Every Python example in the README and docs/ runs, and the API reference names every export."""

from __future__ import annotations

import asyncio
import logging
import re
from pathlib import Path
from typing import Any

import pytest

import sipgate_ai_flow
from sipgate_ai_flow import Assistant
from tests.helpers import event

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"```python\n(.*?)```", re.DOTALL)


def blocks() -> list[tuple[str, str]]:
    found = []
    for path in DOCS:
        for number, code in enumerate(BLOCK.findall(path.read_text()), 1):
            found.append((f"{path.relative_to(ROOT)}#{number}", code))
    return found


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
    reference = (ROOT / "docs" / "api.md").read_text()
    missing = [
        name for name in sipgate_ai_flow.__all__ if name != "__version__" and f"`{name}" not in reference
    ]
    assert missing == []
