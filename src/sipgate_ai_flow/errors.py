"""Exceptions raised by sipgate-ai-flow.

Every exception the SDK raises on purpose derives from :class:`AiFlowError`::

    AiFlowError
    ├── ProtocolError (ValueError)       bytes or data that are not valid AI Flow JSON;
    │   │                                 ``.errors`` lists each problem with its JSON path
    │   ├── InvalidEventError             an event could not be parsed
    │   ├── InvalidActionError            an action is invalid (also raised by action constructors)
    │   └── AudioFormatError              audio that is not base64 WAV, 16 kHz, mono, 16-bit PCM
    ├── HandlerError (TypeError)          a handler cannot be registered (bad signature, unknown name)
    ├── InvalidReplyError (TypeError)     a handler returned something that cannot become actions
    ├── SsmlError (ValueError)            SSML that would not be a well-formed document
    ├── TargetError                       ``module:attr`` / ``file.py:attr`` could not be loaded
    ├── CallEndedError (RuntimeError)     ``call.send`` on a call that has ended
    ├── StateError (TypeError)            ``call.state`` holds a value that is not JSON-serialisable
    └── ApiError                          the sipgate REST API refused or failed a request
        ├── ApiConnectionError            no answer: connecting failed or timed out (``.placed`` unknown)
        ├── BadRequestError               400: the request or the flow's setup is wrong
        ├── AuthenticationError           401: the API token is missing, wrong or expired
        ├── PermissionDeniedError         403: the token may not do this (outbound calls need approval)
        ├── NotFoundError                 404: no AI flow with that id
        ├── RateLimitError                429: too many requests (``.retry_after``)
        └── ServerError                   5xx: sipgate's side failed
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pydantic import ValidationError

__all__ = [
    "AiFlowError",
    "ApiConnectionError",
    "ApiError",
    "AudioFormatError",
    "AuthenticationError",
    "BadRequestError",
    "CallEndedError",
    "FieldError",
    "HandlerError",
    "InvalidActionError",
    "InvalidEventError",
    "InvalidReplyError",
    "NotFoundError",
    "PermissionDeniedError",
    "ProtocolError",
    "RateLimitError",
    "ServerError",
    "SsmlError",
    "StateError",
    "TargetError",
]


class AiFlowError(Exception):
    """Root of every error the SDK raises on purpose."""


@dataclass(frozen=True, slots=True)
class FieldError:
    """One problem in a document: where (a JSON path such as ``session.id`` or ``[1].text``) and what."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


def kind_of(value: object) -> str:
    """Name ``value``'s type with its article, for messages: ``"an int"``, ``"a list"``."""
    name = type(value).__name__
    return f"{'an' if name[:1].lower() in 'aeiou' else 'a'} {name}"


def format_path(loc: Iterable[int | str]) -> str:
    """Render a pydantic location tuple as a JSON path: ``("tts", "voice")`` -> ``tts.voice``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else part
    return out


class ProtocolError(AiFlowError, ValueError):
    """Data that is not valid AI Flow JSON. ``errors`` names every bad field by its JSON path."""

    def __init__(self, summary: str, errors: Sequence[FieldError] = ()) -> None:
        self.summary = summary
        self.errors: tuple[FieldError, ...] = tuple(errors)
        detail = "; ".join(str(e) for e in self.errors)
        super().__init__(f"{summary}: {detail}" if detail else summary)

    @classmethod
    def from_validation_error(
        cls, summary: str, exc: ValidationError, *, union_tags: frozenset[str] = frozenset()
    ) -> ProtocolError:
        """Translate a pydantic ``ValidationError`` into this error type, keeping each field's path.

        ``union_tags`` are the ``type`` values of the union that was validated: pydantic puts the
        chosen tag into the location (``speak.text``), which names no real field, so it is dropped.
        """
        errors: dict[FieldError, None] = {}  # ordered and without repeats
        for err in exc.errors(include_url=False, include_input=False):
            errors[FieldError(format_path(_drop_tags(err["loc"], union_tags)), _message(err["msg"]))] = None
        return cls(summary, list(errors))

    def to_dict(self) -> dict[str, object]:
        """A JSON-ready description, as the server sends it in 400 responses."""
        return {
            "error": self.summary,
            "details": [{"path": e.path, "message": e.message} for e in self.errors],
        }


def _message(msg: str) -> str:
    # pydantic prefixes messages of ValueErrors raised in validators; the field path says enough.
    return msg.removeprefix("Value error, ")


# How pydantic labels the members of a plain union (``int | float``) in an error location.
_UNION_MEMBER = re.compile(r"^(int|float|str|bool|constrained-str|literal\[.*\]|function-[a-z]+\[.*\])$")


def _drop_tags(loc: Sequence[int | str], tags: frozenset[str]) -> list[int | str]:
    # A union tag can only stand first or right after a list index; elsewhere the same word is a
    # field name (``barge_in`` is both an action type and a field of ``speak``).
    return [
        part
        for i, part in enumerate(loc)
        if not (
            isinstance(part, str)
            and (_UNION_MEMBER.match(part) or (part in tags and (i == 0 or isinstance(loc[i - 1], int))))
        )
    ]


class InvalidEventError(ProtocolError):
    """An event could not be parsed."""


class InvalidActionError(ProtocolError):
    """An action is invalid; raised by action constructors and when parsing actions."""


class AudioFormatError(ProtocolError):
    """Audio that AI Flow cannot play: it needs base64 WAV, 16 kHz, mono, 16-bit PCM."""


class HandlerError(AiFlowError, TypeError):
    """A handler cannot be registered: unknown event name or a signature the SDK cannot call."""


class InvalidReplyError(AiFlowError, TypeError):
    """A handler returned something that cannot be turned into actions."""


class TargetError(AiFlowError):
    """A ``module:attr`` or ``path/to/file.py:attr`` target could not be loaded."""


class CallEndedError(AiFlowError, RuntimeError):
    """Actions were sent on a call that has ended: nobody is there to hear them."""


class StateError(AiFlowError, TypeError):
    """``call.state`` holds a value that cannot be stored as JSON."""


class SsmlError(AiFlowError, ValueError):
    """SSML that cannot be built: a value that would make the document malformed or meaningless."""


class ApiError(AiFlowError):
    """The sipgate REST API refused or failed a request.

    ``status`` is the HTTP status (``None`` when no answer came), ``detail`` the start of the
    response body, ``placed`` whether the request may have taken effect (``None``: unknown).
    """

    def __init__(
        self, message: str, *, status: int | None = None, detail: str = "", placed: bool | None = False
    ) -> None:
        self.status = status
        self.detail = detail
        self.placed = placed
        super().__init__(f"{message} (the API said: {detail})" if detail else message)


class ApiConnectionError(ApiError):
    """No answer from the API: it could not be reached, or it did not answer in time."""


class BadRequestError(ApiError):
    """HTTP 400: the request or the AI flow's setup is wrong (e.g. the flow has no phone number)."""


class AuthenticationError(ApiError):
    """HTTP 401: the API token is missing, wrong or expired."""


class PermissionDeniedError(ApiError):
    """HTTP 403: the token may not do this; outbound calls need approval by sipgate support."""


class NotFoundError(ApiError):
    """HTTP 404: there is no AI flow with that id (for this token)."""


class RateLimitError(ApiError):
    """HTTP 429: too many requests. ``retry_after`` is the wait the API asked for, in seconds."""

    def __init__(self, message: str, *, retry_after: float | None = None, detail: str = "") -> None:
        self.retry_after = retry_after
        super().__init__(message, status=429, detail=detail)


class ServerError(ApiError):
    """HTTP 5xx: sipgate's side failed; the call may or may not have been placed."""
