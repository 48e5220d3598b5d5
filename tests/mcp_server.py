"""A small MCP server over stdio for tests/test_llm_mcp.py: a stock lookup, a tool that fails and
one that is too slow. ``--http PORT`` serves it over streamable HTTP on 127.0.0.1 instead."""

from __future__ import annotations

import asyncio
import sys

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError

server = MCPServer("warehouse")


@server.tool()
def stock(article: str) -> str:
    """How many of an article are in stock."""
    return f"{article}: 7 in stock"


@server.tool()
def reserve(article: str) -> str:
    """Reserve an article."""
    raise ToolError(f"the reservation system is down, {article} was not reserved")


@server.tool()
async def count_all() -> str:
    """Count every article in the warehouse (slow)."""
    await asyncio.sleep(30)
    return "done"


if "--odd-names" in sys.argv:
    # Names MCP allows and models do not: the SDK offers them renamed.

    @server.tool(name="files.read")
    def files_dot_read() -> str:
        """Read the files (dotted name)."""
        return "read with a dot"

    @server.tool(name="files/read")
    def files_slash_read() -> str:
        """Read the files (slashed name)."""
        return "read with a slash"

    @server.tool(name="x" * 70)
    def long_name() -> str:
        """A tool with a 70-character name."""
        return "long"

    sys.argv.remove("--odd-names")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--http"]:
        server.run("streamable-http", host="127.0.0.1", port=int(sys.argv[2]))
    else:
        server.run()
