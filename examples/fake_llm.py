"""A tiny OpenAI-compatible chat server that streams its answer slowly, token by token.

It lets ``examples/llm_agent.py`` run (and be tested) without an API key:

    python examples/fake_llm.py --port 8090
    OPENAI_BASE_URL=http://127.0.0.1:8090/v1 aiflow call examples/llm_agent.py:assistant

The answer names the caller's last words and how many messages the conversation has, so a
test can see that the agent keeps the conversation.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route


def answer_for(messages: list[dict[str, str]]) -> str:
    """What the fake model says to a conversation."""
    last = next((m["content"] for m in reversed(messages) if m["role"] == "user"), "")
    return (
        f"You said: {last.rstrip('.?!')}. "
        f"This conversation has {len(messages)} messages. "
        "Is there anything else, e.g. opening hours on the 3. Mai?"
    )


def create_app(first_token_delay: float = 1.5, token_delay: float = 0.05) -> Starlette:
    """The fake server: ``POST /v1/chat/completions`` with ``"stream": true``."""

    async def completions(request: Request) -> Response:
        body = await request.json()
        if not body.get("stream"):
            return JSONResponse({"error": {"message": "this fake only streams"}}, status_code=400)
        words = answer_for(body["messages"]).split(" ")

        async def events() -> AsyncIterator[str]:
            await asyncio.sleep(first_token_delay)  # the model "thinks" before the first token
            for index, word in enumerate(words):
                token = word if index == 0 else " " + word
                chunk = {
                    "object": "chat.completion.chunk",
                    "choices": [{"index": 0, "delta": {"content": token}}],
                }
                yield f"data: {json.dumps(chunk)}\n\n"
                await asyncio.sleep(token_delay)
            yield "data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    return Starlette(routes=[Route("/v1/chat/completions", completions, methods=["POST"])])


if __name__ == "__main__":
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8090)
    parser.add_argument("--first-token-delay", type=float, default=1.5)
    parser.add_argument("--token-delay", type=float, default=0.05)
    args = parser.parse_args()
    uvicorn.run(create_app(args.first_token_delay, args.token_delay), host="127.0.0.1", port=args.port)
