"""LLM agents for phone calls (the ``[llm]`` extra): ``Agent``, ``@tool``, call-control tools,
handoffs between agents, the history the caller heard, and transcripts.

>>> from sipgate_ai_flow import Assistant
>>> from sipgate_ai_flow.llm import Agent, hang_up
>>> agent = Agent("You are the receptionist of Example Corp.", model="gpt-4o-mini", tools=[hang_up()])
>>> assistant = agent.attach(Assistant())
"""

try:
    import emoji  # noqa: F401
    import markdown_it  # noqa: F401
    import openai  # noqa: F401
except ImportError as exc:  # pragma: no cover - depends on what is installed
    raise ImportError(
        f"sipgate_ai_flow.llm needs the [llm] extra ({exc.name} is missing): "
        "pip install 'sipgate-ai-flow[llm]'"
    ) from exc

from sipgate_ai_flow.llm.agent import (
    DEFAULT_HOLDS,
    DEFAULT_MODEL_FALLBACK,
    DEFAULT_RETURNED,
    KEYPAD,
    PHONE_RULES,
    PREVIEW,
    WAIT_FOR_TURN,
    Agent,
    EndOfTurn,
    OnTranscript,
)
from sipgate_ai_flow.llm.calltools import hang_up, send_sms, transfer
from sipgate_ai_flow.llm.collect import CONFIRM_VALUE, SAVE_VALUE, Check, Value
from sipgate_ai_flow.llm.handoff import Carry, Handoff, handoff
from sipgate_ai_flow.llm.history import CUT_OFF, History
from sipgate_ai_flow.llm.mcp import McpError, McpServer
from sipgate_ai_flow.llm.model import ChatModel, ModelError, ToolCallRequest, Usage
from sipgate_ai_flow.llm.speakable import speakable
from sipgate_ai_flow.llm.tools import Announcement, Tool, ToolError, ToolOutcome, ToolResult, tool

__all__ = [
    "CONFIRM_VALUE",
    "CUT_OFF",
    "DEFAULT_HOLDS",
    "DEFAULT_MODEL_FALLBACK",
    "DEFAULT_RETURNED",
    "KEYPAD",
    "PHONE_RULES",
    "PREVIEW",
    "SAVE_VALUE",
    "WAIT_FOR_TURN",
    "Agent",
    "Announcement",
    "Carry",
    "ChatModel",
    "Check",
    "EndOfTurn",
    "Handoff",
    "History",
    "McpError",
    "McpServer",
    "ModelError",
    "OnTranscript",
    "Tool",
    "ToolCallRequest",
    "ToolError",
    "ToolOutcome",
    "ToolResult",
    "Usage",
    "Value",
    "handoff",
    "hang_up",
    "send_sms",
    "speakable",
    "tool",
    "transfer",
]
