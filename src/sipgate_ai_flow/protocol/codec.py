"""The one place where bytes become models and models become bytes."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, TypeVar, Union

from pydantic import Field, TypeAdapter, ValidationError
from pydantic_core import from_json

from sipgate_ai_flow.errors import FieldError, InvalidActionError, InvalidEventError
from sipgate_ai_flow.protocol.actions import ACTION_TYPES, Action
from sipgate_ai_flow.protocol.events import EVENT_TYPES, KNOWN_EVENTS, Event, EventBase, UnknownEvent

__all__ = [
    "action_json_schema",
    "dump_actions",
    "dump_event",
    "event_json_schema",
    "parse_action",
    "parse_actions",
    "parse_event",
]

_EVENT = TypeAdapter[Event](Event)
# Parsing goes by the plain ``type`` tag: pydantic-core picks the model without calling back into
# Python, about a third faster than ``Event``'s callable discriminator. Unknown types fall back.
_KNOWN_UNION: Any = Annotated[Union[KNOWN_EVENTS], Field(discriminator="type")]  # noqa: UP007 - built at runtime
_KNOWN_EVENT: TypeAdapter[EventBase] = TypeAdapter(_KNOWN_UNION)
_UNKNOWN_EVENT = TypeAdapter(UnknownEvent)
_ACTION = TypeAdapter[Action](Action)
_ACTIONS = TypeAdapter[list[Action]](list[Action])
_EVENT_TAGS = EVENT_TYPES | {"__unknown__"}

JsonInput = bytes | bytearray | str | Mapping[str, Any]
T = TypeVar("T")


def parse_event(data: JsonInput) -> Event:
    """Parse one event from JSON text/bytes or an already decoded mapping.

    Raises :class:`InvalidEventError` naming each bad field by its JSON path.
    """
    try:
        return _validate(_KNOWN_EVENT, data)  # type: ignore[return-value]
    except ValidationError as exc:
        error = exc
    if error.error_count() == 1 and error.errors(include_url=False)[0]["type"] == "union_tag_invalid":
        try:
            return _validate(_UNKNOWN_EVENT, data)  # D10: a type this SDK does not know yet
        except ValidationError as exc:
            error = exc
    raise _explain(InvalidEventError, "invalid event", data, error, _EVENT_TAGS) from None


def parse_action(data: JsonInput) -> Action:
    """Parse one action; raises :class:`InvalidActionError` naming each bad field."""
    try:
        return _validate(_ACTION, data)
    except ValidationError as exc:
        raise _explain(InvalidActionError, "invalid action", data, exc, ACTION_TYPES) from None


def parse_actions(data: JsonInput | Sequence[Mapping[str, Any]]) -> list[Action]:
    """Parse a reply body: one action object or an array of them (D1)."""
    decoded: Any = data
    if isinstance(data, bytes | bytearray | str):
        try:
            # pydantic-core's parser, not json.loads: it bounds nesting with an error where
            # json.loads overflows the stack with RecursionError (found by fuzzing).
            decoded = from_json(data)
        except ValueError as exc:
            raise InvalidActionError("invalid action", [FieldError("", f"not valid JSON ({exc})")]) from None
    if isinstance(decoded, Mapping):
        return [parse_action(decoded)]
    if not isinstance(decoded, list):
        raise InvalidActionError(
            "invalid action", [FieldError("", "expected an action object or an array of actions")]
        )
    try:
        return _ACTIONS.validate_python(decoded)
    except ValidationError as exc:
        raise InvalidActionError.from_validation_error(
            "invalid action list", exc, union_tags=ACTION_TYPES
        ) from None


def dump_actions(actions: Sequence[Action]) -> bytes | None:
    """Encode a reply: ``None`` for no action, an object for one, an array for several (D1)."""
    if not actions:
        return None
    if len(actions) == 1:
        return actions[0].model_dump_json(exclude_none=True).encode()
    return _ACTIONS.dump_json(list(actions), exclude_none=True)


def dump_event(event: EventBase) -> bytes:
    """Encode one event as the service sends it, unknown fields included (D10)."""
    text = event.model_dump_json(exclude_none=True).encode()
    # ``exclude_none`` is meant for our optional fields, but it drops unknown ones that are null
    # too (found by fuzzing): put those back, so that an event reads back as it came.
    nulls = [
        (where, key)
        for where, model in (("", event), ("session", event.session))
        for key, value in (model.model_extra or {}).items()
        if value is None
    ]
    if not nulls:
        return text
    document = json.loads(text)
    for where, key in nulls:
        (document[where] if where else document)[key] = None
    return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode()


def event_json_schema() -> dict[str, Any]:
    """JSON Schema of every event."""
    return _EVENT.json_schema()


def action_json_schema() -> dict[str, Any]:
    """JSON Schema of every action."""
    return _ACTION.json_schema()


def _validate(adapter: TypeAdapter[T], data: JsonInput) -> T:
    # Bytes go straight to pydantic-core's JSON parser: no intermediate dicts.
    if isinstance(data, Mapping):
        return adapter.validate_python(data)
    return adapter.validate_json(data)


def _explain(
    kind: type[InvalidEventError] | type[InvalidActionError],
    summary: str,
    data: JsonInput,
    exc: ValidationError,
    tags: frozenset[str],
) -> InvalidEventError | InvalidActionError:
    # The error path only: find out what the document is to say something better than pydantic's
    # generic union messages for the three commonest mistakes.
    first = exc.errors(include_url=False)[0]
    if first["type"] == "json_invalid":
        return kind(summary, [FieldError("", f"not valid JSON ({first['ctx']['error']})")])
    decoded: object = data if isinstance(data, Mapping) else from_json(data)
    if not isinstance(decoded, Mapping):
        return kind(summary, [FieldError("", f"expected a JSON object, got {type(decoded).__name__}")])
    if not isinstance(decoded.get("type"), str):
        return kind(summary, [FieldError("type", "missing or not a string")])
    if kind is InvalidActionError and decoded["type"] not in ACTION_TYPES:
        known = ", ".join(sorted(ACTION_TYPES))
        return kind(
            summary,
            [FieldError("type", f"unknown action type {decoded['type']!r}; one of {known}")],
        )
    return kind.from_validation_error(summary, exc, union_tags=tags)  # type: ignore[return-value]
