"""A call made in the console, written as a scenario file that ``aiflow test`` runs.

The caller's steps are taken as they were made, each at its moment of the call, and so are the
``wait_until`` steps the console's clock made between them. After each of the caller's steps
comes an ``expect`` of what the assistant answered until the next one (its action types and the
words it said), and at the end the call's outcome: the call as it went, as a regression test.
"""

from __future__ import annotations

from typing import Any

import yaml

from sipgate_ai_flow.protocol.actions import Action
from sipgate_ai_flow.testing.checks import check_action
from sipgate_ai_flow.testing.emulator import EmulatedCall
from sipgate_ai_flow.testing.speech import heard

__all__ = ["scenario_document", "scenario_yaml"]

_TIME_STEPS = ("wait_until", "listen")


def scenario_document(call: EmulatedCall, *, name: str, deadline: float) -> dict[str, Any]:
    """The scenario of ``call`` so far, as a JSON/YAML-ready mapping."""
    session = call.session
    setup: dict[str, Any] = {"direction": session.direction or "inbound"}
    setup.update(
        (key, value)
        for key, value in (
            ("from", session.from_phone_number),
            ("to", session.to_phone_number),
            ("flow_number", session.phone_number),
        )
        if value
    )
    if not call.options.transfer_answers:
        setup["transfer_answers"] = False
    steps: list[dict[str, Any]] = []
    for head, group in _groups(call):
        if "start" not in head:
            steps.append(head)
        steps += [step for step, _ in group[1:]]
        if "hangup" in head:
            continue  # nothing can answer the end of the call
        actions = [action for _, taken in group for action in taken]
        expect: dict[str, Any] = {"actions": [action.type for action in actions]}
        if said := heard(actions):
            expect["said"] = said
        steps.append({"expect": expect})
    document: dict[str, Any] = {
        "name": name,
        "call": setup,
        "deadline": deadline,
        "words_per_minute": call.options.words_per_minute,
        "steps": steps,
    }
    if outcome := _outcome(call):
        document["expect"] = outcome
    return document


def scenario_yaml(call: EmulatedCall, *, name: str, deadline: float) -> str:
    """:func:`scenario_document` as YAML."""
    document = scenario_document(call, name=name, deadline=deadline)
    return yaml.safe_dump(document, sort_keys=False, allow_unicode=True, width=100)


def _groups(call: EmulatedCall) -> list[tuple[dict[str, Any], list[tuple[dict[str, Any], list[Action]]]]]:
    """The call's steps, each caller step with the clock steps after it, and the (usable)
    actions that came during each."""
    by_step: dict[int, list[Action]] = {}
    steps: list[dict[str, Any]] = []
    for entry in call.transcript:
        if entry.kind == "step":
            steps.append(entry.data)
        elif entry.kind == "action":
            # What the emulator took as an action: scenarios see those, not the rejected ones.
            action, problems = check_action(entry.data, call.session.id)
            if action is not None and all(p.kind == "unknown_value" for p in problems):
                by_step.setdefault(entry.step, []).append(action)
    groups: list[tuple[dict[str, Any], list[tuple[dict[str, Any], list[Action]]]]] = []
    for number, step in enumerate(steps):
        taken = (step, by_step.get(number, []))
        if step.keys() & set(_TIME_STEPS) and groups:
            groups[-1][1].append(taken)
        else:
            groups.append((step, [taken]))
    return groups


def _outcome(call: EmulatedCall) -> dict[str, Any]:
    outcome: dict[str, Any] = {}
    if call.ended:
        outcome.update(ended=True, end_reason=call.end_reason)
    if call.transferred_to is not None:
        outcome["transferred_to"] = call.transferred_to
    if call.hung_up:
        outcome["hung_up"] = True
    if call.sms:
        outcome["sms_to"] = call.sms[-1].phone_number
    if call.violations:
        outcome["violations"] = sorted(v.kind for v in call.violations)
    return outcome
