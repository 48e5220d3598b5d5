"""The emulator reports every kind of violation, found in a deliberately broken non-SDK app."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from sipgate_ai_flow.testing import Emulator, StrictModeError, TransportError
from tests.helpers import running_server, wav_b64


def broken_reply(event: dict[str, Any]) -> Any:
    """What the broken app answers: chosen by the caller's words; a speak for every other event."""
    sid = event["session"]["id"]
    kind = event["type"]
    if kind == "session_end":
        return {"type": "speak", "session_id": sid, "text": "answering session_end"}
    if kind != "user_speak":
        return None
    return {
        "missing id": {"type": "speak", "text": "hi"},
        "wrong id": {"type": "speak", "session_id": "someone-else", "text": "hi"},
        "both": {"type": "speak", "session_id": sid, "text": "a", "ssml": "<speak>a</speak>"},
        "bad audio": {"type": "audio", "session_id": sid, "audio": wav_b64(rate=8000)},
        "bad field": {"type": "transfer", "session_id": sid, "target_phone_number": "4921", "timeout": 500},
        "unknown": {"type": "dance", "session_id": sid},
        "after end": [
            {"type": "hangup", "session_id": sid},
            {"type": "speak", "session_id": sid, "text": "x"},
        ],
        "new voice": {
            "type": "speak",
            "session_id": sid,
            "text": "hi",
            "tts": {"provider": "kugelaudio", "voice": "k1"},
            "barge_in": {"strategy": "eventually"},
        },
        "fine": {"type": "speak", "session_id": sid, "text": "all good"},
    }.get(event["text"])


async def webhook(request: Request) -> Response:
    event = await request.json()
    text = event.get("text")
    if text == "slow":
        await asyncio.sleep(0.3)
        return Response(status_code=204)
    if text == "status":
        return PlainTextResponse("boom", status_code=500)
    if text == "not json":
        return PlainTextResponse("oops, not json")
    if text == "empty 200":
        return Response(status_code=200)
    answer = broken_reply(event)
    return Response(status_code=204) if answer is None else JSONResponse(answer)


async def socket(websocket: WebSocket) -> None:
    await websocket.accept()
    try:
        while True:
            event = json.loads(await websocket.receive_text())
            if event.get("text") == "not json":
                await websocket.send_text("oops, not json")
                continue
            answer = broken_reply(event)
            if answer is not None:
                await websocket.send_text(json.dumps(answer))
    except WebSocketDisconnect:
        pass


BROKEN = Starlette(routes=[Route("/webhook", webhook, methods=["POST"]), WebSocketRoute("/ws", socket)])


@pytest.fixture(scope="module")
def address() -> Iterator[str]:
    with running_server(BROKEN) as where:
        yield where


def urls(address: str) -> dict[str, str]:
    return {"http": f"http://{address}/webhook", "ws": f"ws://{address}/ws"}


@pytest.mark.parametrize("transport", ["http", "ws"])
@pytest.mark.parametrize(
    ("words", "kind"),
    [
        ("missing id", "missing_session_id"),
        ("wrong id", "wrong_session_id"),
        ("both", "text_and_ssml"),
        ("bad audio", "bad_audio"),
        ("bad field", "invalid_action"),
        ("unknown", "invalid_action"),
        ("not json", "not_json"),
    ],
)
async def test_each_bad_action_is_reported_with_its_event(
    address: str, transport: str, words: str, kind: str
) -> None:
    async with Emulator(urls(address)[transport], reply_window=0.03).call() as call:
        await call.say(words)
        found = [v for v in call.violations if v.event == "user_speak"]
        assert [v.kind for v in found] == [kind]
        assert call.actions == []  # nothing invalid is carried out


@pytest.mark.parametrize("transport", ["http", "ws"])
async def test_unknown_provider_and_strategy_are_reported_and_still_played(
    address: str, transport: str
) -> None:
    async with Emulator(urls(address)[transport], reply_window=0.03).call() as call:
        await call.say("new voice")
        found = [v for v in call.violations if v.event == "user_speak"]
        assert [v.kind for v in found] == ["unknown_value", "unknown_value"]
        assert "tts.provider: 'kugelaudio' is not a known TTS provider" in found[0].message
        assert "barge_in.strategy: 'eventually' is not a known barge-in strategy" in found[1].message
        assert call.said == ["hi"]  # the models stay open: a newer service may know these


@pytest.mark.parametrize("transport", ["http", "ws"])
async def test_actions_after_the_call_ended(address: str, transport: str) -> None:
    async with Emulator(urls(address)[transport], reply_window=0.03).call() as call:
        await call.say("after end")
    kinds = [(v.kind, v.event) for v in call.violations]
    assert ("action_after_end", None) in kinds
    assert call.end_reason == "assistant_hangup"
    # The broken app answers session_end too, which is its own violation.
    assert ("reply_to_session_end", "session_end") in kinds


@pytest.mark.parametrize(
    ("words", "kind", "detail"),
    [
        ("slow", "slow_reply", "deadline is 100 ms"),
        ("status", "bad_status", "HTTP 500"),
        ("empty 200", "not_json", "empty body"),
    ],
)
async def test_http_answers_that_break_the_rules(address: str, words: str, kind: str, detail: str) -> None:
    async with Emulator(urls(address)["http"], deadline=0.1).call() as call:
        await call.say(words)
        [violation] = [v for v in call.violations if v.event == "user_speak"]
        assert violation.kind == kind
        assert detail in violation.message


async def test_strict_mode_fails_the_call_at_the_first_violation(address: str) -> None:
    call = Emulator(urls(address)["http"], strict=True).call()

    async def conversation() -> None:
        async with call:
            await call.say("fine")
            await call.say("missing id")
            await call.say("fine")  # never reached

    with pytest.raises(StrictModeError, match="missing_session_id") as caught:
        await conversation()
    assert caught.value.violation.kind == "missing_session_id"
    assert call.end_reason == "strict_failure"
    assert call.events[-1]["type"] == "session_end"
    assert [e.get("text") for e in call.events if e["type"] == "user_speak"] == ["fine", "missing id"]


async def test_an_unreachable_webhook_is_a_transport_error() -> None:
    call = Emulator("http://127.0.0.1:9/webhook", timeout=1).call()
    with pytest.raises(TransportError, match=r"cannot reach http://127\.0\.0\.1:9/webhook"):
        await call.start()
    assert call.violations == []


async def test_a_refused_webhook_says_why() -> None:
    from sipgate_ai_flow import Assistant

    with running_server(Assistant(token="right")) as where:
        call = Emulator(f"http://{where}/webhook", token="wrong").call()
        with pytest.raises(TransportError, match=r"HTTP 401 \(wrong or missing token\?\)"):
            await call.start()
        async with Emulator(f"http://{where}/webhook", token="right").call() as ok:
            await ok.say("hello")
        assert ok.violations == []


async def test_a_refused_websocket_says_why() -> None:
    from sipgate_ai_flow import Assistant

    with running_server(Assistant(token="right")) as where:
        call = Emulator(f"ws://{where}/ws", token="wrong").call()
        with pytest.raises(TransportError, match="HTTP 401"):
            await call.start()
        async with Emulator(f"ws://{where}/ws", token="right", reply_window=0.03).call() as ok:
            await ok.say("hello")
        assert ok.violations == []
