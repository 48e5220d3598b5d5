"""Function tools: ``@tool`` turns a typed function with a docstring into a tool the model can call.

The JSON Schema the model sees comes from the signature (through pydantic), the description from
the docstring, and each parameter's description from ``Annotated[..., Field(description=...)]``
or the docstring's ``Args:`` section. Arguments are validated before the function runs; a bad
argument, a function that raises and one that overruns its timeout all reach the model as an
error message, never as a crash of the turn.

A tool returns data for the model (any JSON-able value), actions for the SDK to carry out
(``Transfer``, ``Hangup``, ``SendSms``, ``Speak``, ...), or a :class:`ToolResult` with both. A
parameter annotated :class:`~sipgate_ai_flow.Call` gets the call and is not shown to the model.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, TypeVar, get_args, get_origin, get_type_hints, overload

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model
from pydantic.fields import FieldInfo
from pydantic_core import PydanticSerializationError, to_jsonable_python

from sipgate_ai_flow.assistant.call import Call
from sipgate_ai_flow.errors import AiFlowError
from sipgate_ai_flow.protocol.actions import ActionBase

__all__ = ["Announcement", "Tool", "ToolError", "ToolOutcome", "ToolResult", "tool"]

logger = logging.getLogger("sipgate_ai_flow.llm")

F = TypeVar("F", bound=Callable[..., Any])
Runner = Callable[[BaseModel, Call | None], Awaitable[Any]]

_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_NOT_IN_NAMES = re.compile(r"[^A-Za-z0-9_-]")
_ARGS_HEADER = re.compile(r"^(Args|Arguments|Parameters):\s*$")
_ARG_LINE = re.compile(r"^(\*{0,2}\w+)\s*(\([^)]*\))?\s*:\s*(.*)$")
DEFAULT_TIMEOUT = 10.0
"""Seconds a tool may run before the model is told it timed out."""


def fitting_name(name: str, taken: set[str]) -> str:
    """``name`` as a tool name models accept (each other character made ``_``, cut to 64),
    numbered if it is in ``taken``; the result is added to ``taken``."""
    base = _NOT_IN_NAMES.sub("_", name)[:64] or "tool"
    found, number = base, 1
    while found in taken:
        number += 1
        suffix = f"_{number}"
        found = base[: 64 - len(suffix)] + suffix
    taken.add(found)
    return found


class ToolError(AiFlowError):
    """A function cannot be a tool (a missing annotation, ``*args``, a bad name, ...)."""


@dataclass(frozen=True, slots=True)
class ToolResult:
    """What a tool returns when it has both data for the model and actions for the call.

    ``farewell`` is said before call-ending actions (``Transfer``, ``Hangup``) when the model
    says nothing more after calling the tool.
    """

    data: Any = None
    actions: Sequence[ActionBase] = ()
    farewell: str | None = None


@dataclass(frozen=True, slots=True)
class ToolOutcome:
    """A finished tool call: the message content for the model, and what the call must do."""

    content: str
    actions: list[ActionBase] = field(default_factory=list)
    error: bool = False
    farewell: str | None = None


Announcement = str | Mapping[str, str] | None
"""What a slow tool says before it runs: a sentence, or one per language code."""


class Tool:
    """A function the model may call: ``name``, ``description``, a pydantic model of its
    arguments, and how to run it. Usually made with :func:`tool`. ``announce`` is said first
    when the model said nothing before calling it (see :data:`Announcement`)."""

    __slots__ = ("announce", "arguments", "description", "name", "runner", "timeout")

    def __init__(
        self,
        name: str,
        description: str,
        arguments: type[BaseModel],
        runner: Runner,
        *,
        timeout: float | None = DEFAULT_TIMEOUT,
        announce: Announcement = None,
    ) -> None:
        if not _NAME.match(name):
            raise ToolError(f"tool name {name!r} must be 1-64 letters, digits, '_' or '-'")
        if timeout is not None and not timeout > 0:
            raise ToolError(f"tool {name}: timeout must be a positive number of seconds, got {timeout!r}")
        self.name = name
        self.description = description
        self.arguments = arguments
        self.runner = runner
        self.timeout = timeout
        if isinstance(announce, Mapping) and not all(isinstance(v, str) and v for v in announce.values()):
            raise ToolError(f"tool {name}: announce maps languages to non-empty sentences")
        self.announce = announce
        """Said before the tool runs when the model said nothing first: a sentence, or one per
        language (``{"en": ..., "de": ...}``)."""

    @property
    def schema(self) -> dict[str, Any]:
        """The tool as the chat completions API takes it (``{"type": "function", ...}``)."""
        return {
            "type": "function",
            "function": {"name": self.name, "description": self.description, "parameters": self.parameters},
        }

    @property
    def parameters(self) -> dict[str, Any]:
        """The JSON Schema of the arguments."""
        schema: dict[str, Any] = _untitled(self.arguments.model_json_schema())
        schema.setdefault("properties", {})
        return schema

    async def run(self, arguments: str, call: Call | None) -> ToolOutcome:
        """Validate ``arguments`` (the model's JSON text), run the tool, and describe the result.

        Never raises for a bad argument, a failing tool or a timeout: those become an error
        outcome the model can read.
        """
        try:
            parsed = self.arguments.model_validate_json(arguments.strip() or "{}")
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(map(str, e['loc'])) or 'arguments'}: {e['msg']}" for e in exc.errors()
            )
            return ToolOutcome(f"Error: invalid arguments for {self.name}: {problems}", error=True)
        try:
            async with asyncio.timeout(self.timeout):
                value = await self.runner(parsed, call)
        except TimeoutError:
            logger.warning("tool %s timed out after %g s", self.name, self.timeout)
            return ToolOutcome(f"Error: {self.name} did not finish within {self.timeout:g} s", error=True)
        except Exception as exc:
            # The exception's text goes to the model (it may help it recover), not to the log:
            # it may carry what the caller said.
            logger.warning("tool %s raised %s", self.name, type(exc).__name__)
            logger.debug("tool %s failed", self.name, exc_info=True)
            return ToolOutcome(f"Error: {self.name} failed: {type(exc).__name__}: {exc}", error=True)
        return outcome(value)

    def __repr__(self) -> str:
        return f"Tool({self.name!r})"


def outcome(value: Any) -> ToolOutcome:
    """Turn what a tool returned into the model's message and the call's actions."""
    if isinstance(value, ToolResult):
        data = outcome(value.data)
        return ToolOutcome(data.content, list(value.actions), farewell=value.farewell)
    if isinstance(value, ActionBase):
        return ToolOutcome(f"Done: {_kind(value)}.", [value])
    if isinstance(value, list | tuple) and value and all(isinstance(v, ActionBase) for v in value):
        return ToolOutcome(f"Done: {', '.join(map(_kind, value))}.", list(value))
    if value is None:
        return ToolOutcome("Done.")
    if isinstance(value, str):
        return ToolOutcome(value)
    try:
        return ToolOutcome(json.dumps(to_jsonable_python(value), ensure_ascii=False))
    except (PydanticSerializationError, TypeError, ValueError):
        return ToolOutcome(str(value))


def _kind(action: ActionBase) -> str:
    kind: str = getattr(action, "type", type(action).__name__)
    return kind


@overload
def tool(func: F, /) -> Tool: ...


@overload
def tool(
    func: None = None,
    /,
    *,
    name: str | None = None,
    description: str | None = None,
    timeout: float | None = DEFAULT_TIMEOUT,
    announce: Announcement = None,
) -> Callable[[F], Tool]: ...


def tool(
    func: F | None = None,
    /,
    *,
    name: str | None = None,
    description: str | None = None,
    timeout: float | None = DEFAULT_TIMEOUT,
    announce: Announcement = None,
) -> Tool | Callable[[F], Tool]:
    """Make a :class:`Tool` of a typed function (sync or async) with a docstring.

    ``@tool`` uses the function's name and docstring; ``@tool(name=..., description=...,
    timeout=..., announce=...)`` sets them (``timeout`` in seconds, ``None`` for none;
    ``announce``: what is said before a slow tool runs, see :class:`Tool`). Raises
    :class:`ToolError` for a function that cannot be a tool, naming the parameter.
    """

    def make(inner: F) -> Tool:
        return _from_function(inner, name=name, description=description, timeout=timeout, announce=announce)

    return make(func) if func is not None else make


def _from_function(
    func: Callable[..., Any],
    *,
    name: str | None,
    description: str | None,
    timeout: float | None,
    announce: Announcement,
) -> Tool:
    label = getattr(func, "__qualname__", repr(func))
    tool_name = str(name or getattr(func, "__name__", ""))
    summary, documented = _docstring(inspect.getdoc(func) or "")
    text = description or summary
    if not text:
        raise ToolError(f"tool {label} needs a docstring (or description=...): the model reads it")
    try:
        hints = get_type_hints(func, include_extras=True)
    except (NameError, TypeError) as exc:
        raise ToolError(f"cannot read the type annotations of tool {label}: {exc}") from None
    fields: dict[str, Any] = {}
    call_param: str | None = None
    for param in inspect.signature(func).parameters.values():
        if param.kind in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD):
            raise ToolError(f"tool {label}: *{param.name} cannot be shown to the model; name each parameter")
        if param.kind is inspect.Parameter.POSITIONAL_ONLY:
            raise ToolError(f"tool {label}: {param.name} is positional-only; the model passes names")
        hint = hints.get(param.name)
        if hint is None:
            raise ToolError(f"tool {label}: parameter {param.name} has no type annotation")
        if hint is Call:
            call_param = param.name
            continue
        if param.name in documented and not _described(hint):
            hint = Annotated[hint, Field(description=documented[param.name])]
        default = ... if param.default is inspect.Parameter.empty else param.default
        fields[param.name] = (hint, default)
    try:
        model = create_model(f"{tool_name}_arguments", __config__=ConfigDict(extra="forbid"), **fields)
    except Exception as exc:  # pydantic's schema errors come in several types
        raise ToolError(f"tool {label}: its parameters cannot be described as JSON Schema: {exc}") from None
    names = tuple(fields)
    dunder = getattr(func, "__call__", None)  # noqa: B004 - a callable object's method, not callable()
    is_async = inspect.iscoroutinefunction(func) or inspect.iscoroutinefunction(dunder)

    async def runner(arguments: BaseModel, call: Call | None) -> Any:
        kwargs = {key: getattr(arguments, key) for key in names}
        if call_param is not None:
            kwargs[call_param] = call
        if is_async:
            return await func(**kwargs)
        result = await asyncio.to_thread(func, **kwargs)  # a blocking tool must not stall other calls
        return await result if inspect.isawaitable(result) else result

    return Tool(tool_name, text, model, runner, timeout=timeout, announce=announce)


def _docstring(doc: str) -> tuple[str, dict[str, str]]:
    """The description before an ``Args:`` section, and the parameters that section describes."""
    lines = doc.splitlines()
    summary: list[str] = []
    params: dict[str, str] = {}
    current: str | None = None
    in_args = False
    for line in lines:
        stripped = line.strip()
        if _ARGS_HEADER.match(stripped):
            in_args = True
            continue
        if not in_args:
            summary.append(line)
            continue
        if stripped and not line.startswith((" ", "\t")):
            in_args = False  # the next section ("Returns:", ...) ends the arguments
            current = None
            continue
        match = _ARG_LINE.match(stripped)
        if match and line.startswith(("    ", "\t")) and not line.startswith(("        ", "\t\t")):
            current = match.group(1).lstrip("*")
            params[current] = match.group(3).strip()
        elif current and stripped:
            params[current] = f"{params[current]} {stripped}".strip()
    return "\n".join(summary).strip(), params


def _described(hint: Any) -> bool:
    # An explicit Field(description=...) in Annotated wins over the docstring.
    return get_origin(hint) is Annotated and any(
        isinstance(meta, FieldInfo) and meta.description for meta in get_args(hint)[1:]
    )


def _untitled(schema: Any) -> Any:
    # pydantic titles every model and field; to a model they are noise it pays tokens for.
    if isinstance(schema, dict):
        return {k: _untitled(v) for k, v in schema.items() if k != "title" or not isinstance(v, str)}
    if isinstance(schema, list):
        return [_untitled(v) for v in schema]
    return schema
