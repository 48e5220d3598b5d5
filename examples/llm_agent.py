"""A streaming voice agent over any OpenAI-compatible chat API.

Settings come from the environment: ``OPENAI_BASE_URL`` (default ``https://api.openai.com/v1``),
``OPENAI_API_KEY``, ``OPENAI_MODEL`` (default ``gpt-4o-mini``) and ``AIFLOW_TOKEN``.

    aiflow serve examples/llm_agent.py:assistant

The model's tokens are spoken sentence by sentence as they arrive. When the model is slow to
start, the caller hears "One moment, please." first. If the caller speaks while an answer is
still streaming, the rest of it is dropped and the new question answered. The conversation
lives in ``call.state``, so it works with several workers and Redis too.
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator

import httpx

from sipgate_ai_flow import Assistant, Call, SessionStart, Speak, UserSpeak, sentences

SYSTEM = (
    "You are the friendly phone assistant of Example Corp. You are heard, not read: answer in "
    "short spoken sentences, without lists, markdown or emoji."
)
GREETING = "Hello, this is Example Corp. How can I help you?"

assistant = Assistant(token=os.environ.get("AIFLOW_TOKEN"))


@assistant.on_session_start
async def greet(event: SessionStart, call: Call) -> str:
    if not call.is_return:
        call.state["messages"] = [
            {"role": "system", "content": SYSTEM},
            {"role": "assistant", "content": GREETING},
        ]
    return GREETING


@assistant.on_user_speak
async def answer(event: UserSpeak, call: Call) -> AsyncIterator[Speak]:
    messages: list[dict[str, str]] = call.state.setdefault(
        "messages", [{"role": "system", "content": SYSTEM}]
    )
    messages.append({"role": "user", "content": event.text})
    said: list[str] = []
    try:
        async for sentence in sentences(tokens(messages)):
            said.append(sentence.text or "")
            yield sentence
    finally:
        # Remember what the caller got to hear, also when they cut the answer short.
        messages.append({"role": "assistant", "content": " ".join(said)})


async def tokens(messages: list[dict[str, str]]) -> AsyncIterator[str]:
    """The model's answer to ``messages``, token by token (OpenAI chat completions, streamed)."""
    base_url = os.environ.get("OPENAI_BASE_URL", "https://api.openai.com/v1").rstrip("/")
    headers = {"Authorization": f"Bearer {os.environ.get('OPENAI_API_KEY', '')}"}
    request = {"model": os.environ.get("OPENAI_MODEL", "gpt-4o-mini"), "messages": messages, "stream": True}
    async with (
        httpx.AsyncClient(base_url=base_url, headers=headers, timeout=30) as client,
        client.stream("POST", "/chat/completions", json=request) as response,
    ):
        response.raise_for_status()
        async for line in response.aiter_lines():
            if not line.startswith("data:"):
                continue  # blank lines and comments between server-sent events
            data = line.removeprefix("data:").strip()
            if data == "[DONE]":
                return
            for choice in json.loads(data).get("choices", []):
                if text := (choice.get("delta") or {}).get("content"):
                    yield text
