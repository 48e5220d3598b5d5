"""The appointment example passes its scenario suite over HTTP and WebSocket, and its call-back
goes through the outbound-call API (emulated on 127.0.0.1) back to the served example."""

from __future__ import annotations

import asyncio

import pytest

from sipgate_ai_flow.client import AiFlowApi
from sipgate_ai_flow.testing import EmulatedApi, Emulator, load_scenarios, run_scenarios
from tests.helpers import running_server
from tests.test_examples import EXAMPLES, load

SCENARIOS = EXAMPLES / "scenarios" / "appointments.yaml"


@pytest.mark.parametrize("path", ["webhook", "ws"])
async def test_the_scenarios_pass_and_the_call_back_rings_back(path: str) -> None:
    example = load("appointments")  # a fresh calendar for each transport
    with running_server(example.assistant) as address:
        scheme = "http" if path == "webhook" else "ws"
        emulator = Emulator(f"{scheme}://{address}/{path}", strict=True)
        api = EmulatedApi(emulator, flows={"flow-1": "4921100000"})
        async with api.serve() as url:
            example.assistant.api = AiFlowApi(
                token="api-token", base_url=url, ai_flow_id="flow-1", billing_device="e2"
            )
            results = await run_scenarios(load_scenarios([SCENARIOS]), emulator)
            failures = {r.scenario.name: r.failures for r in results if not r.passed}
            assert failures == {}
            assert len(results) == 9

            # The call-back scenario's caller pressed *; once that call ended, the example dialled.
            callback = await asyncio.wait_for(api.next_call(), 10)
            [dial] = api.received
            assert dial.body == {"billingDevice": "e2", "toPhoneNumber": "4915100000"}
            assert callback.session.direction == "outbound"
            assert "calling you back, as you asked" in callback.said[0]
            await callback.press("2012")
            assert "first free time on 20.12. is 09:00" in callback.last_said
            await callback.press("1")
            await callback.listen()
    assert callback.sms[0].phone_number == "4915100000"
    assert "20.12. at 09:00 is booked" in callback.sms[0].message
    assert callback.end_reason == "assistant_hangup"
    assert callback.violations == []


async def test_a_failed_call_back_is_logged_without_the_number(caplog: pytest.LogCaptureFixture) -> None:
    example = load("appointments")
    emulator = Emulator(example.assistant, strict=True)
    api = EmulatedApi(emulator, flows={"flow-1": None})  # a flow without a number: 400
    async with api.serve() as url:
        example.assistant.api = AiFlowApi(
            token="api-token", base_url=url, ai_flow_id="flow-1", billing_device="e2"
        )
        async with emulator.call() as call:
            await call.press("*")
            await call.listen()
    assert call.end_reason == "assistant_hangup"
    assert [r.status for r in api.received] == [400]
    assert "the call-back for call" in caplog.text
    assert "needs a phone number" in caplog.text
    assert "4915100000" not in caplog.text


def test_aiflow_call_shows_ssml_as_its_words_and_hides_silence() -> None:
    import subprocess

    from tests.helpers import AIFLOW, ROOT

    result = subprocess.run(
        [str(AIFLOW), "call", "examples/appointments.py:assistant"],
        input="2411\n/press 1\n",
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert 'assistant "Welcome to Dr. Example\'s practice."' in result.stdout
    assert "You are booked for 24.11. at 09:00" in result.stdout
    assert "<" not in result.stdout  # no tags, and no empty lines for the silent waits
    assert '""' not in result.stdout
