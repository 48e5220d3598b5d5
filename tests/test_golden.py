"""Every JSON example of the seeds and protocol.md, stored in tests/data (see its README)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from sipgate_ai_flow import (
    AssistantSpeak,
    AssistantSpeechEnded,
    BargeInConfig,
    DtmfReceived,
    InvalidActionError,
    InvalidEventError,
    SessionEnd,
    SessionInfo,
    SessionStart,
    SmsFailed,
    UserInputTimeout,
    UserSpeak,
    UserSpeechStarted,
)
from sipgate_ai_flow.protocol import dump_actions, parse_actions, parse_event

DATA = Path(__file__).parent / "data"

EXPECTED_EVENTS: dict[str, type] = {
    "seed-e.sms_failed.json": SmsFailed,
    "protocol-1.1.user_speak.json": UserSpeak,
    "protocol-3.1.session_start.json": SessionStart,
    "protocol-3.2.user_speech_started.json": UserSpeechStarted,
    "protocol-3.3.user_speak.json": UserSpeak,
    "protocol-3.4.dtmf_received.json": DtmfReceived,
    "protocol-3.5.assistant_speak.json": AssistantSpeak,
    "seed-s.assistant_speech_ended.json": AssistantSpeechEnded,
    "seed-s.user_input_timeout.json": UserInputTimeout,
    "seed-s.session_end.json": SessionEnd,
}

# Why each example of the sources is not a valid action, as the error must say.
INVALID_ACTIONS: dict[str, tuple[type[Exception], str, str]] = {
    "seed-a.base-structure.json": (InvalidActionError, "", "exactly one of 'text' and 'ssml'"),
    "seed-a.chain-audio-placeholder.json": (InvalidActionError, "audio", "not valid base64"),
    "protocol-4.2.audio-8khz.json": (InvalidActionError, "audio", "sample rate 8000 Hz, needs 16000"),
    "protocol-4.3.mix_audio-placeholder.json": (InvalidActionError, "audio", "not valid base64"),
}


def load(path: Path) -> Any:
    return json.loads(path.read_text())


def test_every_stored_event_has_an_expected_model() -> None:
    assert sorted(p.name for p in (DATA / "events").glob("*.json")) == sorted(EXPECTED_EVENTS)


@pytest.mark.parametrize("name", sorted(EXPECTED_EVENTS))
def test_event_examples_parse_into_their_model(name: str) -> None:
    raw = (DATA / "events" / name).read_bytes()
    parsed = parse_event(raw)
    assert type(parsed) is EXPECTED_EVENTS[name]
    document = json.loads(raw)
    assert parsed.session.id == document["session"]["id"]
    # Every field of the example is reachable on the model under its wire name.
    for key, value in document.items():
        if key != "session":
            assert getattr(parsed, key) == value


def test_base_event_structure_without_type_is_rejected() -> None:
    with pytest.raises(InvalidEventError) as info:
        parse_event((DATA / "invalid_events" / "seed-e.base-structure.json").read_bytes())
    assert [e.path for e in info.value.errors] == ["type"]


@pytest.mark.parametrize("path", sorted((DATA / "actions").glob("*.json")), ids=lambda p: p.name)
def test_action_examples_validate_and_round_trip(path: Path) -> None:
    document = load(path)
    actions = parse_actions(path.read_bytes())
    assert len(actions) == (len(document) if isinstance(document, list) else 1)
    encoded = dump_actions(actions)
    assert encoded is not None
    expected = document
    if path.name == "seed-s.dtmf-transfer.json":  # D3: the alias serialises under the spec's name
        expected = {**document, "target_phone_number": document["transfer_to"]}
        del expected["transfer_to"]
    assert json.loads(encoded) == expected


@pytest.mark.parametrize("name", sorted(INVALID_ACTIONS))
def test_invalid_examples_are_rejected_with_the_reason(name: str) -> None:
    kind, path, reason = INVALID_ACTIONS[name]
    with pytest.raises(kind) as info:
        parse_actions((DATA / "invalid_actions" / name).read_bytes())
    assert isinstance(info.value, InvalidActionError)
    assert [e.path for e in info.value.errors] == [path]
    assert reason in info.value.errors[0].message


def test_every_invalid_example_is_covered() -> None:
    assert sorted(p.name for p in (DATA / "invalid_actions").glob("*.json")) == sorted(INVALID_ACTIONS)


def test_session_and_barge_in_examples() -> None:
    session = load(DATA / "session.seed-e.json")
    assert SessionInfo.model_validate(session).model_dump(exclude_none=True) == session
    config = load(DATA / "barge_in_config.protocol-4.11.json")
    assert BargeInConfig.model_validate(config).model_dump(exclude_none=True) == config
