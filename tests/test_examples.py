"""The examples run: echo over a real server, the support bot's every branch, the demo call."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
from websockets.asyncio.client import connect

from sipgate_ai_flow import Assistant
from tests.helpers import SESSION, event, running_server

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def texts(actions: list[Any]) -> list[str]:
    return [getattr(a, "text", None) or a.type for a in actions]


async def test_echo_over_http_and_websocket() -> None:
    assistant: Assistant = load("echo").assistant
    with running_server(assistant) as address:
        async with httpx.AsyncClient() as client:
            greeting = await client.post(f"http://{address}/webhook", json=event("session_start"))
            echo = await client.post(f"http://{address}/webhook", json=event("user_speak", text="ping"))
        assert greeting.json()["text"].startswith("Hello!")
        assert echo.json() == {"type": "speak", "session_id": SESSION["id"], "text": "You said: ping"}
        async with connect(f"ws://{address}/ws") as ws:
            await ws.send(json.dumps(event("user_speak", text="pong")))
            assert json.loads(await ws.recv())["text"] == "You said: pong"


async def test_support_bot_menu_and_state() -> None:
    bot = load("support_bot")
    assistant: Assistant = bot.assistant
    start = await assistant.handle(event("session_start"))
    assert start[0].barge_in.strategy == "minimum_characters"
    assert start[0].user_input_timeout_seconds == bot.SILENCE_SECONDS
    assert texts(await assistant.handle(event("user_speak", text="I want a person")))[1] == "transfer"
    sms = await assistant.handle(event("user_speak", text="send me a text", barged_in=True))
    assert [a.type for a in sms] == ["send_sms", "speak"]
    failed = await assistant.handle(event("sms_failed", reason="insufficient_balance"))
    assert "could not send" in texts(failed)[0]
    assert texts(await assistant.handle(event("dtmf_received", digit="9")))[0].startswith(
        "Sorry, I did not get"
    )
    assert [a.type for a in await assistant.handle(event("dtmf_received", digit="3"))] == ["speak", "hangup"]
    await assistant.handle(event("assistant_speak", duration_ms=1200))
    await assistant.handle(event("assistant_speech_ended"))
    record = await assistant.store.load(SESSION["id"])
    assert record is not None
    assert record.state["spoken_ms"] == 1200
    assert record.state["interruptions"] == 1
    assert record.state["prompts_played"] == 1
    await assistant.handle(event("session_end"))
    assert await assistant.store.load(SESSION["id"]) is None


async def test_support_bot_hangs_up_after_three_silent_prompts() -> None:
    assistant: Assistant = load("support_bot").assistant
    await assistant.handle(event("session_start"))
    replies = [await assistant.handle(event("user_input_timeout")) for _ in range(3)]
    assert [a.type for a in replies[0]] == ["speak"]
    assert [a.type for a in replies[1]] == ["speak"]
    assert [a.type for a in replies[2]] == ["speak", "hangup"]


async def test_support_bot_without_caller_number_cannot_text() -> None:
    assistant: Assistant = load("support_bot").assistant
    no_number = {**event("dtmf_received", digit="2"), "session": {"id": "anon"}}
    [reply] = await assistant.handle(no_number)
    assert "cannot text you" in reply.text


def test_demo_call_serves_the_bot_and_calls_it(capfd: Any) -> None:
    demo = load("demo_call")
    for transport in ([], ["--http"]):
        assert demo.main(transport) == 0  # stdin is not a terminal here: the scripted call
        out = capfd.readouterr().out
        assert ("/webhook" if transport else "/ws") in out
        for line in [
            'assistant "Welcome to Example Corp.',
            "you press 2",
            "assistant sends an SMS to 4915100000",
            "(silence: user_input_timeout)",
            'you "I need an agent" (interrupting the assistant)',
            "assistant transfers the call to 4921100200",
            "call ended: transferred to 4921100200; no violations",
        ]:
            assert line in out


async def test_the_examples_break_no_rule_of_the_service() -> None:
    from sipgate_ai_flow.testing import Emulator

    for name in ("echo", "support_bot"):
        emulator = Emulator(load(name).assistant, strict=True)
        async with emulator.call() as call:
            await call.say("hello there")
            await call.interrupt("sorry, what?", after_ms=600)
            await call.press("9")
            await call.silence(10)
            await call.say("goodbye")
        assert call.violations == [], name
        assert len(call.said) >= 4, name
