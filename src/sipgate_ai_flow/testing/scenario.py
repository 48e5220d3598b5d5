"""Scenario files: a call's caller steps and what the assistant must do, in YAML or JSON.

A file holds one scenario (a mapping with ``steps``), a list of them, or ``{"scenarios": [...]}``::

    name: keypad menu
    call: {transfer_answers: false}
    steps:
      - expect: {said: Welcome}
      - press: "1"
      - expect: {actions: [speak, transfer], transferred_to: "4921100200"}
    expect: {ended: false}

A scenario fails on any violation unless its expectations list it under ``violations``.

For LLM assistants a step may hand the caller's part to a model (``simulate: {goal: ...,
max_turns: 4}``), and an expectation may name the tools the assistant's model called
(``tool_called: transfer_call``, read from the ``Evals`` tool log, e.g. the fake model) or ask
an LLM judge (``judge: "the caller learned the opening hours"``). See :mod:`.evals`.

``within_ms: 300`` in a step's ``expect`` asks for the first action answering that caller step
within 300 ms (real time, a hold counts); in the final ``expect``, for every answered turn of the
call. Every result carries each step's latency (:mod:`.latency`).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Self

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from sipgate_ai_flow.errors import FieldError, ProtocolError
from sipgate_ai_flow.protocol.actions import Action, SendSms
from sipgate_ai_flow.testing.checks import Regex, StrictModeError, ViolationKind
from sipgate_ai_flow.testing.emulator import EmulatedCall, Emulator, EmulatorError
from sipgate_ai_flow.testing.evals import EvalError, Evals
from sipgate_ai_flow.testing.latency import AWAITED_EVENTS, Latency, StepLatency, Turn
from sipgate_ai_flow.testing.speech import heard
from sipgate_ai_flow.testing.transports import TransportError, WebSocketTransport

__all__ = [
    "Expect",
    "Scenario",
    "ScenarioError",
    "ScenarioResult",
    "Simulate",
    "Step",
    "StepLatency",
    "load_scenarios",
    "run_scenario",
    "run_scenarios",
]

SCENARIO_SUFFIXES = (".yaml", ".yml", ".json")
_STEP_KINDS = ("say", "interrupt", "press", "silence", "listen", "wait_until", "hangup", "simulate", "expect")


class ScenarioError(ProtocolError):
    """A scenario file that cannot be read; ``errors`` name each bad field by its path."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _texts(value: str | list[str] | None) -> list[str]:
    return [] if value is None else [value] if isinstance(value, str) else value


class Expect(_Model):
    """What the assistant must have done: since the step before (in ``steps``), or in the whole
    call (a scenario's final ``expect``). Text comparisons ignore case."""

    said: str | list[str] | None = Field(default=None, description="Text(s) the speech must contain.")
    said_matches: Regex | None = Field(default=None, description="A regular expression the speech matches.")
    not_said: str | list[str] | None = Field(default=None, description="Text(s) the speech must not contain.")
    said_nothing: bool | None = None
    actions: list[str] | None = Field(default=None, description="The action types, in order.")
    transferred_to: str | None = None
    hung_up: bool | None = None
    ended: bool | None = Field(default=None, description="Whether the call has ended (after playback).")
    end_reason: str | None = None
    sms_to: str | None = None
    sms_contains: str | None = None
    settings: list[str] | None = Field(default=None, description="Session settings made, by action type.")
    violations: list[ViolationKind] | None = Field(
        default=None, description="The kinds of violation expected so far in the call (any order)."
    )
    tool_called: str | list[str] | None = Field(
        default=None, description="Tool(s) the assistant's model must have called (from the tool log)."
    )
    judge: str | None = Field(
        default=None, min_length=1, description="A statement about the call so far an LLM judge must accept."
    )
    # Strict: `true` or "300" in a YAML file is a mistake, not 1 ms or 300 ms.
    within_ms: float | None = Field(
        default=None,
        gt=0,
        allow_inf_nan=False,
        strict=True,
        description="The first action must arrive within this many ms of the step's event (a hold counts); "
        "in the final expect, of every answered event of the call.",
    )

    @property
    def needs_playback(self) -> bool:
        """Whether checking this needs the call to have played out (the call's fate)."""
        return self.ended is not None or self.end_reason is not None

    @property
    def about_speech(self) -> bool:
        """Whether this checks what was said or done (worth waiting for a late WebSocket reply)."""
        checks = (self.said, self.said_matches, self.said_nothing, self.actions, self.tool_called, self.judge)
        return any(v is not None for v in checks)

    def check_tools(self, called: list[str]) -> list[str]:
        """What ``tool_called`` misses among the names of the tools ``called``."""
        missing = [name for name in _texts(self.tool_called) if name not in called]
        return [f"expected a call of the tool {name!r}; tools called: {called}" for name in missing]

    def check(self, call: EmulatedCall, actions: Sequence[Action]) -> list[str]:
        """What does not hold, in words; empty when everything does."""
        speech = " ".join(heard(actions))
        lowered = speech.lower()
        shown = f"; said: {speech!r}" if speech else "; nothing was said"
        failures = [
            f"expected speech containing {t!r}{shown}" for t in _texts(self.said) if t.lower() not in lowered
        ]
        failures += [
            f"expected speech without {t!r}{shown}" for t in _texts(self.not_said) if t.lower() in lowered
        ]
        if self.said_matches is not None and not re.search(self.said_matches, speech, re.IGNORECASE):
            failures.append(f"expected speech matching /{self.said_matches}/{shown}")
        if self.said_nothing is not None and self.said_nothing == bool(speech):
            failures.append(f"expected {'no ' if self.said_nothing else ''}speech{shown}")
        types = [a.type for a in actions]
        if self.actions is not None and types != self.actions:
            failures.append(f"expected actions {self.actions}, got {types}")
        failures += self._fate(call)
        return failures

    def _fate(self, call: EmulatedCall) -> list[str]:
        failures = []
        if self.transferred_to is not None and call.transferred_to != self.transferred_to:
            failures.append(f"expected a transfer to {self.transferred_to}, got {call.transferred_to}")
        if self.hung_up is not None and call.hung_up != self.hung_up:
            failures.append(f"expected the assistant {'to' if self.hung_up else 'not to'} hang up")
        if self.ended is not None and call.ended != self.ended:
            failures.append(f"expected the call {'to have' if self.ended else 'not to have'} ended")
        if self.end_reason is not None and call.end_reason != self.end_reason:
            failures.append(f"expected the call to end by {self.end_reason}, it ended by {call.end_reason}")
        failures += self._sms(call.sms)
        if self.settings is not None and sorted(call.settings) != sorted(self.settings):
            failures.append(f"expected settings {sorted(self.settings)}, got {sorted(call.settings)}")
        kinds = sorted(v.kind for v in call.violations)
        if self.violations is not None and kinds != sorted(self.violations):
            failures.append(f"expected violations {sorted(self.violations)}, got {kinds}")
        return failures

    def _sms(self, sent: list[SendSms]) -> list[str]:
        if self.sms_to is None and self.sms_contains is None:
            return []
        for sms in sent:
            to_ok = self.sms_to is None or sms.phone_number.lstrip("+") == self.sms_to.lstrip("+")
            if to_ok and (self.sms_contains is None or self.sms_contains.lower() in sms.message.lower()):
                return []
        wanted = " ".join(
            x
            for x in (
                f"to {self.sms_to}" if self.sms_to else "",
                f"containing {self.sms_contains!r}" if self.sms_contains else "",
            )
            if x
        )
        return [f"expected an SMS {wanted}; sent: {[(s.phone_number, s.message) for s in sent]}"]


class Simulate(_Model):
    """A model plays the caller toward ``goal``, for up to ``max_turns`` lines (see :class:`Evals`)."""

    goal: str = Field(min_length=1)
    max_turns: int = Field(default=5, ge=1, le=50)
    persona: str = ""


class Step(_Model):
    """One caller step: exactly one of the kinds. ``after_ms`` goes with ``interrupt``; ``at_ms``
    (the moment of the call, as recordings give it) with ``say``, ``press`` and ``hangup``."""

    say: str | None = Field(default=None, min_length=1)
    interrupt: str | None = Field(default=None, min_length=1)
    after_ms: float = Field(default=0, ge=0)
    press: str | None = Field(default=None, pattern=r"^[0-9*#A-Da-d]+$")
    silence: float | None = Field(default=None, ge=0)
    listen: float | None = Field(default=None, ge=0)
    wait_until: float | None = Field(default=None, ge=0)
    hangup: Literal[True] | None = None
    at_ms: float | None = Field(default=None, ge=0)
    simulate: Simulate | None = None
    expect: Expect | None = None

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        # `- hangup` and `- listen` read naturally in YAML without a value.
        if data in ("hangup", "listen"):
            return {data: True if data == "hangup" else 0}
        return data

    @model_validator(mode="after")
    def _one_kind(self) -> Self:
        given = [k for k in _STEP_KINDS if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(f"a step has exactly one of {', '.join(_STEP_KINDS)}; got {given or 'none'}")
        if self.after_ms and not self.interrupt:
            raise ValueError("after_ms belongs to an interrupt step")
        if self.at_ms is not None and given[0] not in ("say", "press", "hangup"):
            raise ValueError("at_ms belongs to a say, press or hangup step")
        return self

    @property
    def kind(self) -> str:
        """Which kind of step this is."""
        return next(k for k in _STEP_KINDS if getattr(self, k) is not None)

    def describe(self) -> str:
        """The step as a short line for reports."""
        value = getattr(self, self.kind)
        if self.simulate is not None:
            return f"simulate {self.simulate.goal!r}"
        return self.kind if self.kind in ("hangup", "expect") else f"{self.kind} {value!r}"

    async def run(self, call: EmulatedCall, evals: Evals | None = None) -> None:
        """Carry out a caller step (``expect`` steps are checked by the runner); a ``simulate``
        step needs ``evals`` (default: from the environment)."""
        if self.simulate is not None:
            sim = self.simulate
            await (evals or Evals()).simulate(call, sim.goal, max_turns=sim.max_turns, persona=sim.persona)
        elif self.say is not None:
            await call.say(self.say, at_ms=self.at_ms)
        elif self.interrupt is not None:
            await call.interrupt(self.interrupt, after_ms=self.after_ms)
        elif self.press is not None:
            await call.press(self.press, at_ms=self.at_ms)
        elif self.silence is not None:
            await call.silence(self.silence)
        elif self.listen is not None:
            await call.listen(self.listen)
        elif self.wait_until is not None:
            await call.wait_until(self.wait_until)
        elif self.hangup:
            await call.hangup(at_ms=self.at_ms)


class CallSetup(_Model):
    """How the call is placed and how the far side behaves."""

    model_config = ConfigDict(populate_by_name=True)

    direction: Literal["inbound", "outbound"] = "inbound"
    from_number: str | None = Field(default=None, alias="from")
    to_number: str | None = Field(default=None, alias="to")
    flow_number: str | None = Field(default=None, description="The flow's number (default: the emulator's).")
    transfer_answers: bool = True
    sms_failure: str | None = None


class Scenario(_Model):
    """A scripted call: setup, caller steps with expectations, and final expectations."""

    name: str = ""
    call: CallSetup = CallSetup()
    strict: bool | None = None
    deadline: float | None = Field(default=None, gt=0)
    words_per_minute: float | None = Field(
        default=None, gt=0, description="Speaking rate of the emulated TTS (the emulator's by default)."
    )
    steps: list[Step] = Field(min_length=1)
    expect: Expect | None = None
    source: str = Field(default="", exclude=True)


@dataclass
class ScenarioResult:
    """How one scenario went: ``failures`` in words (empty when it passed), the call itself, and
    the latency of each caller step that sent an event the assistant answers (``steps``)."""

    scenario: Scenario
    failures: list[str] = field(default_factory=list)
    call: EmulatedCall | None = None
    steps: list[StepLatency] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        """Whether every expectation held and nothing unexpected happened."""
        return not self.failures

    @property
    def turns(self) -> list[Turn]:
        """Every turn of the call, with its first-action latency."""
        return self.call.turns if self.call is not None else []

    @property
    def latencies(self) -> list[float]:
        """The first-action latency (real ms) of every answered turn of the call."""
        return self.call.latencies if self.call is not None else []

    @property
    def latency(self) -> Latency:
        """p50, p95 and the maximum over the call's turns."""
        return self.call.latency if self.call is not None else Latency.of([])


def load_scenarios(paths: Iterable[str | Path]) -> list[Scenario]:
    """Read scenarios from files and folders (``*.yaml``, ``*.yml``, ``*.json``, sorted)."""
    scenarios: list[Scenario] = []
    for path in map(Path, paths):
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.suffix in SCENARIO_SUFFIXES)
            if not files:
                raise ScenarioError(f"no scenario files (*.yaml, *.yml, *.json) in {path}")
        elif path.is_file():
            files = [path]
        else:
            raise ScenarioError(f"no such file or folder: {path}")
        for file in files:
            scenarios += _load_file(file)
    return scenarios


def _load_file(path: Path) -> list[Scenario]:
    text = path.read_text(encoding="utf-8")
    try:
        document = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        raise ScenarioError(
            f"{path}: not valid {path.suffix[1:].upper()}", [FieldError("", str(exc))]
        ) from None
    if isinstance(document, dict) and "scenarios" in document:
        document = document["scenarios"]
    items = document if isinstance(document, list) else [document]
    scenarios = []
    for index, item in enumerate(items):
        prefix = f"[{index}]." if isinstance(document, list) else ""
        try:
            scenario = Scenario.model_validate(item)
        except ValidationError as exc:
            error = ScenarioError.from_validation_error(f"{path}: invalid scenario", exc)
            raise ScenarioError(
                error.summary, [FieldError(prefix + e.path, e.message) for e in error.errors]
            ) from None
        name = scenario.name or (path.stem if len(items) == 1 else f"{path.stem} #{index + 1}")
        scenarios.append(scenario.model_copy(update={"name": name, "source": str(path)}))
    return scenarios


async def run_scenario(
    scenario: Scenario, emulator: Emulator, *, evals: Evals | None = None
) -> ScenarioResult:
    """Place the scenario's call and check every expectation.

    ``evals`` runs simulated callers and judges, and holds the tool log for ``tool_called``
    (default: :class:`Evals` from the environment, without a tool log).
    """
    evals = evals if evals is not None else Evals()
    setup = scenario.call
    call = emulator.call(
        direction=setup.direction,
        from_number=setup.from_number,
        to_number=setup.to_number,
        transfer_answers=setup.transfer_answers,
        sms_failure=setup.sms_failure,
        strict=scenario.strict,
        deadline=scenario.deadline,
        flow_number=setup.flow_number,
    )
    if scenario.words_per_minute is not None:
        # Steps at fixed moments (at_ms, wait_until) meet the speech only at its recorded pace.
        call.options.words_per_minute = scenario.words_per_minute
    result = ScenarioResult(scenario, call=call)
    expects_violations = any(e.violations is not None for e in _expectations(scenario))
    tools = _ToolMarks(evals)
    steps = _Steps(call)
    latest = steps.begin(0, "the call's start")  # the caller step the next expect is about
    try:
        await call.start()
        for number, step in enumerate(scenario.steps, 1):
            if step.expect is None:
                tools.step()
                latest = steps.begin(number, step.describe())
                await step.run(call, evals)
                continue
            failures = []
            if step.expect.within_ms is not None:  # first: over a WebSocket it waits for late answers
                latest.within_ms = step.expect.within_ms
                failures += await _within(call, steps.turns(latest), step.expect.within_ms)
            failures += await _check(call, step.expect, whole_call=False, evals=evals, tools=tools)
            result.failures += [f"step {number} ({_previous(scenario, number)}): {f}" for f in failures]
        if scenario.expect is not None:
            failures = await _check(call, scenario.expect, whole_call=True, evals=evals, tools=tools)
            if scenario.expect.within_ms is not None:
                failures += _all_within(steps, scenario.expect.within_ms)
            result.failures += [f"end of call: {f}" for f in failures]
        if not call.ended:
            await call.hangup()
    except StrictModeError as exc:
        result.failures.append(str(exc))
    except (EmulatorError, TransportError, EvalError) as exc:
        result.failures.append(f"{type(exc).__name__}: {exc}")
    finally:
        await call.close()
        result.steps = steps.done()
    if not expects_violations:
        result.failures += [f"violation: {v}" for v in call.violations]
    return result


class _ToolMarks:
    """Where in the tool log the call, and the latest caller step, began."""

    def __init__(self, evals: Evals) -> None:
        self.log = evals.tool_log
        self.call = self.step_start = self._length()

    def _length(self) -> int:
        return len(self.log.tool_calls) if self.log is not None else 0

    def step(self) -> None:
        self.step_start = self._length()

    def called(self, *, whole_call: bool) -> list[str] | None:
        if self.log is None:
            return None
        return [c.name for c in self.log.tool_calls[self.call if whole_call else self.step_start :]]


async def run_scenarios(
    scenarios: Iterable[Scenario], emulator: Emulator, *, evals: Evals | None = None
) -> list[ScenarioResult]:
    """Run scenarios one after another (``evals`` as for :func:`run_scenario`)."""
    return [await run_scenario(scenario, emulator, evals=evals) for scenario in scenarios]


class _Steps:
    """The caller steps of a running scenario and where in the call's turns each began."""

    def __init__(self, call: EmulatedCall) -> None:
        self.call = call
        self.started: list[tuple[StepLatency, int]] = []

    def begin(self, number: int, description: str) -> StepLatency:
        step = StepLatency(number, description)
        self.started.append((step, len(self.call.turns)))
        return step

    def turns(self, step: StepLatency) -> list[Turn]:
        """The turns ``step`` sent (those since it began, while it is the latest)."""
        index = next(i for i, (s, _) in enumerate(self.started) if s is step)
        end = self.started[index + 1][1] if index + 1 < len(self.started) else None
        return self.call.turns[self.started[index][1] : end]

    def done(self) -> list[StepLatency]:
        """Each step with its turns, those that sent none left out."""
        for step, _ in self.started:
            step.turns = self.turns(step)
        return [step for step, _ in self.started if step.turns]


def _expectations(scenario: Scenario) -> list[Expect]:
    found = [s.expect for s in scenario.steps if s.expect is not None]
    return found + ([scenario.expect] if scenario.expect else [])


def _previous(scenario: Scenario, number: int) -> str:
    for step in reversed(scenario.steps[: number - 1]):
        if step.expect is None:
            return f"after {step.describe()}"
    return "after the greeting"


async def _check(
    call: EmulatedCall, expect: Expect, *, whole_call: bool, evals: Evals, tools: _ToolMarks
) -> list[str]:
    if expect.needs_playback and not call.ended:
        await call.listen()
    failures = _plain(call, expect, whole_call, tools)
    websocket = isinstance(call.transport, WebSocketTransport)
    if websocket and not call.ended and (failures or expect.judge) and expect.about_speech:
        # A WebSocket reply may come later than the emulator's short window; give it the deadline.
        await call.listen(call.options.deadline)
        failures = _plain(call, expect, whole_call, tools)
    if expect.judge is not None:
        verdict = await evals.judge(call, expect.judge)
        if not verdict.passed:
            failures.append(f"the judge does not find that {expect.judge!r}: {verdict.reason}")
    return failures


def _plain(call: EmulatedCall, expect: Expect, whole_call: bool, tools: _ToolMarks) -> list[str]:
    failures = expect.check(call, call.actions if whole_call else call.last_actions)
    if expect.tool_called is not None:
        called = tools.called(whole_call=whole_call)
        if called is None:
            failures.append("tool_called needs a tool log: run with Evals(tool_log=...), e.g. the fake model")
        else:
            failures += expect.check_tools(called)
    return failures


async def _within(call: EmulatedCall, turns: list[Turn], limit: float) -> list[str]:
    """Whether the first action answering the step's event came within ``limit`` ms."""
    if not turns:
        return [
            f"within_ms: the step sent no event the assistant answers ({', '.join(sorted(AWAITED_EVENTS))})"
        ]
    turn = turns[-1]  # the caller's last input: after the last key of "1234#" the caller waits
    waited = 0.0
    if not turn.answered and not call.ended and isinstance(call.transport, WebSocketTransport):
        # Over a WebSocket the answer may come after the emulator's reply window: wait for it (up
        # to the limit or the deadline, whichever is longer) to tell how late it was.
        bound = max(limit / 1000, call.options.deadline)
        started = time.perf_counter()
        while not turn.answered and not call.ended and (left := bound - (time.perf_counter() - started)) > 0:
            await call.listen(left)
        waited = (time.perf_counter() - started) * 1000
    expected = f"expected the first action within {limit:g} ms of {turn.event}"
    if turn.latency_ms is None:
        after = f" (waited {waited:.0f} ms more)" if waited else ""
        return [f"{expected}; no action answered it{after}"]
    if turn.latency_ms > limit:
        return [f"{expected}; it came after {turn.latency_ms:.0f} ms ({turn.action})"]
    return []


def _all_within(steps: _Steps, limit: float) -> list[str]:
    """Every answered turn of the call within ``limit`` ms (unanswered ones are the steps' business)."""
    failures = []
    for step, _ in steps.started:
        for turn in steps.turns(step):
            if turn.latency_ms is not None and turn.latency_ms > limit:
                failures.append(
                    f"expected every first action within {limit:g} ms; {turn.event} of step {step.number} "
                    f"({step.description}) was answered after {turn.latency_ms:.0f} ms ({turn.action})"
                )
    return failures
