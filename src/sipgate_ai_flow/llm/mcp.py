"""Tools from MCP servers (the ``[mcp]`` extra): ``McpServer(command=[...])`` or
``McpServer(url=...)`` in ``Agent(tools=[...])``.

The agent connects on its first model request, lists the server's tools and shows them to the
model with the server's JSON Schema. A call runs like a local tool's: with the tool's timeout,
an announcement if one is set, and failures (the server's own errors included) reaching the
model as an error message. The connection closes when the assistant shuts down
(``Assistant.drain``) or on ``await server.aclose()``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict

from sipgate_ai_flow.errors import AiFlowError
from sipgate_ai_flow.llm.tools import DEFAULT_TIMEOUT, Announcement, Tool, fitting_name

if TYPE_CHECKING:
    from mcp import Client
    from mcp.types import CallToolResult
    from mcp.types import Tool as ListedTool

__all__ = ["McpError", "McpServer"]

logger = logging.getLogger("sipgate_ai_flow.llm")


class McpError(AiFlowError):
    """An MCP tool reported an error, or the server could not be reached."""


class _Arguments(BaseModel):
    # The server validates against its own schema; here the arguments only need to be an object.
    model_config = ConfigDict(extra="allow")


class _McpTool(Tool):
    __slots__ = ("input_schema", "server")

    def __init__(self, listed: ListedTool, server: McpServer, name: str) -> None:
        remote = listed.name

        async def runner(arguments: BaseModel, _call: object) -> Any:
            return await server.call(remote, arguments.model_dump())

        super().__init__(
            name,
            listed.description or listed.title or remote,
            _Arguments,
            runner,
            timeout=server.timeout,
            announce=server.announce.get(remote),
        )
        self.input_schema = dict(listed.input_schema)
        self.server = server

    @property
    def parameters(self) -> dict[str, Any]:
        """The JSON Schema the MCP server gave for the tool's arguments."""
        schema = {"type": "object", **self.input_schema}
        schema.setdefault("properties", {})
        return schema


class McpServer:
    """An MCP server whose tools an :class:`~sipgate_ai_flow.llm.Agent` offers the model.

    Give either ``command`` (the program and its arguments, started with stdio; ``env`` and
    ``cwd`` for it) or ``url`` (streamable HTTP). ``timeout`` is each tool call's limit in
    seconds, ``announce`` maps a tool's name to what is said before it runs (see
    :data:`~sipgate_ai_flow.llm.Announcement`), ``only`` keeps just the tools named, and
    ``prefix`` goes before each tool's name (for two servers with a tool of the same name).

    MCP allows tool names that models do not (``files.read``, ``github/search``, over 64
    characters): the model sees such a name with each other character made ``_`` and cut to 64
    (``files_read``), numbered if two come out the same; the server is still called by its own.
    ``announce`` and ``only`` take the server's names.
    """

    def __init__(
        self,
        command: Sequence[str] | None = None,
        *,
        url: str | None = None,
        env: Mapping[str, str] | None = None,
        cwd: str | Path | None = None,
        timeout: float | None = DEFAULT_TIMEOUT,
        announce: Mapping[str, Announcement] | None = None,
        only: Collection[str] | None = None,
        prefix: str = "",
        connect_timeout: float = 30.0,
    ) -> None:
        if isinstance(command, str):
            raise McpError(
                f"McpServer command must be a list (program and arguments), got the string {command!r}"
            )
        if (command is None) == (url is None):
            raise McpError(
                "McpServer needs either command=[program, args...] or url=..., not both or neither"
            )
        if command is not None and not (command and all(isinstance(part, str) and part for part in command)):
            raise McpError(f"McpServer command must be a non-empty list of strings, got {command!r}")
        # Here, not at the first connection: importing the mcp library takes a second or more,
        # which inside a call would stall every call the server has (found as a late greeting).
        try:
            import mcp  # noqa: F401, PLC0415 - the mcp extra
        except ImportError as exc:
            raise McpError(f"MCP tools need the [mcp] extra ({exc.name} is missing)") from None
        self.command = list(command) if command is not None else None
        self.url = url
        self.env = dict(env) if env is not None else None
        self.cwd = cwd
        self.timeout = timeout
        self.announce = dict(announce or {})
        self.only = set(only) if only is not None else None
        self.prefix = prefix
        self.connect_timeout = connect_timeout
        self._client: Client | None = None
        self._closing = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()

    def __repr__(self) -> str:
        # In warnings: the program or the address only, never arguments or a query (keys go there).
        if self.command:
            return f"McpServer({Path(self.command[0]).name!r}, ...)"
        where = urlsplit(self.url or "")
        port = f":{where.port}" if where.port else ""
        return f"McpServer(url='{where.scheme}://{where.hostname}{port}{where.path}')"

    async def tools(self) -> list[Tool]:
        """Connect if not connected yet, and list the server's tools as :class:`Tool` objects."""
        client = await self._connect()
        listed: list[ListedTool] = []
        cursor: str | None = None
        while True:
            page = await client.list_tools(cursor=cursor)
            listed.extend(page.tools)
            cursor = page.next_cursor
            if not cursor:
                break
        kept = [t for t in listed if self.only is None or t.name in self.only]
        taken: set[str] = set()
        tools: list[Tool] = []
        for listed_tool in kept:
            name = f"{self.prefix}{listed_tool.name}"
            fitted = fitting_name(name, taken)
            if fitted != name:
                logger.debug("MCP tool %r is offered to the model as %r", name, fitted)
            tools.append(_McpTool(listed_tool, self, fitted))
        return tools

    async def call(self, name: str, arguments: dict[str, Any]) -> Any:
        """Call the tool ``name``; its text (or structured content) for the model.

        Raises :class:`McpError` with the server's message when the tool reports an error.
        """
        from mcp.shared.exceptions import MCPError  # noqa: PLC0415 - imported at construction
        from mcp.types import CONNECTION_CLOSED  # noqa: PLC0415

        client = await self._connect()
        try:
            result = await client.call_tool(name, arguments)
        except MCPError as exc:
            if exc.code == CONNECTION_CLOSED and self._client is client:
                # The server went away (a stdio server that died): this call fails, the next one
                # connects again (starting the program anew). Not retried here: the tool may have
                # run before the connection was lost.
                logger.warning("%r: connection closed; connecting again at the next call", self)
                await self.aclose()
            raise
        text = _content(result)
        if result.is_error:
            raise McpError(text or "the MCP tool reported an error")
        if not text and result.structured_content is not None:
            return result.structured_content
        return text

    async def aclose(self) -> None:
        """Close the connection (and stop a server started with ``command``)."""
        task = self._task
        if task is None:
            return
        self._closing.set()
        await asyncio.gather(task, return_exceptions=True)

    async def _connect(self) -> Client:
        async with self._lock:
            if self._client is not None:
                return self._client
            ready: asyncio.Future[Client] = asyncio.get_running_loop().create_future()
            self._closing = asyncio.Event()
            # The connection lives in a task of its own: the mcp client's context must be left
            # in the task that entered it, and calls come from many tasks.
            self._task = task = asyncio.create_task(self._hold(ready))
            try:
                async with asyncio.timeout(self.connect_timeout):
                    self._client = await asyncio.shield(ready)
            except BaseException:
                task.cancel()
                raise
            return self._client

    async def _hold(self, ready: asyncio.Future[Client]) -> None:
        from mcp import Client, StdioServerParameters  # noqa: PLC0415 - imported at construction

        if self.command is not None:
            params = StdioServerParameters(
                command=self.command[0], args=self.command[1:], env=self.env, cwd=self.cwd
            )
            target: Any = params
        else:
            target = self.url
        try:
            async with Client(target) as client:
                ready.set_result(client)
                await self._closing.wait()
        except Exception as exc:
            if not ready.done():
                cause = _first(exc)
                ready.set_exception(McpError(f"cannot connect to {self!r}: {type(cause).__name__}: {cause}"))
            else:
                logger.warning("%r: connection lost (%s)", self, type(exc).__name__)
        finally:
            self._client = None
            self._task = None


def _first(exc: BaseException) -> BaseException:
    # The client's task groups wrap what went wrong (a refused connection, a dead process).
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


def _content(result: CallToolResult) -> str:
    parts: list[str] = []
    for item in result.content:
        text = getattr(item, "text", None)
        parts.append(text if isinstance(text, str) else f"[{item.type}]")
    return "\n".join(parts)
