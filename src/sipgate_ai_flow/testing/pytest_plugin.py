"""pytest plugin: fixtures that call your assistant through the AI Flow emulator.

Installed with the package (entry point ``aiflow``). Tell it what to call by overriding the
``aiflow_target`` fixture (an ``Assistant`` or a URL), or from the command line with
``--aiflow-target``; then use ``aiflow_emulator`` or ``aiflow_call`` in async tests::

    @pytest.fixture
    def aiflow_target():
        return assistant

    async def test_greets(aiflow_call):
        assert "Welcome" in aiflow_call.last_said
        assert aiflow_call.latency.p95 < 500  # first-action latency of its turns, in ms

The async fixtures need pytest-asyncio (the ``[pytest]`` extra). Async tests that take one of
these fixtures run on asyncio in any ``asyncio_mode``: the plugin marks them, so a project
needs no pytest-asyncio setting of its own. ``aiflow_fake_model`` is a scriptable
OpenAI-compatible model for LLM agents, offline.

The turns of every call placed through these fixtures are collected; the terminal summary ends
with their first-action latency (p50, p95 and the slowest turn, with its test).
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Callable, Iterator
from typing import TYPE_CHECKING, Any, TypeVar, cast

import pytest

from sipgate_ai_flow.testing.emulator import EmulatedCall, Emulator
from sipgate_ai_flow.testing.latency import Latency, Turn

if TYPE_CHECKING:
    from sipgate_ai_flow.testing.fake_model import FakeModel

__all__ = [
    "aiflow_call",
    "aiflow_emulator",
    "aiflow_fake_model",
    "aiflow_target",
    "pytest_addoption",
    "pytest_pycollect_makeitem",
    "pytest_terminal_summary",
]

_FIXTURES = frozenset({"aiflow_call", "aiflow_emulator", "aiflow_fake_model", "aiflow_target"})

F = TypeVar("F", bound=Callable[..., Any])
_TURNS = pytest.StashKey[list[tuple[str, list[Turn]]]]()
"""Each call's turns (the call's own list, filled as it goes), with the id of its test."""


def _async_fixture(func: F) -> F:
    # The plugin must load even where pytest-asyncio is missing; only the async fixture needs it.
    try:
        from pytest_asyncio import fixture  # noqa: PLC0415
    except ImportError:
        return cast("F", pytest.fixture(func))
    return cast("F", fixture(func))


def pytest_addoption(parser: pytest.Parser) -> None:
    """Command-line options to point the fixtures at a served assistant."""
    group = parser.getgroup("aiflow", "sipgate AI Flow emulator")
    group.addoption(
        "--aiflow-target", default=None, help="Call this instead: module:attr, file.py:attr or URL."
    )
    group.addoption("--aiflow-token", default=None, help="X-API-TOKEN for --aiflow-target.")
    group.addoption("--aiflow-strict", action="store_true", help="Fail a call on its first violation.")


@pytest.hookimpl(tryfirst=True)
def pytest_pycollect_makeitem(collector: pytest.Collector, name: str, obj: object) -> None:
    """Mark async tests that take this plugin's fixtures with ``asyncio``, as auto mode would.

    In pytest-asyncio's default strict mode an unmarked ``async def`` test fails with "async def
    functions are not natively supported"; running before pytest-asyncio turns the function into
    an item, the mark makes it an asyncio test without any setting in the user's project.
    """
    # A coroutine that is not a test keeps the mark without effect, as pytest ignores it.
    if not inspect.iscoroutinefunction(obj):
        return
    if _FIXTURES.isdisjoint(inspect.signature(obj).parameters):
        return
    pytest.mark.asyncio(obj)


@pytest.fixture
def aiflow_target() -> Any:
    """What the emulator calls: override this fixture (``--aiflow-target`` takes precedence)."""
    pytest.fail("no assistant to call: override the aiflow_target fixture or pass --aiflow-target")


@pytest.fixture
def aiflow_emulator(request: pytest.FixtureRequest) -> Emulator:
    """An emulator in virtual time, calling ``--aiflow-target`` if given, else ``aiflow_target``."""
    spec = request.config.getoption("--aiflow-target")
    if spec is not None:
        from sipgate_ai_flow.testing.transports import resolve_target  # noqa: PLC0415

        target = resolve_target(spec)
    else:
        target = request.getfixturevalue("aiflow_target")
    emulator = Emulator(
        target,
        token=request.config.getoption("--aiflow-token"),
        strict=request.config.getoption("--aiflow-strict"),
    )
    collected = request.config.stash.setdefault(_TURNS, [])
    test = request.node.nodeid
    emulator.call_listeners.append(lambda call: collected.append((test, call.turns)))
    return emulator


@_async_fixture
async def aiflow_call(aiflow_emulator: Emulator) -> AsyncIterator[EmulatedCall]:
    """A started call; after the test the caller listens to the end and hangs up."""
    async with aiflow_emulator.call() as call:
        yield call


@pytest.fixture
def aiflow_fake_model(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeModel]:
    """A running :class:`~sipgate_ai_flow.testing.FakeModel` without rules (add them with
    ``aiflow_fake_model.add(...)``); ``OPENAI_BASE_URL`` points at it for the test."""
    from sipgate_ai_flow.testing.fake_model import FakeModel  # noqa: PLC0415 - starts a server

    with FakeModel() as model:
        monkeypatch.setenv("OPENAI_BASE_URL", model.base_url)
        yield model


def pytest_terminal_summary(
    terminalreporter: pytest.TerminalReporter, exitstatus: pytest.ExitCode, config: pytest.Config
) -> None:
    """End the summary with the first-action latency of the turns of the fixtures' calls."""
    turns = [(test, turn) for test, listed in config.stash.get(_TURNS, []) for turn in listed]
    figures = Latency.of(turn for _, turn in turns)
    if not figures.count:
        return
    test, slowest = max(
        ((t, turn) for t, turn in turns if turn.latency_ms is not None),
        key=lambda pair: pair[1].latency_ms or 0,
    )
    unanswered = f", {figures.unanswered} unanswered" if figures.unanswered else ""
    terminalreporter.write_line(
        f"aiflow: first action {figures} over {figures.count} turns{unanswered}; "
        f"slowest {slowest.latency_ms:.0f} ms ({slowest.event} in {test})"
    )
