"""The layers import one way only: protocol <- state <- assistant <- server / testing / llm <- cli."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from sipgate_ai_flow import Assistant
from sipgate_ai_flow.assistant.assistant import HandlerKeywords, HandlerSlot
from sipgate_ai_flow.assistant.handlers import EVENT_HANDLERS

PACKAGE = Path(__file__).resolve().parent.parent / "src" / "sipgate_ai_flow"

# A module may import only from layers ranked below its own (and from its own layer). The package
# root is left out: it re-exports every layer and joins the core to the server.
RANK = {
    "errors": 0,
    "protocol": 1,
    "audio": 2,
    "client": 2,
    "state": 2,
    "assistant": 3,
    "otel": 3.5,  # traces of the core's turns; the server and the LLM layer make spans through it
    "target": 4,
    "server": 4,
    "llm": 4,
    "testing": 5,
    "console": 6,
    "cli": 7,
    "__main__": 8,
}


def _layer(module: str) -> str:
    return module.split(".")[1]


def _imports(path: Path) -> list[str]:
    """Every module of ours ``path`` imports, at the top, in a function or for type checking."""
    found: list[str] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append(node.module)
    return [name for name in found if name.startswith("sipgate_ai_flow.")]


def test_every_module_imports_only_layers_below_its_own() -> None:
    upward: list[str] = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        if parts == ("__init__",):
            continue
        own = parts[0]
        assert own in RANK, f"{path}: a new layer? give it a rank here"
        for name in _imports(path):
            if _layer(name) != own and RANK[_layer(name)] >= RANK[own]:
                upward.append(f"{'/'.join(parts)} imports {name}")
    assert upward == []


@pytest.mark.parametrize(
    "layer", ["sipgate_ai_flow.protocol", "sipgate_ai_flow.state", "sipgate_ai_flow.assistant"]
)
def test_a_lower_layer_imported_alone_loads_no_upper_layer_or_io_library(layer: str) -> None:
    upper = (
        "sipgate_ai_flow.server",
        "sipgate_ai_flow.testing",
        "sipgate_ai_flow.cli",
        "sipgate_ai_flow.console",
        "sipgate_ai_flow.llm",
        "starlette",
        "uvicorn",
        "httpx",
        "redis",
    )
    code = f"import sys, {layer}; print(sorted(m for m in {upper!r} if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_the_handler_keywords_and_decorators_follow_the_one_table() -> None:
    # The keywords and decorators are spelled out for type checkers; the table is what runs.
    slots = {name for name, value in vars(Assistant).items() if isinstance(value, HandlerSlot)}
    assert list(HandlerKeywords.__annotations__) == list(EVENT_HANDLERS)
    assert slots == set(EVENT_HANDLERS)


def test_an_unknown_handler_keyword_is_a_type_error_naming_the_handlers() -> None:
    with pytest.raises(
        TypeError, match="unexpected keyword argument 'on_user_spek'; handlers: on_session_start"
    ):
        Assistant(on_user_spek=print)  # type: ignore[call-arg]


async def test_an_assistant_is_an_asgi_app_without_importing_the_server_itself() -> None:
    import httpx

    assistant = Assistant()
    transport = httpx.ASGITransport(app=assistant)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        assert (await client.get("/health")).status_code == 200
