"""The transport-free core: registration, dispatch, replies, state, ordering (no sockets)."""

from __future__ import annotations

import asyncio
import logging
import re
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from sipgate_ai_flow import (
    Assistant,
    Call,
    DtmfReceived,
    Event,
    HandlerError,
    Hangup,
    InvalidEventError,
    MemoryStore,
    SendSms,
    SessionStart,
    Speak,
    Transfer,
    UnknownEvent,
    UserSpeak,
)
from sipgate_ai_flow.assistant.replies import to_actions
from sipgate_ai_flow.errors import AiFlowError
from sipgate_ai_flow.protocol import SessionInfo, dump_actions
from tests.helpers import SESSION, event

SID = SESSION["id"]


def wire(actions: list[Any]) -> list[dict[str, Any]]:
    return [a.model_dump(exclude_none=True) for a in actions]


# -- registration -------------------------------------------------------------------------------


async def test_keyword_and_decorator_registration_behave_the_same() -> None:
    async def answer(ev: UserSpeak) -> str:
        return f"got {ev.text}"

    by_keyword = Assistant(on_user_speak=answer)
    by_decorator = Assistant()
    assert by_decorator.on_user_speak(answer) is answer
    for assistant in (by_keyword, by_decorator):
        assert wire(await assistant.handle(event("user_speak", text="x"))) == [
            {"type": "speak", "session_id": SID, "text": "got x"}
        ]
        assert assistant.handlers == {"on_user_speak": answer}


@pytest.mark.parametrize(
    ("func", "words"),
    [
        (lambda: None, "takes no arguments"),
        (lambda a, b, c: None, "requires 3 arguments"),
        (lambda ev, *, flag: None, "required keyword-only parameters ['flag']"),
        ("not callable", "must be callable"),
    ],
)
def test_bad_signatures_are_refused_at_registration(func: Any, words: str) -> None:
    with pytest.raises(HandlerError, match=re.escape(words)):
        Assistant(on_user_speak=func)
    with pytest.raises(HandlerError, match=re.escape(words)):
        Assistant().on_dtmf_received(func)


def test_unknown_handler_name_and_double_registration() -> None:
    assistant = Assistant()
    with pytest.raises(HandlerError, match="unknown handler 'on_user_talk'"):
        assistant.add_handler("on_user_talk", lambda ev: None)
    assistant.on_session_start(lambda ev: None)
    with pytest.raises(AiFlowError, match="on_session_start is already registered"):
        assistant.on_session_start(lambda ev: None)


async def test_handlers_get_event_or_event_and_call() -> None:
    seen: list[Any] = []
    assistant = Assistant(
        on_session_start=lambda ev: seen.append(("one", type(ev).__name__)),
        on_user_speak=lambda ev, call: seen.append(("two", type(ev).__name__, type(call).__name__, call.id)),
        on_dtmf_received=lambda *args: seen.append(("var", len(args))),
        on_sms_failed=lambda ev, call=None: seen.append(("default", call is not None)),
    )
    for kind in ["session_start", "user_speak", "dtmf_received", "sms_failed"]:
        await assistant.handle(event(kind))
    assert seen == [
        ("one", "SessionStart"),
        ("two", "UserSpeak", "Call", SID),
        ("var", 2),
        ("default", True),
    ]


async def test_sync_handlers_run_in_a_thread_async_ones_on_the_loop() -> None:
    threads: dict[str, int] = {}

    def sync(ev: Event) -> str:
        threads["sync"] = threading.get_ident()
        return "sync"

    async def not_sync(ev: Event) -> str:
        threads["async"] = threading.get_ident()
        return "async"

    assistant = Assistant(on_user_speak=sync, on_dtmf_received=not_sync)
    await assistant.handle(event("user_speak"))
    await assistant.handle(event("dtmf_received"))
    assert threads["async"] == threading.get_ident()
    assert threads["sync"] != threading.get_ident()


async def test_generators_and_callable_objects() -> None:
    async def agen(ev: Event) -> AsyncIterator[Any]:
        yield "first"
        yield Hangup()

    def gen(ev: Event) -> Iterator[str]:
        yield "a"
        yield "b"

    class Handler:
        async def __call__(self, ev: Event, call: Call) -> str:
            return f"object for {call.id}"

    assistant = Assistant(on_user_speak=agen, on_dtmf_received=gen, on_session_start=Handler())
    assert [a.type for a in await assistant.handle(event("user_speak"))] == ["speak", "hangup"]
    assert [getattr(a, "text", None) for a in await assistant.handle(event("dtmf_received"))] == ["a", "b"]
    assert wire(await assistant.handle(event("session_start")))[0]["text"] == f"object for {SID}"


# -- replies ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        (None, []),
        ("", []),
        ("Hello", [{"type": "speak", "session_id": SID, "text": "Hello"}]),
        (Hangup(), [{"type": "hangup", "session_id": SID}]),
        ({"type": "barge_in"}, [{"type": "barge_in", "session_id": SID}]),
        (
            ["One", None, Speak(ssml="<speak>Two</speak>"), {"type": "hangup", "session_id": SID}],
            [
                {"type": "speak", "session_id": SID, "text": "One"},
                {"type": "speak", "session_id": SID, "ssml": "<speak>Two</speak>"},
                {"type": "hangup", "session_id": SID},
            ],
        ),
        ((Hangup(),), [{"type": "hangup", "session_id": SID}]),
        ([], []),
    ],
)
async def test_every_return_form(reply: Any, expected: list[dict[str, Any]]) -> None:
    assistant = Assistant(on_user_speak=lambda ev: reply)
    assert wire(await assistant.handle(event("user_speak"))) == expected


async def test_explicit_session_id_is_kept_d2() -> None:
    assistant = Assistant(on_user_speak=lambda ev: Speak(text="x", session_id="someone-else"))
    assert wire(await assistant.handle(event("user_speak")))[0]["session_id"] == "someone-else"


async def test_transfer_caller_id_defaults_to_the_flow_number_d3() -> None:
    assistant = Assistant(
        on_dtmf_received=lambda ev: Transfer(transfer_to="4921100200"),
        on_user_speak=lambda ev: Transfer(
            target_phone_number="4921100200", caller_id_name="Sales", caller_id_number="4930000000"
        ),
    )
    [filled] = wire(await assistant.handle(event("dtmf_received")))
    assert filled["caller_id_number"] == SESSION["phone_number"]
    assert filled["caller_id_name"] == SESSION["phone_number"]
    [kept] = wire(await assistant.handle(event("user_speak")))
    assert (kept["caller_id_name"], kept["caller_id_number"]) == ("Sales", "4930000000")


@pytest.mark.parametrize(
    "bad",
    [42, [["nested"]], {"type": "speak"}, {"type": "fly"}, object()],
    ids=["int", "nested-list", "invalid-dict", "unknown-type", "object"],
)
async def test_unusable_replies_get_the_fallback_and_are_logged(
    bad: Any, caplog: pytest.LogCaptureFixture
) -> None:
    assistant = Assistant(on_user_speak=lambda ev: bad)
    with caplog.at_level(logging.ERROR, "sipgate_ai_flow"):
        actions = await assistant.handle(event("user_speak"))
    assert wire(actions) == [{"type": "speak", "session_id": SID, "text": assistant.fallback}]
    assert SID in caplog.text
    assert "on_user_speak handler failed" in caplog.text


async def test_exceptions_get_the_configured_fallback(caplog: pytest.LogCaptureFixture) -> None:
    def broken(ev: Event) -> None:
        raise RuntimeError("database down")

    custom = Assistant(on_user_speak=broken, fallback=["One moment.", Hangup()])
    silent = Assistant(on_user_speak=broken, fallback=None)
    with caplog.at_level(logging.ERROR, "sipgate_ai_flow"):
        assert [a.type for a in await custom.handle(event("user_speak"))] == ["speak", "hangup"]
        assert await silent.handle(event("user_speak")) == []
    assert "database down" in caplog.text  # the traceback is logged


def test_an_invalid_fallback_fails_at_construction() -> None:
    with pytest.raises(TypeError):
        Assistant(fallback=3.5)  # type: ignore[arg-type]


@pytest.mark.parametrize(("reply", "words"), [(7, "is an int;"), ([b"x"], "item 0 of the reply is a bytes;")])
def test_a_bad_reply_is_named_with_its_article(reply: object, words: str) -> None:
    with pytest.raises(TypeError, match=re.escape(words)):
        to_actions(reply, SessionInfo.model_validate(SESSION))


# -- routing ------------------------------------------------------------------------------------


async def test_barge_in_goes_to_its_handler_else_to_user_speak_d13() -> None:
    calls: list[str] = []
    both = Assistant(
        on_user_speak=lambda ev: calls.append("speak"), on_user_barge_in=lambda ev: calls.append("barge")
    )
    await both.handle(event("user_speak", barged_in=True))
    await both.handle(event("user_speak", barged_in=False))
    only_speak = Assistant(on_user_speak=lambda ev: calls.append("speak-only"))
    await only_speak.handle(event("user_speak", barged_in=True))
    assert calls == ["barge", "speak", "speak-only"]


async def test_catch_all_gets_unknown_and_unhandled_events_only() -> None:
    caught: list[str] = []
    assistant = Assistant(
        on_user_speak=lambda ev: None,
        on_event=lambda ev: caught.append(ev.type) or f"caught {ev.type}",
    )
    await assistant.handle(event("user_speak"))
    reply = await assistant.handle(event("recording_ready"))
    await assistant.handle(event("dtmf_received"))
    await assistant.handle(event("user_barge_in"))  # an unknown type must not reach on_user_barge_in
    assert caught == ["recording_ready", "dtmf_received", "user_barge_in"]
    assert wire(reply)[0]["text"] == "caught recording_ready"


async def test_unknown_events_without_catch_all_answer_nothing() -> None:
    assert await Assistant().handle(event("recording_ready")) == []


async def test_on_event_receives_the_unknown_event_model() -> None:
    got: list[Any] = []
    assistant = Assistant(on_event=got.append)
    await assistant.handle(event("brand_new", extra_field=1))
    assert isinstance(got[0], UnknownEvent)
    assert got[0].raw["extra_field"] == 1


async def test_user_speech_started_replies_are_dropped_with_one_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    assistant = Assistant(on_user_speech_started=lambda ev: "ignored")
    with caplog.at_level(logging.WARNING, "sipgate_ai_flow"):
        assert await assistant.handle(event("user_speech_started")) == []
        assert await assistant.handle(event("user_speech_started")) == []
    assert caplog.text.count("user_speech_started handler returned actions") == 1


# -- call state ---------------------------------------------------------------------------------


async def test_state_lives_from_start_to_end() -> None:
    def remember(ev: UserSpeak, call: Call) -> str:
        call.state.setdefault("heard", []).append(ev.text)
        return ", ".join(call.state["heard"])

    store = MemoryStore()
    assistant = Assistant(on_user_speak=remember, store=store)
    await assistant.handle(event("session_start"))
    await assistant.handle(event("user_speak", text="one"))
    reply = await assistant.handle(event("user_speak", text="two"))
    other = await assistant.handle(event("user_speak", "other-call", text="three"))
    assert wire(reply)[0]["text"] == "one, two"
    assert wire(other)[0]["text"] == "three"
    assert await assistant.handle(event("session_end")) == []
    assert await store.load(SID) is None
    assert await store.load("other-call") is not None
    again = await assistant.handle(event("user_speak", text="fresh"))
    assert wire(again)[0]["text"] == "fresh"


async def test_session_end_cleans_up_even_when_the_handler_raises(caplog: pytest.LogCaptureFixture) -> None:
    def boom(ev: Event) -> None:
        raise ValueError("cleanup bug")

    store = MemoryStore()
    assistant = Assistant(
        on_session_end=boom, on_session_start=lambda ev, call: call.state.update(a=1), store=store
    )
    await assistant.handle(event("session_start"))
    assert await store.load(SID) is not None
    with caplog.at_level(logging.ERROR, "sipgate_ai_flow"):
        assert await assistant.handle(event("session_end")) == []
    assert await store.load(SID) is None
    assert "cleanup bug" in caplog.text


async def test_session_end_replies_are_ignored_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    assistant = Assistant(on_session_end=lambda ev: "bye")
    with caplog.at_level(logging.WARNING, "sipgate_ai_flow"):
        assert await assistant.handle(event("session_end")) == []
    assert "no action may follow session_end" in caplog.text


async def test_repeated_session_start_is_a_return_and_keeps_state_d15() -> None:
    seen: list[tuple[bool, Any]] = []

    def start(ev: SessionStart, call: Call) -> None:
        seen.append((call.is_return, call.state.get("tries")))
        call.state["tries"] = call.state.get("tries", 0) + 1

    assistant = Assistant(on_session_start=start)
    await assistant.handle(event("session_start"))
    await assistant.handle(event("dtmf_received"))
    await assistant.handle(event("session_start"))
    assert seen == [(False, None), (True, 1)]


async def test_memory_store_expires_abandoned_calls(monkeypatch: pytest.MonkeyPatch) -> None:
    from sipgate_ai_flow.state import memory

    now = [1000.0]
    monkeypatch.setattr(memory.time, "monotonic", lambda: now[0])
    store = MemoryStore(ttl=60)
    assistant = Assistant(on_session_start=lambda ev, call: call.state.update(x=1), store=store)
    await assistant.handle(event("session_start", "abandoned"))
    now[0] += 30
    assert await store.load("abandoned") is not None
    now[0] += 61
    assert await store.load("abandoned") is None
    assert len(store) == 0
    with pytest.raises(ValueError, match="ttl must be positive"):
        MemoryStore(ttl=0)


# -- entry point and ordering -------------------------------------------------------------------


async def test_handle_accepts_models_text_bytes_and_dicts() -> None:
    assistant = Assistant(on_user_speak=lambda ev: ev.text)
    document = event("user_speak", text="same")
    import json

    for form in (
        document,
        json.dumps(document),
        json.dumps(document).encode(),
        UserSpeak.model_validate(document),
    ):
        assert wire(await assistant.handle(form))[0]["text"] == "same"
    with pytest.raises(InvalidEventError, match=r"session\.id"):
        await assistant.handle({"type": "user_speak", "text": "x", "session": {}})


async def test_events_of_one_call_run_in_order_and_calls_run_concurrently() -> None:
    log: list[str] = []
    b_started = asyncio.Event()

    async def press(ev: DtmfReceived, call: Call) -> str:
        log.append(f"start {call.id} {ev.digit}")
        if ev.digit == "1":
            # Only finishes if call B runs while this handler of call A is waiting.
            await asyncio.wait_for(b_started.wait(), timeout=5)
        if call.id == "B":
            b_started.set()
        log.append(f"end {call.id} {ev.digit}")
        return f"key {ev.digit}"

    assistant = Assistant(on_dtmf_received=press)
    results = await asyncio.gather(
        assistant.handle(event("dtmf_received", "A", digit="1")),
        assistant.handle(event("dtmf_received", "A", digit="2")),
        assistant.handle(event("dtmf_received", "B", digit="3")),
    )
    assert [wire(r)[0]["text"] for r in results] == ["key 1", "key 2", "key 3"]
    assert log.index("end A 1") < log.index("start A 2")
    assert log.index("start B 3") < log.index("end A 1")
    assert len(assistant.store) == 2  # type: ignore[arg-type]
    assert assistant.store._turnstiles == {}  # type: ignore[attr-defined]  # nothing left behind


async def test_replies_encode_for_the_wire() -> None:
    assistant = Assistant(
        on_user_speak=lambda ev: [SendSms(phone_number="+4915112345678", message="hi"), "bye"]
    )
    encoded = dump_actions(await assistant.handle(event("user_speak")))
    assert encoded is not None
    assert encoded.startswith(b"[")


def test_a_str_reply_builds_the_same_speak_as_validation() -> None:
    # The str reply takes a shortcut past pydantic (it is the hot path); it must not differ.
    session = SessionInfo.model_validate(SESSION)
    first, second = to_actions(["Hallo Welt.", "Again."], session)
    validated = Speak(session_id=session.id, text="Hallo Welt.")
    assert first == validated
    assert first.model_fields_set == validated.model_fields_set
    assert first.model_dump() == validated.model_dump()
    assert first.model_dump_json(exclude_unset=True) == validated.model_dump_json(exclude_unset=True)
    assert dump_actions([first]) == dump_actions([validated])
    assert second == Speak(session_id=session.id, text="Again.")
    assert first.__dict__ is not second.__dict__
    assert first.model_fields_set is not second.model_fields_set
