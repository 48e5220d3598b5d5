"""Handoffs: one agent hands the call over to another, such as a receptionist to a booking agent.

``handoff(booking)`` is a tool: when the model calls it, the agent says the handoff ``sentence``
(in its own voice), and from then on ``booking`` answers the call, with its own instructions,
tools, model and voice, starting with the caller's turn at hand. ``history`` says what the new
agent gets of the conversation: all of it, or only the caller's turns.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict

from sipgate_ai_flow.assistant.call import Call
from sipgate_ai_flow.llm.tools import Tool, ToolError

if TYPE_CHECKING:
    from sipgate_ai_flow.llm.agent import Agent

__all__ = ["Carry", "Handoff", "handoff"]

Carry = Literal["all", "caller"]
"""The history a handoff carries over: all of it, or only the caller's turns."""

_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


class _NoArguments(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Handoff(Tool):
    """A tool that hands the call over to ``target`` (made by :func:`handoff`)."""

    __slots__ = ("history", "sentence", "target")

    def __init__(
        self, name: str, description: str, target: Agent, *, sentence: str | None, history: Carry
    ) -> None:
        async def confirm(arguments: BaseModel, call: Call | None) -> str:
            return f"The call is now with {target.name}, who answers the caller from here on."

        super().__init__(name, description, _NoArguments, confirm)
        self.target = target
        self.sentence = sentence
        self.history: Carry = history

    def __repr__(self) -> str:
        return f"Handoff({self.name!r} -> {self.target.name!r})"


def handoff(
    agent: Agent,
    *,
    sentence: str | None = None,
    history: Carry = "all",
    name: str | None = None,
    description: str | None = None,
) -> Handoff:
    """A tool that hands the call over to ``agent``.

    ``sentence`` is said first, in the voice of the agent handing over (``"I'll connect you
    with our booking team."``). ``history="caller"`` gives the new agent only the caller's turns
    (a fresh start under its own instructions); ``"all"`` the whole conversation. The tool is
    called ``handoff_to_<agent name>`` unless ``name`` says otherwise; ``description`` tells the
    model when to use it.
    """
    if history not in ("all", "caller"):
        raise ToolError(f'handoff history must be "all" or "caller", got {history!r}')
    if sentence is not None and not sentence.strip():
        raise ToolError("a handoff sentence must not be empty; leave it out to say nothing")
    tool_name = name or f"handoff_to_{_UNSAFE.sub('_', agent.name)}"[:64]
    text = description or f"Hand the caller over to {agent.name}, when they need what {agent.name} does."
    return Handoff(tool_name, text, agent, sentence=sentence, history=history)
