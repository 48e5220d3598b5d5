"""Collecting values: named things to gather during a conversation (a customer number, a date).

Each :class:`Value` may have a validator: a regular expression the whole answer must match, or a
function. The model saves what the caller says with the ``save_value`` tool; an invalid value
goes back to it as an error with the reason, and it asks again. A value with ``confirm`` is read
back first and kept only once the caller agrees (``confirm_value``). The values collected so far
live in ``call.state`` (``agent.values(call)``), and the instructions list what is still missing.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, cast

from pydantic import BaseModel, ConfigDict, Field, create_model

from sipgate_ai_flow.assistant.call import Call
from sipgate_ai_flow.llm.tools import Tool, ToolError

__all__ = ["CONFIRM_VALUE", "SAVE_VALUE", "Check", "Value"]

SAVE_VALUE = "save_value"
"""The tool the model saves a value with."""
CONFIRM_VALUE = "confirm_value"
"""The tool the model keeps a read-back value with, once the caller agreed."""

Check = Callable[[str], "str | bool | Awaitable[str | bool | None] | None"]
"""A validator (sync or async): gets the value as the caller gave it; returns ``False`` or raises
``ValueError`` (its message the reason) when it is invalid, else the value to keep (a str) or
``True``/``None`` to keep it as it is."""

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")


@dataclass(frozen=True, slots=True)
class Value:
    """A value to collect: ``name`` (an identifier), ``description`` (for the model, e.g. "the
    customer number, six digits"), and optionally ``pattern`` (a regex the whole value must
    match, spaces removed first) or ``check`` (see :data:`Check`). ``confirm``: read it back to
    the caller and keep it only when they agree."""

    name: str
    description: str
    pattern: str | None = None
    check: Check | None = None
    confirm: bool = False

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise ToolError(f"value name {self.name!r} must be an identifier of at most 64 characters")
        if self.pattern is not None:
            try:
                re.compile(self.pattern)
            except re.error as exc:
                raise ToolError(
                    f"value {self.name}: pattern {self.pattern!r} is not a regex: {exc}"
                ) from None

    async def validate(self, given: str) -> str:
        """The value to keep for ``given``; raises ``ValueError`` saying why it is invalid."""
        text = given.strip()
        if self.pattern is not None:
            text = "".join(text.split())
            if not re.fullmatch(self.pattern, text):
                raise ValueError(f"it does not have the form of {self.description}")
        if self.check is not None:
            result = self.check(text)
            if inspect.isawaitable(result):
                result = await result
            if result is False:
                raise ValueError(f"it is not {self.description}")
            if isinstance(result, str):
                text = result
        return text


def value_tools(values: Sequence[Value], state_key: str) -> list[Tool]:
    """The tools that save (and confirm) ``values`` in ``call.state[state_key]``."""
    names = [v.name for v in values]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ToolError(f"two values are called {', '.join(twice)}; value names must differ")
    by_name = {v.name: v for v in values}
    which = cast(Any, Literal)[tuple(names)]
    config = ConfigDict(extra="forbid")
    save_args: type[BaseModel] = create_model(
        "save_value_arguments",
        __config__=config,
        name=(which, Field(description="Which value.")),
        value=(str, Field(description="The value, as the caller gave it.")),
    )

    async def save(arguments: BaseModel, call: Call | None) -> str:
        name: str = getattr(arguments, "name")  # noqa: B009 - fields made at run time
        found = by_name[name]
        try:
            kept = await found.validate(getattr(arguments, "value"))  # noqa: B009
        except ValueError as exc:
            return f"Not saved, {exc}. Tell the caller and ask for {found.description} again."
        data = _data(call, state_key)
        if found.confirm:
            data.setdefault("unconfirmed", {})[name] = kept
            return (
                f"Read {kept} back to the caller and ask whether it is right. If it is, call "
                f"{CONFIRM_VALUE}; if not, ask again."
            )
        data.setdefault("values", {})[name] = kept
        data.get("unconfirmed", {}).pop(name, None)
        return f"Saved {name}: {kept}."

    tools = [Tool(SAVE_VALUE, "Save a value the caller gave (see the values to collect).", save_args, save)]
    confirmed = [v.name for v in values if v.confirm]
    if confirmed:
        confirm_args: type[BaseModel] = create_model(
            "confirm_value_arguments",
            __config__=config,
            name=(cast(Any, Literal)[tuple(confirmed)], Field(description="Which value.")),
        )

        async def confirm(arguments: BaseModel, call: Call | None) -> str:
            name: str = getattr(arguments, "name")  # noqa: B009
            data = _data(call, state_key)
            kept = data.get("unconfirmed", {}).pop(name, None)
            if kept is None:
                return f"Error: no {name} waits for confirmation; save it first."
            data.setdefault("values", {})[name] = kept
            return f"Saved {name}: {kept}."

        tools.append(
            Tool(
                CONFIRM_VALUE,
                "Keep a value the caller confirmed after you read it back.",
                confirm_args,
                confirm,
            )
        )
    return tools


def _data(call: Call | None, state_key: str) -> dict[str, Any]:
    if call is None:
        raise ToolError("the value tools need the call; run them through an Agent")
    data: dict[str, Any] = call.state.setdefault(state_key, {})
    return data


def describe(values: Sequence[Value], data: dict[str, Any]) -> str:
    """The instructions' part about the values: which are still missing, which are saved."""
    saved: dict[str, str] = data.get("values", {})
    missing = [f"- {v.name}: {v.description}" for v in values if v.name not in saved]
    lines = ["Collect these values from the caller, one at a time, and save each with save_value:"]
    lines += missing or ["(all collected)"]
    if saved:
        lines.append("Saved so far: " + ", ".join(f"{k} = {v}" for k, v in saved.items()))
    return "\n".join(lines)
