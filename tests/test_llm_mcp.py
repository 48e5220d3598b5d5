"""MCP tools: an agent uses the tools of a real MCP server process (tests/mcp_server.py, over
stdio) through the emulator, in-process, over HTTP and over WebSocket, against the fake model."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import psutil
import pytest

from sipgate_ai_flow import Assistant
from sipgate_ai_flow.llm import Agent, McpError, McpServer
from sipgate_ai_flow.testing import Emulator, FakeModel, VirtualClock
from tests import test_llm_agent as base
from tests.helpers import free_port, running_server
from tests.test_llm_agent import hear, tool_messages, turn_of

fake, path = base.fake, base.path

SERVER = [sys.executable, str(Path(__file__).with_name("mcp_server.py"))]


@asynccontextmanager
async def connect(agent: Agent, path: str) -> AsyncIterator[Emulator]:
    """An emulator calling ``agent`` by ``path``, on the agent's virtual clock."""
    clock = VirtualClock()
    agent.clock = clock.now
    assistant = agent.attach(Assistant())
    if path == "inprocess":
        yield Emulator(assistant, clock=clock)
        await assistant.drain()
        return
    with running_server(assistant) as address:
        url = f"http://{address}/webhook" if path == "http" else f"ws://{address}/ws"
        yield Emulator(url, clock=clock, reply_window=0.2)


async def listed(agent: Agent, name: str, within: float = 20.0) -> None:
    """Wait (in real time) until the agent has its MCP server's tools: the server starts with
    the greeting, and the caller's first words would otherwise wait for it."""
    deadline = time.monotonic() + within
    while name not in agent.tools:
        assert time.monotonic() < deadline, "the MCP server's tools were not listed"
        await asyncio.sleep(0.05)


def servers_running() -> list[psutil.Process]:
    """The MCP server processes this test process started and that still run."""
    found = []
    for child in psutil.Process().children(recursive=True):
        try:
            if "mcp_server.py" in " ".join(child.cmdline()) and child.status() != psutil.STATUS_ZOMBIE:
                found.append(child)
        except psutil.NoSuchProcess:
            continue
    return found


@pytest.mark.serial  # its answers must come within a time a busy machine can miss
async def test_the_model_calls_mcp_tools_and_reads_their_results_and_errors(
    fake: FakeModel, path: str
) -> None:
    fake.add(
        when="bolts",
        reply=[
            {
                "tool_calls": [
                    {"name": "stock", "arguments": {"article": "bolt"}},
                    {"name": "reserve", "arguments": {"article": "bolt"}},
                    {"name": "count_all"},
                ]
            },
            "We have seven bolts, but I could not reserve them.",
        ],
    )
    server = McpServer(SERVER, timeout=2.0, announce={"stock": "Let me check the warehouse."})
    agent = Agent("You sell bolts.", model="fake", base_url=fake.base_url, greeting="Hello.", tools=[server])
    async with connect(agent, path) as emulator, emulator.call() as call:
        await listed(agent, "stock")
        await call.say("do you have bolts?")
        await hear(call, "could not reserve them", within=20.0)
    assert servers_running() == []  # stopped with the assistant
    answer = turn_of(fake, "do you have bolts?")
    # The model saw the server's tools with the server's JSON Schema.
    shown = {t["function"]["name"]: t["function"] for t in answer["tools"]}
    assert {"stock", "reserve", "count_all"} <= set(shown)
    assert shown["stock"]["description"] == "How many of an article are in stock."
    assert shown["stock"]["parameters"]["properties"]["article"]["type"] == "string"
    assert shown["stock"]["parameters"]["required"] == ["article"]
    # The result, the server's error and the timeout reach the model's next request.
    assert tool_messages(fake.requests[fake.requests.index(answer) + 1]) == [
        "bolt: 7 in stock",
        "Error: reserve failed: McpError: Error executing tool reserve: the reservation system is down, "
        "bolt was not reserved",
        "Error: count_all did not finish within 2 s",
    ]
    assert "Let me check the warehouse." in call.said  # announced before the tools ran
    assert fake.tools_called == ["stock", "reserve", "count_all"]
    assert call.violations == []


async def test_the_server_starts_with_the_first_turn_and_stops_at_shutdown(fake: FakeModel) -> None:
    fake.add(
        when="bolts", reply=[{"tool_calls": [{"name": "stock", "arguments": {"article": "nut"}}]}, "Seven."]
    )
    agent = Agent("You sell bolts.", model="fake", base_url=fake.base_url, tools=[McpServer(SERVER)])
    assistant = agent.attach(Assistant())
    assert servers_running() == []  # connected lazily, not by the constructor
    async with Emulator(assistant).call() as call:
        await listed(agent, "stock")
        await call.say("do you have bolts?")
        await hear(call, "Seven.")
    assert len(servers_running()) == 1
    assert tool_messages(fake.requests[-1]) == ["nut: 7 in stock"]
    await assistant.drain()
    assert servers_running() == []
    assert "stock" not in agent.tools  # listed again when it connects again


async def test_a_stdio_server_that_died_is_started_again_at_the_next_call() -> None:
    server = McpServer(SERVER, timeout=5.0)
    try:
        assert await server.call("stock", {"article": "nut"}) == "nut: 7 in stock"
        [first] = servers_running()
        first.kill()
        first.wait(10)
        with pytest.raises(Exception, match="Connection closed"):
            await server.call("stock", {"article": "bolt"})  # lost with the server
        assert await server.call("stock", {"article": "bolt"}) == "bolt: 7 in stock"
        [second] = servers_running()
        assert second.pid != first.pid
    finally:
        await server.aclose()
    assert servers_running() == []


async def test_a_server_over_streamable_http(fake: FakeModel) -> None:
    fake.add(
        when="bolts", reply=[{"tool_calls": [{"name": "stock", "arguments": {"article": "nut"}}]}, "Seven."]
    )
    port = free_port()
    process = await asyncio.create_subprocess_exec(
        *SERVER, "--http", str(port), stderr=asyncio.subprocess.DEVNULL
    )
    try:
        server = McpServer(url=f"http://127.0.0.1:{port}/mcp")
        deadline = time.monotonic() + 20.0
        while True:  # until the server listens
            try:
                assert [t.name for t in await server.tools()] == ["stock", "reserve", "count_all"]
                break
            except McpError:
                assert time.monotonic() < deadline, "the MCP server did not start"
                await asyncio.sleep(0.2)
        agent = Agent("You sell bolts.", model="fake", base_url=fake.base_url, tools=[server])
        async with connect(agent, "inprocess") as emulator, emulator.call() as call:
            await listed(agent, "stock")
            await call.say("do you have bolts?")
            await hear(call, "Seven.")
        assert tool_messages(fake.requests[-1]) == ["nut: 7 in stock"]
    finally:
        process.terminate()
        await process.wait()


async def test_tool_names_models_refuse_are_offered_renamed_and_called_by_their_own(fake: FakeModel) -> None:
    fake.add(
        when="files",
        reply=[{"tool_calls": [{"name": "files_read_2"}, {"name": "x" * 64}]}, "Both read."],
    )
    server = McpServer([*SERVER, "--odd-names"], only={"files.read", "files/read", "x" * 70})
    assert [t.name for t in await server.tools()] == ["files_read", "files_read_2", "x" * 64]
    agent = Agent("You read files.", model="fake", base_url=fake.base_url, tools=[server])
    async with connect(agent, "inprocess") as emulator, emulator.call() as call:
        await listed(agent, "files_read")
        await call.say("read the files")
        await hear(call, "Both read.")
    # Called by the server's own names: the slashed tool's and the long one's results came back.
    assert tool_messages(fake.requests[-1]) == ["read with a slash", "long"]
    await server.aclose()


async def test_an_unreachable_server_leaves_the_agent_working(fake: FakeModel) -> None:
    fake.add(when="hello", reply="Hi there.")
    missing = McpServer([sys.executable, "-c", "raise SystemExit(3)"], connect_timeout=10.0)
    agent = Agent("You sell bolts.", model="fake", base_url=fake.base_url, tools=[missing])
    async with Emulator(agent.attach(Assistant())).call() as call:
        await call.say("hello")
        await hear(call, "Hi there.")
    assert "tools" not in fake.requests[-1] or fake.requests[-1]["tools"] == []


def test_a_server_needs_a_command_list_or_a_url() -> None:
    with pytest.raises(McpError, match="must be a list"):
        McpServer("python server.py")  # type: ignore[arg-type]
    with pytest.raises(McpError, match="either command"):
        McpServer()
    with pytest.raises(McpError, match="either command"):
        McpServer(["x"], url="http://127.0.0.1/mcp")


def test_warnings_name_a_server_without_its_arguments_or_keys() -> None:
    assert repr(McpServer(url="https://user:pw@crm.example.com/mcp?key=abc")) == (
        "McpServer(url='https://crm.example.com/mcp')"
    )
    assert repr(McpServer(["/usr/bin/python3", "server.py", "--token", "abc"])) == "McpServer('python3', ...)"


def _python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )


def test_the_mcp_library_is_imported_when_a_server_is_made_not_inside_a_call() -> None:
    # Importing it takes a second or more: at the first connection, inside a call, it stalled
    # every call of the server (a greeting came late).
    done = _python(
        "import sys\n"
        "from sipgate_ai_flow.llm import McpServer\n"
        "assert 'mcp' not in sys.modules, 'imported with the package'\n"
        "McpServer(['program'])\n"
        "assert 'mcp.client' in sys.modules\n"
    )
    assert done.returncode == 0, done.stderr


def test_without_the_mcp_extra_making_a_server_says_what_to_install() -> None:
    done = _python(
        "import sys\n"
        "sys.modules['mcp'] = None  # as if not installed\n"
        "from sipgate_ai_flow.llm import McpError, McpServer\n"
        "try:\n"
        "    McpServer(['program'])\n"
        "except McpError as exc:\n"
        "    print(exc)\n"
    )
    assert done.returncode == 0, done.stderr
    assert "MCP tools need the [mcp] extra (mcp is missing)" in done.stdout
