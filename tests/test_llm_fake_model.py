"""The fake OpenAI-compatible model: rules, streaming and plain answers, errors, the logs."""

from __future__ import annotations

import json
import os
from pathlib import Path

import httpx
import openai
import pytest

from sipgate_ai_flow.testing import FakeModel, FakeModelError


async def test_plain_answers_with_tool_calls_and_the_logs() -> None:
    async with FakeModel(
        [
            {
                "when": "weather",
                "reply": [
                    {
                        "text": "Let me see.",
                        "tool_calls": [{"name": "weather", "arguments": {"city": "Köln"}}],
                    },
                    "Sunny, {tool_result}.",
                ],
            }
        ]
    ) as fake:
        client = openai.AsyncOpenAI(base_url=fake.base_url, api_key="k")
        async with client:
            first = await client.chat.completions.create(
                model="m", messages=[{"role": "user", "content": "the weather?"}]
            )
            message = first.choices[0].message
            assert message.content == "Let me see."
            [call] = message.tool_calls or []
            assert call.function.name == "weather"  # type: ignore[union-attr]
            assert json.loads(call.function.arguments) == {"city": "Köln"}  # type: ignore[union-attr]
            second = await client.chat.completions.create(
                model="m",
                messages=[
                    {"role": "user", "content": "the weather?"},
                    {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},  # type: ignore[list-item]
                    {"role": "tool", "tool_call_id": call.id, "content": "22 degrees"},
                ],
            )
            assert second.choices[0].message.content == "Sunny, 22 degrees."
            other = await client.chat.completions.create(
                model="m", messages=[{"role": "user", "content": "hi"}]
            )
            assert other.choices[0].message.content == "This is the fake model: no rule matched."
    assert [c.result for c in fake.tool_calls] == ["22 degrees"]
    assert fake.tools_called == ["weather"]
    assert fake.unmatched == ["hi"]
    assert len(fake.requests) == 3
    assert fake.request_headers[0]["authorization"] == "Bearer k"


async def test_rules_by_model_times_and_pattern() -> None:
    with FakeModel(default="fallback") as fake:
        fake.add(model="judge", reply="PASS")
        fake.add(matches=r"^order \d+$", times=1, reply={"error": 429, "message": "slow down"})
        fake.add(matches=r"^order \d+$", reply="Order found.")

        async def ask(model: str, text: str) -> httpx.Response:
            async with httpx.AsyncClient() as client:
                body = {"model": model, "messages": [{"role": "user", "content": text}]}
                return await client.post(f"{fake.base_url}/chat/completions", json=body)

        assert (await ask("judge", "x")).json()["choices"][0]["message"]["content"] == "PASS"
        limited = await ask("m", "order 12")
        assert (limited.status_code, limited.json()["error"]["message"]) == (429, "slow down")
        assert (await ask("m", "order 12")).json()["choices"][0]["message"]["content"] == "Order found."
        assert (await ask("m", "order twelve")).json()["choices"][0]["message"]["content"] == "fallback"
        async with httpx.AsyncClient() as client:
            bad = await client.post(f"{fake.base_url}/chat/completions", content=b"{")
        assert bad.status_code == 400


def test_bad_rules_name_the_field(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text("rules:\n  - when: x\n    reply: {error: 200}\n  - matches: '('\n    reply: hi\n")
    with pytest.raises(FakeModelError) as caught:
        FakeModel.from_file(path)
    message = str(caught.value)
    assert str(path) in message
    assert "rules[0].reply[0].error: Input should be greater than or equal to 400" in message
    assert "rules[1].matches: not a regular expression" in message
    with pytest.raises(FakeModelError, match="reply: List should have at least 1 item"):
        FakeModel().add(when="x", reply=[])
    with pytest.raises(RuntimeError, match="not running"):
        _ = FakeModel().base_url


def test_the_pytest_fixture_points_openai_at_the_fake(aiflow_fake_model: FakeModel) -> None:
    assert os.environ["OPENAI_BASE_URL"] == aiflow_fake_model.base_url
    aiflow_fake_model.add(when="ping", reply="pong")
    response = httpx.post(
        f"{aiflow_fake_model.base_url}/chat/completions",
        json={"model": "m", "messages": [{"role": "user", "content": "ping"}], "stream": True},
    )
    assert response.headers["content-type"].startswith("text/event-stream")
    chunks = [json.loads(line[6:]) for line in response.text.splitlines() if line.startswith("data: {")]
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks) == "pong"
    assert response.text.rstrip().endswith("data: [DONE]")
