"""The model: streamed chat completions from any OpenAI-compatible endpoint, within a deadline.

:class:`ChatModel` wraps the official ``openai`` client. It yields the answer's text as it
streams, then the tool calls (complete, with their arguments). Every failure becomes a
:class:`ModelError`: HTTP errors, rate limits, a connection that breaks mid-stream, and a model
that goes silent for longer than ``timeout``. A failed request is retried only while it has
produced nothing (no text, no tool call) and time is left: a retry then cannot make the caller
hear anything twice.
"""

from __future__ import annotations

import asyncio
import logging
import os
import weakref
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

import openai
from openai.types.chat import ChatCompletionChunk

from sipgate_ai_flow.errors import AiFlowError
from sipgate_ai_flow.otel import llm_request_span

__all__ = ["ChatModel", "ModelError", "ToolCallRequest", "Usage"]

logger = logging.getLogger("sipgate_ai_flow.llm")

# openai's client refuses to start without a key; local servers (Ollama, vLLM, LM Studio, the
# test kit's fake) need none. With this stand-in the client starts, and each request omits the
# Authorization header (no "Bearer " with an empty value, which HTTP libraries reject).
_NO_KEY = "no-key"
_RETRY_PAUSE = 0.2


class ModelError(AiFlowError):
    """The model could not answer: ``reason`` says why, in words safe to log."""

    def __init__(self, reason: str, *, emitted: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.emitted = emitted
        """Whether the failed request had already produced text or tool calls."""


@dataclass(frozen=True, slots=True)
class ToolCallRequest:
    """A tool call the model asked for; ``arguments`` is its JSON text, unparsed."""

    id: str
    name: str
    arguments: str

    def to_message(self) -> dict[str, Any]:
        """The entry of an assistant message's ``tool_calls``."""
        function = {"name": self.name, "arguments": self.arguments}
        return {"id": self.id, "type": "function", "function": function}


@dataclass(frozen=True, slots=True)
class Usage:
    """The tokens one request took, as the endpoint reported them."""

    prompt_tokens: int
    completion_tokens: int

    @property
    def total_tokens(self) -> int:
        """Prompt and completion tokens together."""
        return self.prompt_tokens + self.completion_tokens


class ChatModel:
    """A chat model behind an OpenAI-compatible API.

    ``client`` is an ``openai.AsyncOpenAI`` (or ``AsyncAzureOpenAI``) you made; without it one is
    made from ``base_url`` and ``api_key`` (default: ``OPENAI_BASE_URL`` and ``OPENAI_API_KEY``;
    no key at all is fine for local servers). ``timeout`` (s) bounds the wait for the first
    output and every gap after it; ``retries`` failed requests are tried again, on
    ``fallback_model`` if given. ``options`` go into every request body (``temperature``, ...).
    """

    def __init__(
        self,
        model: str,
        *,
        client: openai.AsyncOpenAI | None = None,
        base_url: str | None = None,
        api_key: str | None = None,
        timeout: float = 4.0,
        retries: int = 1,
        fallback_model: str | None = None,
        options: Mapping[str, Any] | None = None,
    ) -> None:
        if not timeout > 0:
            raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")
        if retries < 0:
            raise ValueError(f"retries must be 0 or more, got {retries!r}")
        self.model = model
        self.timeout = timeout
        self.retries = retries
        self.fallback_model = fallback_model
        self.options = dict(options or {})
        self.base_url = base_url
        self.api_key = api_key
        self._client = client
        # A client made here is bound to the event loop that first used it (its connection pool),
        # so each loop gets its own: tests and asyncio.run() calls come and go.
        self._clients: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, tuple[openai.AsyncOpenAI, AsyncIterator[None]]
        ] = weakref.WeakKeyDictionary()

    def ready(self) -> bool:
        """Whether this event loop has its client already (see :meth:`warm`)."""
        return self._client is not None or asyncio.get_running_loop() in self._clients

    async def warm(self) -> None:
        """Make this event loop's client before a caller waits for it: the first one takes a
        tenth of a second or more (its TLS context, the chat resource openai loads on first use)."""
        client, _ = await self.client()
        client.chat.completions  # noqa: B018 - loaded on first access

    async def client(self) -> tuple[openai.AsyncOpenAI, bool]:
        """The client for this event loop, and whether it has a key."""
        if self._client is not None:
            return self._client.with_options(max_retries=0), True
        key = self.api_key if self.api_key is not None else os.environ.get("OPENAI_API_KEY")
        loop = asyncio.get_running_loop()
        made = self._clients.get(loop)
        if made is None:
            # Our own deadline and retries apply; openai's backoff would overrun the call's budget.
            client = openai.AsyncOpenAI(base_url=self.base_url, api_key=key or _NO_KEY, max_retries=0)
            # Kept connections must close before their loop does (else it cannot close cleanly):
            # the loop closes every open async generator at shutdown (shutdown_asyncgens, which
            # asyncio.run and uvicorn call), and this one closes the client when that happens.
            closer = _closing(client)
            await anext(closer)
            made = self._clients[loop] = (client, closer)
        return made[0], bool(key)

    async def stream(
        self,
        messages: Sequence[Mapping[str, Any]],
        *,
        tools: Sequence[Mapping[str, Any]] = (),
        tool_choice: str | None = None,
        usage: bool = False,
    ) -> AsyncIterator[str | list[ToolCallRequest] | Usage]:
        """Yield the answer's text chunks as they come, then its tool calls (if any) as one list.
        With ``usage``, the request asks for the token counts (``stream_options``), and a
        :class:`Usage` comes last when the endpoint sends them.

        Raises :class:`ModelError` when the model fails or stays silent past the timeout.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout
        attempt = 0
        while True:
            model = self.model if attempt == 0 or not self.fallback_model else self.fallback_model
            emitted = False
            # A span per request (each retry its own); free while tracing is off.
            with llm_request_span(model, tools=len(tools)) as span:
                try:
                    async for piece in self._request(
                        model, messages, tools, tool_choice, deadline, usage=usage
                    ):
                        if isinstance(piece, Usage):
                            span.usage(piece.prompt_tokens, piece.completion_tokens)
                        else:
                            span.first_chunk()
                            emitted = True
                        yield piece
                    return
                except ModelError as exc:
                    span.failed(exc.reason)
                    exc.emitted = emitted
                    left = deadline - loop.time()
                    if emitted or attempt >= self.retries or left < _RETRY_PAUSE * 2:
                        raise
                    logger.info("model %s: %s; trying again", model, exc.reason)
            attempt += 1
            await asyncio.sleep(_RETRY_PAUSE)
            deadline = loop.time() + max(left - _RETRY_PAUSE, _RETRY_PAUSE)

    async def _request(
        self,
        model: str,
        messages: Sequence[Mapping[str, Any]],
        tools: Sequence[Mapping[str, Any]],
        tool_choice: str | None,
        deadline: float,
        *,
        usage: bool,
    ) -> AsyncIterator[str | list[ToolCallRequest] | Usage]:
        client, keyed = await self.client()
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout_at(deadline):
                stream = await client.chat.completions.create(
                    model=model,
                    messages=cast(Any, list(messages)),  # dicts in the API's shape
                    stream=True,
                    tools=cast(Any, list(tools)) if tools else openai.omit,
                    tool_choice=cast(Any, tool_choice) if tools and tool_choice else openai.omit,
                    stream_options={"include_usage": True} if usage else openai.omit,
                    extra_headers=None if keyed else {"Authorization": openai.omit},
                    extra_body=self.options or None,
                    timeout=self.timeout,
                )
        except TimeoutError:
            raise ModelError(f"no answer within {self.timeout:g} s") from None
        except openai.APIError as exc:
            raise ModelError(_describe(exc)) from None
        calls: dict[int, dict[str, str]] = {}
        counted: Usage | None = None
        try:
            async with stream:
                chunks = aiter(stream)
                while True:
                    try:
                        async with asyncio.timeout_at(deadline):
                            chunk = await anext(chunks)
                    except StopAsyncIteration:
                        break
                    deadline = loop.time() + self.timeout  # each gap gets the whole timeout
                    if chunk.usage is not None:
                        counted = Usage(chunk.usage.prompt_tokens, chunk.usage.completion_tokens)
                    if text := _absorb(chunk, calls):
                        yield text
        except TimeoutError:
            raise ModelError(f"the stream stalled for {self.timeout:g} s") from None
        except openai.APIError as exc:
            raise ModelError(_describe(exc)) from None
        if calls:
            yield [
                ToolCallRequest(c["id"] or f"call_{index}", c["name"], c["arguments"])
                for index, c in sorted(calls.items())
            ]
        if counted is not None:
            yield counted


def _absorb(chunk: ChatCompletionChunk, calls: dict[int, dict[str, str]]) -> str:
    # A chunk's text, returned; its pieces of tool calls, added to ``calls`` by index.
    text = ""
    for choice in chunk.choices:
        delta = choice.delta
        text += delta.content or ""
        for call in delta.tool_calls or ():
            entry = calls.setdefault(call.index, {"id": "", "name": "", "arguments": ""})
            entry["id"] = call.id or entry["id"]
            if call.function is not None:
                entry["name"] += call.function.name or ""
                entry["arguments"] += call.function.arguments or ""
    return text


async def _closing(client: openai.AsyncOpenAI) -> AsyncIterator[None]:
    try:
        yield
    finally:
        await client.close()


def _describe(exc: openai.APIError) -> str:
    # Status and class only: the body may quote the conversation.
    if isinstance(exc, openai.APIStatusError):
        return f"{type(exc).__name__} (HTTP {exc.status_code})"
    return type(exc).__name__
