"""Turning what a handler returns into a list of actions (D1, D2, D3, D17)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sipgate_ai_flow.errors import InvalidReplyError, kind_of
from sipgate_ai_flow.protocol.actions import Action, ActionBase, Speak, Transfer
from sipgate_ai_flow.protocol.codec import parse_action
from sipgate_ai_flow.protocol.session import SessionInfo

__all__ = ["Reply", "to_actions"]

Reply = None | str | ActionBase | Mapping[str, Any] | Sequence["str | ActionBase | Mapping[str, Any] | None"]
"""What a handler may return: nothing, text to speak, an action (or its dict), or a list of those."""

_USAGE = "return None, a str, an action (or its dict), or a list of those"


def to_actions(result: object, session: SessionInfo) -> list[Action]:
    """Normalise a handler's return value into actions addressed to ``session``.

    Raises :class:`InvalidReplyError` when the value cannot become actions.
    """
    if result is None:
        return []
    if isinstance(result, list | tuple):
        actions: list[Action] = []
        for index, item in enumerate(result):
            if item is None:
                continue
            if isinstance(item, list | tuple):
                raise InvalidReplyError(f"item {index} of the reply is a nested list; {_USAGE}")
            actions.extend(_one(item, session, f"item {index} of the reply"))
        return actions
    return _one(result, session, "the reply")


def _one(item: object, session: SessionInfo, where: str) -> list[Action]:
    if isinstance(item, str):
        # Like the TypeScript SDK, an empty string is "nothing to say", not an error.
        return [Speak(text=item, session_id=session.id)] if item else []
    if isinstance(item, ActionBase):
        return [_address(item, session)]  # type: ignore[list-item]
    if isinstance(item, Mapping):
        return [_address(parse_action(item), session)]  # type: ignore[list-item]
    raise InvalidReplyError(f"{where} is {kind_of(item)}; {_USAGE}")


def _address(action: ActionBase, session: SessionInfo) -> ActionBase:
    updates: dict[str, str] = {}
    if action.session_id is None:
        updates["session_id"] = session.id
    if isinstance(action, Transfer) and session.phone_number:
        # D3: the flow's own number is the caller id unless the user chose one.
        if action.caller_id_number is None:
            updates["caller_id_number"] = session.phone_number
        if action.caller_id_name is None:
            updates["caller_id_name"] = session.phone_number
    return action.model_copy(update=updates) if updates else action
