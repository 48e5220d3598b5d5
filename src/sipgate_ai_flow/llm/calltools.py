"""Ready-made call-control tools: transfer, hang up after a goodbye, send an SMS.

The call-ending ones (transfer, hang up) do not end the call at once: the agent lets the model
say its goodbye first and sends the ``transfer`` or ``hangup`` after it, at the end of the turn.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal, cast

from pydantic import BaseModel, ConfigDict, Field, create_model

from sipgate_ai_flow.assistant.call import Call
from sipgate_ai_flow.errors import InvalidActionError
from sipgate_ai_flow.llm.tools import Tool, ToolError, ToolResult
from sipgate_ai_flow.protocol.actions import Hangup, SendSms, Transfer
from sipgate_ai_flow.protocol.session import SessionInfo

__all__ = ["hang_up", "send_sms", "transfer"]

_STRICT = ConfigDict(extra="forbid")


class _NoArguments(BaseModel):
    model_config = _STRICT


def transfer(
    to: str | Mapping[str, str],
    *,
    name: str = "transfer_call",
    description: str | None = None,
    timeout: int | None = None,
    farewell: str | None = "I'm putting you through now.",
) -> Tool:
    """A tool that transfers the call: to the number ``to``, or to one of a named set
    (``{"sales": "4921100200", "support": "4921100300"}``), which the model picks by name.

    ``timeout`` (5-120 s) brings the call back to the agent when nobody answers; the history is
    kept. ``farewell`` is said first when the model says nothing after calling the tool.
    """
    if isinstance(to, str):
        Transfer(target_phone_number=to, timeout=timeout)  # a bad number or timeout fails here
        text = description or "Transfer the caller to a human colleague, when they ask for one."

        async def fixed(arguments: BaseModel, call: Call | None) -> ToolResult:
            return _transferring(to, "a colleague", timeout, farewell)

        return Tool(name, text, _NoArguments, fixed)
    if not to:
        raise ToolError("transfer() needs a number or at least one named destination")
    for number in to.values():
        Transfer(target_phone_number=number, timeout=timeout)
    names = tuple(to)
    text = description or f"Transfer the caller to one of: {', '.join(names)}. Use it when they ask for one."
    arguments: type[BaseModel] = create_model(
        f"{name}_arguments",
        __config__=_STRICT,
        destination=(cast(Any, Literal)[names], Field(description="Where to transfer the caller.")),
    )
    numbers = dict(to)

    async def named(arguments: BaseModel, call: Call | None) -> ToolResult:
        destination: str = getattr(arguments, "destination")  # noqa: B009 - a field made at run time
        return _transferring(numbers[destination], destination, timeout, farewell)

    return Tool(name, text, arguments, named)


def _transferring(number: str, label: str, timeout: int | None, farewell: str | None) -> ToolResult:
    return ToolResult(
        data=f"The call will be transferred to {label} when you have finished speaking. "
        "Say a short goodbye now; do not ask anything more.",
        actions=[Transfer(target_phone_number=number, timeout=timeout)],
        farewell=farewell,
    )


def hang_up(
    *,
    name: str = "end_call",
    description: str = "End the call. Use it when the caller is done or says goodbye.",
    farewell: str | None = "Goodbye!",
) -> Tool:
    """A tool that ends the call after the model's goodbye (``farewell`` if it says none)."""

    async def end(arguments: BaseModel, call: Call | None) -> ToolResult:
        return ToolResult(
            data="The call ends when you have finished speaking. Say a short goodbye now.",
            actions=[Hangup()],
            farewell=farewell,
        )

    return Tool(name, description, _NoArguments, end)


def send_sms(
    *,
    to: str | None = None,
    name: str = "send_sms",
    description: str = "Send the caller a text message (SMS), e.g. to confirm what was agreed.",
    max_length: int = 480,
) -> Tool:
    """A tool that sends an SMS written by the model: to ``to``, or to the caller's number.

    The model is told when the caller's number is unknown (an anonymous call). A failed delivery
    arrives later as ``sms_failed``.
    """
    if to is not None:
        SendSms(phone_number=to, message="check")  # a bad number fails here, not in a call
    arguments: type[BaseModel] = create_model(
        f"{name}_arguments",
        __config__=_STRICT,
        message=(
            Annotated[str, Field(min_length=1, max_length=max_length)],
            Field(description="The text of the SMS, short and complete."),
        ),
    )

    async def send(arguments: BaseModel, call: Call | None) -> Any:
        message: str = getattr(arguments, "message")  # noqa: B009 - a field made at run time
        number = to or (_other_party(call.session) if call is not None else None)
        if number is None:
            return "Error: the caller's number is unknown, so no SMS can be sent. Tell the caller."
        sms = SendSms(phone_number=number, message=message)
        return ToolResult(data="The SMS is on its way.", actions=[sms])

    return Tool(name, description, arguments, send)


def _other_party(session: SessionInfo) -> str | None:
    # The person on the line: the caller of an inbound call, the callee of an outbound one.
    number = session.to_phone_number if session.direction == "outbound" else session.from_phone_number
    try:
        SendSms(phone_number=number or "", message="check")
    except InvalidActionError:
        return None  # anonymous, or not a number an SMS can go to
    return number
