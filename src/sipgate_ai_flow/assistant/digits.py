"""Collecting keypad input (DTMF): N digits or up to ``#``, with timeouts, re-prompts and a give-up.

The collector is plain code on top of the normal handlers and ``call.state``: feed it the call's
``dtmf_received`` and ``user_input_timeout`` events (and ``user_speak``, for digits said aloud)
and send what it answers.

Timing uses the one timer the service has: ``user_input_timeout`` fires when the caller stays
silent for ``user_input_timeout_seconds`` after a ``speak``. The prompt carries the wait for the
first key; after each key the collector answers with a short silent ``speak`` that carries the
wait for the next one. So the inter-digit timeout works over HTTP and WebSocket alike, with no
timer in this process.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from sipgate_ai_flow.assistant.call import Call
from sipgate_ai_flow.assistant.replies import Reply, to_actions
from sipgate_ai_flow.protocol import ssml
from sipgate_ai_flow.protocol.actions import Action, BargeIn, Speak
from sipgate_ai_flow.protocol.events import DtmfReceived, EventBase, UserInputTimeout, UserSpeak

__all__ = ["Collected", "DigitCollector"]

_KEYS = "0123456789*#ABCD"
_NOT_DIGIT = re.compile(r"[^0-9]")
# Silence that carries the wait for the next key (see the module docs).
_SILENCE = ssml.speak(ssml.pause(100))
Status = Literal["collecting", "complete", "retry", "gave_up", "inactive"]


@dataclass(frozen=True, slots=True)
class Collected:
    """What feeding one event to a :class:`DigitCollector` led to.

    ``status``: ``collecting`` (send ``reply``, more keys to come), ``complete`` (``digits`` is the
    entry; the collector is done), ``retry`` (``reply`` re-prompts; ``reason`` says why),
    ``gave_up`` (``reply`` is the give-up message; the collector is done), or ``inactive`` (the
    collector is not running on this call; the event is for your other logic).
    """

    status: Status
    digits: str = ""
    reply: list[Action] = field(default_factory=list)
    reason: str | None = None
    attempt: int = 0

    @property
    def complete(self) -> bool:
        """Whether ``digits`` holds a finished entry."""
        return self.status == "complete"


class DigitCollector:
    """Collects one keypad entry per call; see the module docs for how it times.

    ``prompt`` asks for the entry. The entry ends at ``max_digits`` keys, at the ``terminator``
    key, or when the caller pauses longer than ``inter_digit_timeout`` seconds; it needs at least
    ``min_digits`` keys (default: ``max_digits``, else 1). ``clear_key`` starts over. With nothing
    typed for ``first_digit_timeout`` seconds, too few digits, or an entry ``validate`` refuses
    (it returns a message to say, or ``None``), the caller hears ``retry`` (or that message) and
    the prompt again; after ``attempts`` tries they hear ``give_up``. ``accept_speech`` takes the
    digits of a ``user_speak`` ("one two three four" is transcribed as digits) as a whole entry.
    """

    def __init__(
        self,
        name: str = "digits",
        *,
        prompt: Reply,
        max_digits: int | None = None,
        min_digits: int | None = None,
        terminator: str | None = "#",
        clear_key: str | None = "*",
        first_digit_timeout: float = 8.0,
        inter_digit_timeout: float = 4.0,
        attempts: int = 3,
        retry: Reply = "Sorry, I did not get that.",
        give_up: Reply = "Sorry, I could not get your entry.",
        validate: Callable[[str], str | None] | None = None,
        accept_speech: bool = True,
    ) -> None:
        for key, what in ((terminator, "terminator"), (clear_key, "clear_key")):
            if key is not None and (len(key) != 1 or key not in _KEYS or key.isdigit()):
                raise ValueError(f"{what} must be one of the keys *, #, A-D, got {key!r}")
        if terminator is not None and terminator == clear_key:
            raise ValueError("terminator and clear_key must be different keys")
        if max_digits is not None and max_digits < 1:
            raise ValueError(f"max_digits must be 1 or more, got {max_digits}")
        lowest = min_digits if min_digits is not None else (max_digits or 1)
        if lowest < 1 or (max_digits is not None and lowest > max_digits):
            raise ValueError(f"min_digits must be between 1 and max_digits, got {lowest}")
        if max_digits is None and terminator is None:
            raise ValueError("set max_digits, a terminator, or both: otherwise an entry never ends early")
        if first_digit_timeout <= 0 or inter_digit_timeout <= 0 or attempts < 1:
            raise ValueError("timeouts must be more than 0 seconds and attempts 1 or more")
        self.name = name
        self.prompt = prompt
        self.max_digits = max_digits
        self.min_digits = lowest
        self.terminator = terminator
        self.clear_key = clear_key
        self.first_digit_timeout = first_digit_timeout
        self.inter_digit_timeout = inter_digit_timeout
        self.attempts = attempts
        self.retry = retry
        self.give_up = give_up
        self.validate = validate
        self.accept_speech = accept_speech
        self._key = f"dtmf:{name}"

    def start(self, call: Call) -> list[Action]:
        """Begin collecting on this call: returns the prompt to send."""
        call.state[self._key] = {"digits": "", "attempt": 1}
        return self._prompt(call, self.prompt)

    def active(self, call: Call) -> bool:
        """Whether this collector is collecting on ``call``."""
        return self._key in call.state

    def cancel(self, call: Call) -> None:
        """Stop collecting on ``call`` (e.g. the caller asked for something else)."""
        call.state.pop(self._key, None)

    def feed(self, event: EventBase, call: Call) -> Collected:
        """Take one event of the call: a key, a timeout, or (with ``accept_speech``) speech."""
        entry: dict[str, Any] | None = call.state.get(self._key)
        if entry is None:
            return Collected("inactive")
        attempt = int(entry["attempt"])
        if isinstance(event, DtmfReceived):
            return self._key_pressed(event.digit, entry, call)
        if isinstance(event, UserInputTimeout):
            digits = str(entry["digits"])
            if len(digits) >= self.min_digits:
                return self._finish(digits, call)
            return self._fail("nothing typed" if not digits else "too few digits", call)
        if isinstance(event, UserSpeak) and self.accept_speech:
            digits = _NOT_DIGIT.sub("", event.text)
            if not digits:
                return self._fail("no digits in what was said", call)
            return self._finish(digits, call)
        return Collected("collecting", str(entry["digits"]), attempt=attempt)

    # -- internals ----------------------------------------------------------------------------

    def _key_pressed(self, key: str, entry: dict[str, Any], call: Call) -> Collected:
        digits = str(entry["digits"])
        attempt = int(entry["attempt"])
        if key == self.terminator:
            return self._finish(digits, call)
        if key == self.clear_key:
            entry["digits"] = ""
            return Collected("collecting", "", self._wait(call), attempt=attempt)
        if not key.isdigit():
            return Collected("collecting", digits, self._wait(call), attempt=attempt)
        digits += key
        if self.max_digits is not None and len(digits) >= self.max_digits:
            return self._finish(digits, call)
        entry["digits"] = digits
        # The first key stops the prompt: callers who know what to type should not have to wait.
        first = [BargeIn(session_id=call.id)] if len(digits) == 1 else []
        return Collected("collecting", digits, first + self._wait(call), attempt=attempt)

    def _finish(self, digits: str, call: Call) -> Collected:
        if len(digits) < self.min_digits:
            return self._fail("too few digits", call)
        if self.max_digits is not None and len(digits) > self.max_digits:
            return self._fail("too many digits", call)
        if self.validate is not None and (problem := self.validate(digits)) is not None:
            return self._fail(problem, call, say=problem)
        attempt = int(call.state[self._key]["attempt"])
        self.cancel(call)
        return Collected("complete", digits, attempt=attempt)

    def _fail(self, reason: str, call: Call, *, say: str | None = None) -> Collected:
        entry = call.state[self._key]
        attempt = int(entry["attempt"]) + 1
        stop = [BargeIn(session_id=call.id)]
        if attempt > self.attempts:
            self.cancel(call)
            return Collected("gave_up", reply=stop + to_actions(self.give_up, call.session), reason=reason)
        call.state[self._key] = {"digits": "", "attempt": attempt}
        retry = to_actions(say if say is not None else self.retry, call.session)
        return Collected(
            "retry", reply=stop + retry + self._prompt(call, self.prompt), reason=reason, attempt=attempt
        )

    def _prompt(self, call: Call, prompt: Reply) -> list[Action]:
        actions = to_actions(prompt, call.session)
        if actions and isinstance(actions[-1], Speak) and actions[-1].user_input_timeout_seconds is None:
            actions[-1] = actions[-1].model_copy(
                update={"user_input_timeout_seconds": self.first_digit_timeout}
            )
            return actions
        return actions + self._wait(call, self.first_digit_timeout)

    def _wait(self, call: Call, seconds: float | None = None) -> list[Action]:
        timeout = self.inter_digit_timeout if seconds is None else seconds
        return [Speak(session_id=call.id, ssml=_SILENCE, user_input_timeout_seconds=timeout)]
