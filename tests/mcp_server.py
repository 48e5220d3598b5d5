"""A small MCP server over stdio for tests/test_llm_mcp.py: a stock lookup, a tool that fails and
one that is too slow."""

from __future__ import annotations

import asyncio

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


if __name__ == "__main__":
    server.run()
