"""Outbound calls: the API client against the emulated REST endpoint on 127.0.0.1, errors, retries,
the CLI, and the end-to-end path from a dial to an outbound ``session_start`` at the assistant."""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest

from sipgate_ai_flow import Assistant, Call, SessionStart
from sipgate_ai_flow.client import AiFlowApi
from sipgate_ai_flow.errors import (
    ApiConnectionError,
    AuthenticationError,
    BadRequestError,
    InvalidActionError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    ServerError,
)
from sipgate_ai_flow.testing import EmulatedApi, Emulator
from tests.helpers import AIFLOW, free_port, running_server

NUMBER = "4915790000687"


def greeter() -> Assistant:
    assistant = Assistant()

    @assistant.on_session_start
    async def start(event: SessionStart, call: Call) -> str:
        if event.session.direction == "outbound":
            return f"Hello, this is Example Corp calling {event.session.to_phone_number}."
        return "Welcome to Example Corp."

    return assistant


def api_for(emulated: EmulatedApi, url: str, **options: float) -> AiFlowApi:
    return AiFlowApi(token="api-token", base_url=url, billing_device="e2", backoff=0.01, **options)


@asynccontextmanager
async def served(**options: object) -> AsyncIterator[tuple[EmulatedApi, str]]:
    emulated = EmulatedApi(Emulator(greeter()), **options)  # type: ignore[arg-type]
    async with emulated.serve() as url:
        yield emulated, url


async def test_a_dial_rings_the_assistant_with_an_outbound_session_start() -> None:
    async with served(flows={"flow-1": "4921100000"}) as (emulated, url):
        dialed = await api_for(emulated, url).dial(NUMBER, ai_flow_id="flow-1")
        call = await asyncio.wait_for(emulated.next_call(), 5)
    assert (dialed.status, dialed.ai_flow_id, dialed.to_phone_number) == (201, "flow-1", NUMBER)
    [request] = emulated.received
    assert request.body == {"billingDevice": "e2", "toPhoneNumber": NUMBER}
    assert request.authorization == "Bearer api-token"
    assert call.session.direction == "outbound"
    assert (call.session.to_phone_number, call.session.phone_number) == (NUMBER, "4921100000")
    assert call.events[0]["type"] == "session_start"
    assert call.events[0]["session"]["direction"] == "outbound"
    assert call.said == [f"Hello, this is Example Corp calling {NUMBER}."]


async def test_assistant_dial_uses_its_api_and_defaults() -> None:
    async with served() as (emulated, url):
        assistant = greeter()
        assistant.api = AiFlowApi(token="api-token", base_url=url, ai_flow_id="flow-1", billing_device="e9")
        await assistant.dial("+" + NUMBER)  # D7: the '+' is sent as given
        await asyncio.wait_for(emulated.next_call(), 5)
    assert emulated.received[0].body == {"billingDevice": "e9", "toPhoneNumber": "+" + NUMBER}


async def test_assistant_dial_reads_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    async with served() as (emulated, url):
        for name, value in {
            "AIFLOW_API_TOKEN": "api-token",
            "AIFLOW_API_URL": url,
            "AIFLOW_FLOW_ID": "flow-1",
            "AIFLOW_BILLING_DEVICE": "e2",
        }.items():
            monkeypatch.setenv(name, value)
        assistant = greeter()
        assert assistant.api is None
        await assistant.dial(NUMBER)
        call = await asyncio.wait_for(emulated.next_call(), 5)
    assert call.session.to_phone_number == NUMBER


@pytest.mark.parametrize(
    ("options", "flow", "token", "error", "status", "hint"),
    [
        ({"flows": {"flow-1": None}}, "flow-1", "api-token", BadRequestError, 400, "needs a phone number"),
        ({}, "flow-1", "wrong", AuthenticationError, 401, "API token was refused"),
        ({"outbound_allowed": False}, "flow-1", "api-token", PermissionDeniedError, 403, "approval"),
        ({}, "no-such-flow", "api-token", NotFoundError, 404, "check ai_flow_id"),
    ],
)
async def test_refusals_raise_typed_errors_that_say_what_to_do(  # noqa: PLR0917 - parametrized
    options: dict[str, object], flow: str, token: str, error: type[Exception], status: int, hint: str
) -> None:
    async with served(**options) as (emulated, url):
        api = AiFlowApi(token=token, base_url=url, billing_device="e2", backoff=0.01)
        with pytest.raises(error, match=hint) as caught:
            await api.dial(NUMBER, ai_flow_id=flow)
    assert caught.value.status == status  # type: ignore[attr-defined]
    assert len(emulated.received) == 1  # refusals are final: never sent again
    assert emulated.calls == []


async def test_a_429_is_retried_after_the_wait_the_api_asks_for() -> None:
    async with served() as (emulated, url):
        emulated.fail_next(429, times=2, retry_after="0")
        dialed = await api_for(emulated, url).dial(NUMBER, ai_flow_id="flow-1")
        await asyncio.wait_for(emulated.next_call(), 5)
    assert dialed.status == 201
    assert [r.status for r in emulated.received] == [429, 429, 201]
    assert len(emulated.calls) == 1


async def test_a_429_asking_for_too_long_a_wait_is_raised_with_the_wait() -> None:
    async with served() as (emulated, url):
        emulated.fail_next(429, retry_after="120")
        with pytest.raises(RateLimitError, match="retry after 120 s") as caught:
            await api_for(emulated, url).dial(NUMBER, ai_flow_id="flow-1")
    assert caught.value.retry_after == 120
    assert len(emulated.received) == 1


async def test_429s_beyond_the_retries_are_raised() -> None:
    async with served() as (emulated, url):
        emulated.fail_next(429, times=5)
        with pytest.raises(RateLimitError):
            await api_for(emulated, url, retries=1).dial(NUMBER, ai_flow_id="flow-1")
    assert len(emulated.received) == 2


async def test_a_server_error_is_never_retried_because_the_call_may_be_placed() -> None:
    async with served() as (emulated, url):
        emulated.fail_next(503)
        with pytest.raises(ServerError, match="may or may not have been placed") as caught:
            await api_for(emulated, url).dial(NUMBER, ai_flow_id="flow-1")
    assert caught.value.placed is None
    assert "emulated failure 503" in caught.value.detail
    assert len(emulated.received) == 1


async def test_an_unreachable_api_is_tried_again_then_raised_as_not_placed() -> None:
    api = AiFlowApi(token="t", base_url=f"http://127.0.0.1:{free_port()}", billing_device="e2", backoff=0.01)
    with pytest.raises(ApiConnectionError, match="no call was placed") as caught:
        await api.dial(NUMBER, ai_flow_id="flow-1")
    assert caught.value.placed is False


async def test_a_timeout_after_sending_is_not_retried() -> None:
    connections: list[asyncio.StreamWriter] = []

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(writer)
        await reader.read(65536)  # take the request, never answer

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    api = AiFlowApi(token="t", base_url=f"http://127.0.0.1:{port}", billing_device="e2", timeout=0.3)
    try:
        with pytest.raises(ApiConnectionError, match=r"did not answer within 0\.3 s") as caught:
            await api.dial(NUMBER, ai_flow_id="flow-1")
    finally:
        server.close()
        for writer in connections:
            writer.close()
            await writer.wait_closed()
    assert caught.value.placed is None
    assert len(connections) == 1


async def test_bad_arguments_fail_before_any_request() -> None:
    requests: list[httpx.Request] = []
    transport = httpx.MockTransport(lambda r: requests.append(r) or httpx.Response(201))
    api = AiFlowApi(token="t", base_url="http://api.test", billing_device="e2", transport=transport)
    with pytest.raises(InvalidActionError, match=r"to_phone_number: String should match pattern"):
        await api.dial("call me maybe", ai_flow_id="flow-1")
    with pytest.raises(ValueError, match="needs ai_flow_id"):
        await api.dial(NUMBER)
    with pytest.raises(ValueError, match="needs billing_device"):
        await AiFlowApi(token="t", transport=transport).dial(NUMBER, ai_flow_id="f")
    with pytest.raises(AuthenticationError, match="no API token"):
        await AiFlowApi(token="", billing_device="e2", transport=transport).dial(NUMBER, ai_flow_id="f")
    with pytest.raises(ValueError, match="base_url must start with http"):
        AiFlowApi(token="t", base_url="api.sipgate.com")
    assert requests == []


async def test_injected_transport_sees_the_documented_request() -> None:
    requests: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        return httpx.Response(201, json={"sessionId": "s-1"})

    api = AiFlowApi(token="secret-token", billing_device="e2", transport=httpx.MockTransport(answer))
    dialed = await api.dial(NUMBER, ai_flow_id="e3670012/../x")
    [request] = requests
    # The flow id is one path segment, whatever it holds.
    assert str(request.url) == "https://api.sipgate.com/v3/ai-flows/e3670012%2F..%2Fx/call"
    assert request.method == "POST"
    assert request.headers["authorization"] == "Bearer secret-token"
    assert request.headers["content-type"] == "application/json"
    assert json.loads(request.content) == {"billingDevice": "e2", "toPhoneNumber": NUMBER}
    assert dialed.data == {"sessionId": "s-1"}


async def test_no_token_or_number_in_reprs_or_info_logs(caplog: pytest.LogCaptureFixture) -> None:
    async with served() as (emulated, url):
        api = api_for(emulated, url)
        with caplog.at_level(logging.INFO, "sipgate_ai_flow"):
            await api.dial(NUMBER, ai_flow_id="flow-1")
        await asyncio.wait_for(emulated.next_call(), 5)
    assert "api-token" not in repr(api)
    assert "outbound call accepted" in caplog.text
    assert NUMBER not in caplog.text
    assert "api-token" not in caplog.text


async def test_over_http_the_served_assistant_gets_the_outbound_session_start() -> None:
    with running_server(greeter()) as address:
        emulated = EmulatedApi(Emulator(f"http://{address}/webhook"))
        async with emulated.serve() as url:
            await api_for(emulated, url).dial(NUMBER, ai_flow_id="flow-1")
            call = await asyncio.wait_for(emulated.next_call(), 5)
            await call.say("who is this?")
            await call.hangup()
    assert call.violations == []
    assert call.said[0] == f"Hello, this is Example Corp calling {NUMBER}."


async def aiflow(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        str(AIFLOW),
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={"PATH": "/usr/bin:/bin", "COLUMNS": "200", **(env or {})},
    )
    out, err = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_aiflow_dial_places_a_call_and_reports_refusals() -> None:
    async with served() as (emulated, url):
        env = {"AIFLOW_API_TOKEN": "api-token", "AIFLOW_API_URL": url}
        code, out, _ = await aiflow("dial", NUMBER, "--flow-id", "flow-1", "--billing-device", "e2", env=env)
        assert (code, out.strip()) == (0, f"calling {NUMBER} from flow flow-1 (HTTP 201)")
        call = await asyncio.wait_for(emulated.next_call(), 5)
        assert call.session.direction == "outbound"

        code, _, err = await aiflow("dial", NUMBER, "--flow-id", "nope", "--billing-device", "e2", env=env)
        assert code == 1
        assert "no such AI flow (404)" in err

        code, _, err = await aiflow("dial", "12ab", "--flow-id", "flow-1", "--billing-device", "e2", env=env)
        assert code == 2
        assert "to_phone_number" in err

        code, _, err = await aiflow("dial", NUMBER, env={"AIFLOW_API_URL": url})
        assert code == 2
        assert "missing --flow-id / $AIFLOW_FLOW_ID, --billing-device" in err
        assert "--api-token / $AIFLOW_API_TOKEN" in err
    assert len(emulated.received) == 2
    assert sys.executable  # the console script belongs to this interpreter's environment


async def test_the_emulated_api_refuses_bad_bodies_and_keeps_serving() -> None:
    async with served() as (emulated, url), httpx.AsyncClient(base_url=url) as client:
        auth = {"Authorization": "Bearer api-token"}
        garbage = await client.post("/v3/ai-flows/flow-1/call", content=b"{not json", headers=auth)
        missing = await client.post("/v3/ai-flows/flow-1/call", json={"toPhoneNumber": NUMBER}, headers=auth)
        wrong = await client.post(
            "/v3/ai-flows/flow-1/call", json={"billingDevice": "e2", "toPhoneNumber": "+49 151"}, headers=auth
        )
        assert [r.status_code for r in (garbage, missing, wrong)] == [400, 400, 400]
        assert garbage.json() == {"message": "invalid request body: body"}
        assert missing.json() == {"message": "invalid request body: billingDevice"}
        assert wrong.json() == {"message": "invalid request body: toPhoneNumber"}
        await api_for(emulated, url).dial(NUMBER, ai_flow_id="flow-1")
        await asyncio.wait_for(emulated.next_call(), 5)
    assert [r.status for r in emulated.received] == [400, 400, 400, 201]
    assert len(emulated.calls) == 1
