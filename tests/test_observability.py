"""OpenTelemetry traces and turn-latency metrics, end to end: ``aiflow serve --otel`` as a real
process (one worker, and two workers on a real Redis) sends its spans over OTLP/HTTP to a real
receiver started here; concurrent calls over the webhook and the WebSocket must each get a trace
of their own, with their turns, holds, late answers, LLM requests and tool calls in place."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from sipgate_ai_flow import Assistant, Call, UserSpeak
from sipgate_ai_flow.otel import call_ids, configured_by_env
from sipgate_ai_flow.server.app import create_app
from sipgate_ai_flow.testing import Emulator, FakeModel
from sipgate_ai_flow.testing.transports import HttpTransport, Transport
from tests.helpers import AIFLOW, ROOT, SESSION, aiflow_serve, free_port, running_server
from tests.otlp import ReceivedSpan, Receiver, otlp_receiver, render
from tests.test_production import metric

TARGET = "tests/traced_bot.py:assistant"
CALLER = "4915111122233"
DOCS = ROOT / "docs" / "observability.md"
TREE = re.compile(r"(<!-- trace: begin -->\n```text\n)(.*?)(\n```\n<!-- trace: end -->)", re.S)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with otlp_receiver() as running:
        yield running


def otel_env(receiver: Receiver, **more: str) -> dict[str, str]:
    """What points a served process at the receiver, with spans sent within 50 ms."""
    return {
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
        "OTEL_BSP_SCHEDULE_DELAY": "50",
        "OTEL_SERVICE_NAME": "traced-bot",
        **more,
    }


def trace_of(spans: list[ReceivedSpan], session_id: str) -> list[ReceivedSpan]:
    trace_id = f"{call_ids(session_id)[0]:032x}"
    return [span for span in spans if span.trace_id == trace_id]


def calls_done(session_ids: list[str]) -> object:
    def done(spans: list[ReceivedSpan]) -> bool:
        ended = {span.attributes.get("aiflow.session.id") for span in spans if span.name == "call"}
        return set(session_ids) <= ended

    return done


def check_trace(spans: list[ReceivedSpan], session_id: str) -> list[ReceivedSpan]:
    """The call's trace is whole and its own: one call span with the derived ids, every turn
    span under it, every other span under a turn; no span of the call outside the trace."""
    trace_id, call_span = (f"{n:0{w}x}" for n, w in zip(call_ids(session_id), (32, 16), strict=True))
    mine = trace_of(spans, session_id)
    assert [
        s for s in spans if s.attributes.get("aiflow.session.id") == session_id and s.trace_id != trace_id
    ] == []
    [call] = [s for s in mine if s.name == "call"]
    assert call.span_id == call_span
    assert call.parent_id == ""
    turns = [s for s in mine if s.name.startswith("turn ")]
    assert turns
    assert {s.parent_id for s in turns} == {call_span}
    assert {s.attributes["aiflow.session.id"] for s in turns} == {session_id}
    turn_ids = {s.span_id for s in turns}
    handlers = [s for s in mine if s.name.startswith("handler ")]
    assert {s.parent_id for s in handlers} <= turn_ids
    assert call.start_ns <= min(s.start_ns for s in turns)
    assert call.end_ns >= max(s.end_ns for s in turns)
    return mine


def turn(spans: list[ReceivedSpan], kind: str, nth: int = 0) -> ReceivedSpan:
    found = sorted((s for s in spans if s.name == f"turn {kind}"), key=lambda s: s.start_ns)
    return found[nth]


async def talk(emulator: Emulator, session_id: str, lines: list[str]) -> list[str]:
    async with emulator.call(session_id=session_id, from_number=CALLER) as call:
        for line in lines:
            await call.say(line)
            if line == "slow":
                await asyncio.sleep(0.8)  # real time: the answer comes after 0.6 s
            await call.listen(1.0)
        await call.listen(1.0)
        return call.said


async def test_concurrent_calls_over_http_and_websocket_each_get_their_own_trace(
    receiver: Receiver, tmp_path: Path
) -> None:
    env = otel_env(receiver)
    with aiflow_serve(TARGET, "--otel", log=tmp_path / "serve.log", env=env) as (address, _):
        http = Emulator(f"http://{address}/webhook")
        ws = Emulator(f"ws://{address}/ws")
        scripts = {
            f"http-{n}": (http, ["hello", "slow", "crash", "stream"] if n == 0 else ["hello", f"I am {n}"])
            for n in range(4)
        } | {
            f"ws-{n}": (ws, ["hello", "slow", "crash", "stream"] if n == 0 else ["hello", f"I am {n}"])
            for n in range(4)
        }
        heard = await asyncio.gather(*(talk(em, sid, lines) for sid, (em, lines) in scripts.items()))
        spans = receiver.wait_for(calls_done(list(scripts)))
    for (sid, (_, lines)), said in zip(scripts.items(), heard, strict=True):
        assert said[0] == "Hello."
        mine = check_trace(spans, sid)
        assert len([s for s in mine if s.name == "turn user_speak"]) == len(lines)
    # The slow turn, on each transport: the hold went first, the answer came late.
    for sid in ("http-0", "ws-0"):
        mine = trace_of(spans, sid)
        slow = turn(mine, "user_speak", 1)
        assert slow.attributes["aiflow.turn.outcome"] == "late", render(mine)
        assert slow.attributes["aiflow.turn.holds"] == 1
        assert slow.events[0] == "budget exceeded"
        assert "hold" in slow.events
        assert slow.attributes["aiflow.turn.first_action_ms"] < 600  # the hold, before the answer
        if sid.startswith("ws"):
            assert slow.events.index("hold") < slow.events.index("answer")
            assert slow.attributes["aiflow.turn.answer_ms"] >= 600  # the handler slept 0.6 s
        else:
            # Over the webhook the answer waits for the service's next request, whose reply carries it.
            assert "answer queued for the next reply" in slow.events
            assert any("late answer delivered" in s.events for s in mine if s.start_ns > slow.start_ns)
        crash = turn(mine, "user_speak", 2)
        assert crash.attributes["aiflow.turn.outcome"] == "failed"
        assert crash.status == 2  # STATUS_CODE_ERROR
        stream = turn(mine, "user_speak", 3)
        assert stream.attributes["aiflow.turn.outcome"] == "answered"
        assert turn(mine, "session_start").attributes["aiflow.turn.outcome"] == "answered"
    # Nothing the caller said and no phone number is in any span, unless asked for (below).
    for span in spans:
        for value in span.strings():
            assert CALLER not in value
            assert SESSION["to_phone_number"] not in value
            assert "I am" not in value
            assert "hello" not in value
    if os.environ.get("AIFLOW_DOCS") == "1":
        DOCS.write_text(
            TREE.sub(lambda m: m.group(1) + render(trace_of(spans, "ws-0")) + m.group(3), DOCS.read_text())
        )
    assert _shape(render(trace_of(spans, "ws-0"))) == _shape(TREE.search(DOCS.read_text()).group(2))  # type: ignore[union-attr]


def _shape(tree: str) -> list[str]:
    # The rendered trace's spans and outcomes: timings and the events around them vary a little.
    shape = []
    for line in tree.splitlines():
        outcome = re.search(r"outcome=\w+", line)
        shape.append(line.split("  [")[0] + (f" {outcome.group(0)}" if outcome else ""))
    return shape


async def test_content_is_recorded_only_when_asked_for(receiver: Receiver, tmp_path: Path) -> None:
    env = otel_env(receiver)
    with aiflow_serve(TARGET, "--otel", "--otel-content", log=tmp_path / "serve.log", env=env) as (
        address,
        _,
    ):
        await talk(Emulator(f"http://{address}/webhook"), "content", ["I am the caller"])
        spans = receiver.wait_for(calls_done(["content"]))
    mine = check_trace(spans, "content")
    said = turn(mine, "user_speak")
    assert said.attributes["aiflow.user.text"] == "I am the caller"
    assert said.attributes["aiflow.call.from"] == CALLER


class FreshConnections(HttpTransport):
    """Each event on a new connection: the workers of one ``aiflow serve --workers 2`` take
    turns at accepting, so one call's events spread over both."""

    def __init__(self, url: str) -> None:
        super().__init__(url, None, timeout=10)
        self.headers["Connection"] = "close"


class Spread(Emulator):
    def transport(self) -> Transport:
        assert isinstance(self.target, str)
        return FreshConnections(self.target)


async def test_two_redis_workers_put_one_calls_turns_into_one_trace(
    receiver: Receiver, redis_url: str, tmp_path: Path
) -> None:
    env = otel_env(receiver)
    port = free_port()
    args = ["--otel", "--workers", "2", "--redis", redis_url, "--metrics-port", str(port)]
    sessions = [f"worker-call-{n}" for n in range(6)]
    with aiflow_serve(TARGET, *args, log=tmp_path / "serve.log", env=env) as (address, _):
        emulator = Spread(f"http://{address}/webhook")
        lines = ["one", "two", "three", "four", "slow"]
        await asyncio.gather(*(talk(emulator, sid, lines) for sid in sessions))
        spans = receiver.wait_for(calls_done(sessions))
        async with httpx.AsyncClient() as client:
            page = (await client.get(f"http://127.0.0.1:{port}/metrics")).text
            assert (await client.get(f"http://{address}/metrics")).status_code == 404
    pids: set[object] = set()
    for sid in sessions:
        mine = check_trace(spans, sid)
        assert len([s for s in mine if s.name == "turn user_speak"]) == len(lines)
        assert turn(mine, "user_speak", 4).attributes["aiflow.turn.outcome"] == "late"
        pids |= {s.resource.get("process.pid") for s in mine}
    assert len(pids) == 2  # both workers made spans of these calls, all in the calls' own traces
    # The metrics port sums both workers' numbers.
    assert metric(page, "aiflow_turns_total", 'outcome="late",type="user_speak"') == len(sessions)
    assert metric(page, "aiflow_turn_first_action_seconds_count", 'type="user_speak"') == len(sessions) * len(
        lines
    )


async def test_llm_requests_and_tool_calls_nest_under_their_turn(receiver: Receiver, tmp_path: Path) -> None:
    with FakeModel() as fake:
        tool_call = {"tool_calls": [{"name": "opening_hours", "arguments": {"day": "monday"}}]}
        fake.add(when="hours", reply=[tool_call, "We are open from nine to five."])
        env = otel_env(receiver, OPENAI_BASE_URL=fake.base_url)
        target = "tests/traced_bot.py:agent"
        # No --otel: OTEL_EXPORTER_OTLP_ENDPOINT alone turns tracing on.
        with aiflow_serve(target, log=tmp_path / "serve.log", env=env) as (address, _):
            said = await talk(Emulator(f"ws://{address}/ws"), "llm-call", ["What are your hours on monday?"])
            spans = receiver.wait_for(calls_done(["llm-call"]))
    assert "We are open from nine to five." in said
    mine = check_trace(spans, "llm-call")
    asked = turn(mine, "user_speak")
    [handler] = [s for s in mine if s.parent_id == asked.span_id and s.name.startswith("handler")]
    below = [s for s in mine if s.parent_id == handler.span_id]
    chats = [s for s in below if s.name == "chat fake"]
    [tool] = [s for s in below if s.name == "execute_tool opening_hours"]
    assert len(chats) == 2  # the tool call, then the answer
    assert chats[0].start_ns < tool.start_ns < chats[1].start_ns
    assert chats[0].attributes["gen_ai.request.model"] == "fake"
    assert chats[0].attributes["gen_ai.operation.name"] == "chat"
    assert chats[1].attributes["gen_ai.response.time_to_first_chunk"] > 0
    assert chats[1].attributes["gen_ai.usage.output_tokens"] > 0
    assert tool.attributes["gen_ai.tool.name"] == "opening_hours"
    assert "gen_ai.tool.call.arguments" not in tool.attributes  # content is off
    assert asked.attributes["aiflow.turn.outcome"] == "answered"


# -- metrics -----------------------------------------------------------------------------------------


async def test_turn_latency_histograms_and_outcomes_move() -> None:
    async def speak(ev: UserSpeak, call: Call) -> str:
        if ev.text == "slow":
            await asyncio.sleep(0.4)
        return "ok"

    assistant = Assistant(budget=0.2, on_user_speak=speak)
    with running_server(assistant) as address:
        async with httpx.AsyncClient(base_url=f"http://{address}") as client:
            async with Emulator(f"ws://{address}/ws").call() as call:
                await call.say("fast")
                await call.say("slow")
                await asyncio.sleep(0.5)  # real time: the answer comes after 0.4 s
                await call.listen(1.0)
            page = (await client.get("/metrics")).text
    user = 'type="user_speak"'
    assert metric(page, "aiflow_turn_first_action_seconds_count", user) == 2
    assert metric(page, "aiflow_turn_answer_seconds_count", user) == 2
    assert (
        metric(page, "aiflow_turn_first_action_seconds_bucket", 'le="0.3",' + user) == 2
    )  # fast, and the hold
    assert (
        metric(page, "aiflow_turn_answer_seconds_bucket", 'le="0.3",' + user) == 1
    )  # the slow answer is not
    assert metric(page, "aiflow_turns_total", 'outcome="answered",type="user_speak"') == 1
    assert metric(page, "aiflow_turns_total", 'outcome="late",type="user_speak"') == 1
    assert metric(page, "aiflow_turns_total", 'outcome="answered",type="session_start"') == 0  # no greeting
    assert metric(page, "aiflow_turns_total", 'outcome="silent",type="session_start"') == 1


async def test_a_turn_given_up_on_counts_as_held() -> None:
    async def speak(ev: UserSpeak) -> str:
        await asyncio.sleep(0.5)
        return "too late"

    assistant = Assistant(budget=0.2, max_holds=0, on_user_speak=speak)
    with running_server(assistant) as address:
        async with httpx.AsyncClient(base_url=f"http://{address}") as client:
            async with Emulator(f"ws://{address}/ws").call() as call:
                await call.say("hi")
                await asyncio.sleep(0.6)
                await call.listen(0.5)
                assert "too late" not in call.said
            page = (await client.get("/metrics")).text
    assert metric(page, "aiflow_give_ups_total") == 1
    assert metric(page, "aiflow_turns_total", 'outcome="held",type="user_speak"') == 1


async def test_webhook_late_answers_are_counted_when_delivered() -> None:
    async def speak(ev: UserSpeak) -> str:
        await asyncio.sleep(0.4)
        return "late"

    assistant = Assistant(budget=0.2, on_user_speak=speak)
    with running_server(assistant) as address:
        async with httpx.AsyncClient(base_url=f"http://{address}") as client:
            async with Emulator(f"http://{address}/webhook").call() as call:
                await call.say("hi")
                await call.listen()
                assert call.said[-1] == "late"
            page = (await client.get("/metrics")).text
    assert metric(page, "aiflow_late_deliveries_total") == 1
    assert metric(page, "aiflow_turns_total", 'outcome="late",type="user_speak"') == 1


async def test_metrics_can_require_the_token() -> None:
    app = create_app(Assistant(), token="s3cret", metrics_token=True)
    with running_server(app) as address:
        async with httpx.AsyncClient(base_url=f"http://{address}") as client:
            refused = await client.get("/metrics")
            wrong = await client.get("/metrics", headers={"Authorization": "Bearer nope"})
            bearer = await client.get("/metrics", headers={"Authorization": "Bearer s3cret"})
            header = await client.get("/metrics", headers={"X-API-TOKEN": "s3cret"})
    assert (refused.status_code, wrong.status_code) == (401, 401)
    assert (bearer.status_code, header.status_code) == (200, 200)
    assert "aiflow_events_total" in bearer.text
    with pytest.raises(ValueError, match="needs a token"):
        create_app(Assistant(), metrics_token=True)


async def test_metrics_can_have_a_port_of_their_own() -> None:
    port = free_port()
    app = create_app(Assistant(on_user_speak=lambda ev: "ok"), metrics_port=port)
    with running_server(app, lifespan="on") as address:
        async with httpx.AsyncClient() as client:
            async with Emulator(f"http://{address}/webhook").call() as call:
                await call.say("hi")
            page = (await client.get(f"http://127.0.0.1:{port}/metrics")).text
            assert (await client.get(f"http://{address}/metrics")).status_code == 404
    assert metric(page, "aiflow_turns_total", 'outcome="answered",type="user_speak"') == 1
    async with httpx.AsyncClient() as client:
        with pytest.raises(httpx.ConnectError):
            await client.get(f"http://127.0.0.1:{port}/metrics")  # stopped with the app


def test_serve_checks_the_metrics_options_before_starting() -> None:
    def serve(*args: str) -> subprocess.CompletedProcess[str]:
        command = [str(AIFLOW), "serve", "examples/echo.py:assistant", *args]
        env = {**os.environ, "AIFLOW_TOKEN": ""}
        return subprocess.run(
            command, cwd=ROOT, capture_output=True, text=True, env=env, timeout=60, check=False
        )

    no_token = serve("--metrics-token")
    assert no_token.returncode == 2
    assert "--metrics-token needs a token" in no_token.stderr
    both = serve("--token", "s3cret", "--metrics-token", "--metrics-port", "9999")
    assert both.returncode == 2
    assert "not with --metrics-port" in both.stderr


def test_otel_is_off_unless_the_environment_asks() -> None:
    assert not configured_by_env({})
    assert configured_by_env({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"})
    assert configured_by_env({"OTEL_TRACES_EXPORTER": "otlp"})
    assert not configured_by_env({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "x"})
    assert not configured_by_env({"OTEL_SDK_DISABLED": "true", "OTEL_EXPORTER_OTLP_ENDPOINT": "x"})
