"""A fake OpenAI-compatible chat model: real HTTP on 127.0.0.1, answers scripted by rules.

Point an agent (or anything that speaks the chat completions API) at :attr:`FakeModel.base_url`
and it gets streamed tokens, tool calls, delays and errors as the rules say, offline and the same
every time. Every request is kept in :attr:`FakeModel.requests`, and every tool call the fake
made, with the result the next request carried, in :attr:`FakeModel.tool_calls`. A streamed
request that asks for usage (``stream_options.include_usage``) gets token counts in a last chunk,
as OpenAI sends them: a word of the request's messages is a prompt token, a streamed chunk or a
tool call a completion token.

A rule matches on the last user message (``when``: a part of it, any case; ``matches``: a
regular expression) and optionally on the requested ``model``. Its ``reply`` is a list of steps:
the first answers the user message, the next one the request after the first round of tool
results, and so on. Rules in YAML::

    rules:
      - when: opening hours
        reply:
          - tool_calls: [{name: opening_hours, arguments: {day: saturday}}]
          - text: "On Saturday we are open {tool_result}."
      - when: flaky
        times: 1
        reply: {error: 429}
    default: "Sorry, I did not get that."

Run one on its own with ``python -m sipgate_ai_flow.testing.fake_model RULES.yaml --port 8090``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import re
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from sipgate_ai_flow.errors import FieldError, ProtocolError
from sipgate_ai_flow.testing.checks import Regex

if TYPE_CHECKING:
    import uvicorn
    from starlette.requests import Request
    from starlette.responses import Response

__all__ = ["FakeModel", "FakeModelError", "FakeRule", "FakeStep", "FakeToolCall", "FakeToolSpec"]

DEFAULT_REPLY = "This is the fake model: no rule matched."
_TOOL_RESULT = "{tool_result}"


class FakeModelError(ProtocolError):
    """Rules that cannot be read; ``errors`` name each bad field by its path."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FakeToolSpec(_Model):
    """A tool call the fake makes: the tool's ``name`` and its ``arguments`` (an object, or raw
    text to test what a bad argument does)."""

    name: str = Field(min_length=1)
    arguments: dict[str, Any] | str = Field(default_factory=dict)


class FakeStep(_Model):
    """One answer. ``text`` is streamed word by word (a list: these chunks); ``tool_calls``
    follow it. ``delay`` (s) comes before the first chunk, ``chunk_delay`` between chunks.
    ``error`` answers with that HTTP status instead; ``hang`` never answers; ``drop_after``
    breaks a streamed answer's connection after that many chunks. ``{tool_result}`` in the text stands for the
    last tool result of the request."""

    text: str | list[str] | None = None
    tool_calls: list[FakeToolSpec] | None = None
    delay: float = Field(default=0, ge=0)
    chunk_delay: float = Field(default=0, ge=0)
    error: int | None = Field(default=None, ge=400, le=599)
    message: str | None = None
    hang: bool = False
    drop_after: int | None = Field(default=None, ge=0)

    def chunks(self, tool_result: str) -> list[str]:
        """The text as it is streamed."""
        if self.text is None:
            return []
        if isinstance(self.text, list):
            return [c.replace(_TOOL_RESULT, tool_result) for c in self.text]
        words = self.text.replace(_TOOL_RESULT, tool_result).split(" ")
        return [w if i == 0 else " " + w for i, w in enumerate(words)]


class FakeRule(_Model):
    """When to answer with ``reply``: the last user message contains ``when`` (any case) and
    matches ``matches``, the request is for ``model``; at most ``times`` times."""

    when: str | None = None
    matches: Regex | None = None
    model: str | None = None
    times: int | None = Field(default=None, ge=1)
    reply: list[FakeStep] = Field(min_length=1)

    @field_validator("reply", mode="before")
    @classmethod
    def _steps(cls, value: Any) -> Any:
        # A text, or one step, needs no list around it.
        items = value if isinstance(value, list) else [value]
        return [{"text": item} if isinstance(item, str) else item for item in items]

    def accepts(self, last_user: str, model: str) -> bool:
        """Whether this rule answers a request (``times`` aside)."""
        if self.model is not None and self.model != model:
            return False
        if self.when is not None and self.when.lower() not in last_user.lower():
            return False
        return self.matches is None or re.search(self.matches, last_user, re.IGNORECASE) is not None


class _Script(_Model):
    rules: list[FakeRule] = Field(default_factory=list)
    default: FakeStep = FakeStep(text=DEFAULT_REPLY)

    @model_validator(mode="before")
    @classmethod
    def _shapes(cls, value: Any) -> Any:
        if isinstance(value, list):
            return {"rules": value}
        if isinstance(value, dict) and isinstance(value.get("default"), str):
            return {**value, "default": {"text": value["default"]}}
        return value


@dataclass(slots=True)
class FakeToolCall:
    """A tool call the fake made, and the ``result`` a later request brought back (if any)."""

    id: str
    name: str
    arguments: dict[str, Any] | str
    result: str | None = None


class FakeModel:
    """The fake server. Use it as a context manager (sync or async), or :meth:`start` and
    :meth:`stop`; while it runs, :attr:`base_url` is its ``http://127.0.0.1:PORT/v1``.

    ``rules`` are :class:`FakeRule` objects or their dicts; ``default`` answers what no rule
    matches. More rules can be added at any time with :meth:`add`.
    """

    def __init__(
        self,
        rules: Iterable[FakeRule | Mapping[str, Any]] = (),
        *,
        default: str | FakeStep | Mapping[str, Any] = DEFAULT_REPLY,
        port: int = 0,
    ) -> None:
        script = _validate({"rules": list(rules), "default": default}, "FakeModel rules")
        self.rules: list[FakeRule] = list(script.rules)
        self.default = script.default
        self.port = port
        self.requests: list[dict[str, Any]] = []
        """Every request body received, in order."""
        self.request_headers: list[dict[str, str]] = []
        """The headers of each request (names in lower case), in the same order."""
        self.tool_calls: list[FakeToolCall] = []
        """Every tool call the fake made, in order."""
        self.unmatched: list[str] = []
        """The last user messages of requests no rule matched."""
        self._used: dict[int, int] = {}
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    @classmethod
    def from_file(cls, path: str | Path, *, port: int = 0) -> FakeModel:
        """A fake with the rules of a YAML or JSON file (a list of rules, or ``rules`` and
        ``default``); raises :class:`FakeModelError` naming each bad field."""
        path = Path(path)
        try:
            document = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as exc:
            raise FakeModelError(f"{path}: cannot read the rules", [FieldError("", str(exc))]) from None
        script = _validate(document, str(path))
        model = cls(port=port)
        model.rules, model.default = list(script.rules), script.default
        return model

    def add(self, rule: FakeRule | Mapping[str, Any] | None = None, /, **fields: Any) -> FakeRule:
        """Add a rule after the others and return it: ``model.add(when="hours", reply="We open
        at nine.")``."""
        data = rule if rule is not None else fields
        [checked] = _validate({"rules": [data]}, "FakeModel.add").rules
        with self._lock:
            self.rules.append(checked)
        return checked

    @property
    def base_url(self) -> str:
        """The API's base URL, for ``OPENAI_BASE_URL`` or ``Agent(base_url=...)``."""
        if self._server is None:
            raise RuntimeError("the fake model is not running; start() it or use it as a context manager")
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def tools_called(self) -> list[str]:
        """The names of the tools the fake called, in order."""
        return [call.name for call in self.tool_calls]

    # -- running ------------------------------------------------------------------------------

    def start(self) -> None:
        """Serve on 127.0.0.1 in a thread of its own; returns once it accepts connections."""
        import uvicorn  # noqa: PLC0415 - the test kit loads servers only when one is started

        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", self.port))
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(
            self.app(),
            log_level="critical",  # a dropped connection is on purpose; no tracebacks for it
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=1,
        )
        self._stopping.clear()
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [sock]}, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the fake model server did not start")
            time.sleep(0.01)

    def stop(self) -> None:
        """Stop serving; hanging answers end."""
        self._stopping.set()
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(10)
        self._server = self._thread = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    async def __aenter__(self) -> Self:
        await asyncio.to_thread(self.start)
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await asyncio.to_thread(self.stop)

    # -- answering ----------------------------------------------------------------------------

    def app(self) -> Any:
        """The ASGI app (``POST /v1/chat/completions``), to mount or serve yourself."""
        from starlette.applications import Starlette  # noqa: PLC0415
        from starlette.routing import Route  # noqa: PLC0415

        return Starlette(routes=[Route("/v1/chat/completions", self._completions, methods=["POST"])])

    def choose(self, body: Mapping[str, Any]) -> FakeStep:
        """The step that answers a request body (and note that its rule was used)."""
        messages = body.get("messages") or []
        last_user, step = _position(messages)
        model = str(body.get("model", ""))
        with self._lock:
            for index, rule in enumerate(self.rules):
                used = self._used.get(index, 0)
                if (rule.times is None or used < rule.times) and rule.accepts(last_user, model):
                    self._used[index] = used + 1
                    return rule.reply[step] if step < len(rule.reply) else self.default
            self.unmatched.append(last_user)
        return self.default

    async def _completions(self, request: Request) -> Response:
        from starlette.responses import JSONResponse, StreamingResponse  # noqa: PLC0415

        try:
            body = await request.json()
        except ValueError:
            return JSONResponse({"error": {"message": "the body is not JSON"}}, status_code=400)
        if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
            return JSONResponse({"error": {"message": "'messages' must be a list"}}, status_code=400)
        self._note(body, dict(request.headers))
        step = self.choose(body)
        if step.hang:
            # Until the client gives up or the fake stops; both are polled, neither can wake us.
            while not self._stopping.is_set() and not await request.is_disconnected():  # noqa: ASYNC110
                await asyncio.sleep(0.05)
            return JSONResponse({"error": {"message": "the fake hung"}}, status_code=504)
        if step.error is not None:
            await asyncio.sleep(step.delay)
            kind = "rate_limit_error" if step.error == 429 else "server_error"
            message = step.message or f"fake error {step.error}"
            error = {"error": {"message": message, "type": kind, "code": None}}
            return JSONResponse(error, status_code=step.error)
        calls = self._calls(step)
        chunks = step.chunks(_last_tool_result(body["messages"]))
        model = str(body.get("model", "fake"))
        if body.get("stream"):
            options = body.get("stream_options")
            usage = (
                _usage(body["messages"], chunks, calls)
                if isinstance(options, dict) and options.get("include_usage")
                else None
            )
            events = _stream(step, chunks, calls, model, usage)
            return StreamingResponse(events, media_type="text/event-stream")
        await asyncio.sleep(step.delay)
        if step.drop_after is not None:
            raise _DroppedError  # the connection breaks before an answer
        return JSONResponse(_completion(model, "".join(chunks), calls))

    def _note(self, body: dict[str, Any], headers: dict[str, str]) -> None:
        with self._lock:
            self.requests.append(body)
            self.request_headers.append(headers)
            results = {
                m.get("tool_call_id"): m.get("content")
                for m in body["messages"]
                if isinstance(m, dict) and m.get("role") == "tool"
            }
            for call in self.tool_calls:
                if call.result is None and call.id in results:
                    content = results[call.id]
                    call.result = content if isinstance(content, str) else json.dumps(content)

    def _calls(self, step: FakeStep) -> list[FakeToolCall]:
        made = [
            FakeToolCall(f"call_fake_{next(self._ids)}", spec.name, spec.arguments)
            for spec in step.tool_calls or ()
        ]
        with self._lock:
            self.tool_calls.extend(made)
        return made


class _DroppedError(Exception):
    """Raised inside a response to break the connection (the server closes it unfinished)."""


def _validate(document: Any, where: str) -> _Script:
    try:
        return _Script.model_validate(document)
    except ValidationError as exc:
        raise FakeModelError.from_validation_error(f"{where}: invalid rules", exc) from None


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # content parts
        return " ".join(p.get("text", "") for p in content if isinstance(p, dict))
    return ""


def _position(messages: list[Any]) -> tuple[str, int]:
    # The last user message, and how many assistant messages came after it (the step to answer).
    for index in range(len(messages) - 1, -1, -1):
        message = messages[index]
        if isinstance(message, dict) and message.get("role") == "user":
            after = messages[index + 1 :]
            return _text(message.get("content")), sum(
                1 for m in after if isinstance(m, dict) and m.get("role") == "assistant"
            )
    return "", 0


def _last_tool_result(messages: list[Any]) -> str:
    for message in reversed(messages):
        if not isinstance(message, dict) or message.get("role") == "user":
            break
        if message.get("role") == "tool":
            return _text(message.get("content"))
    return ""


def _arguments(call: FakeToolCall) -> str:
    return call.arguments if isinstance(call.arguments, str) else json.dumps(call.arguments)


def _chunk(model: str, delta: dict[str, Any], finish: str | None = None) -> str:
    body = {
        "id": "chatcmpl-fake",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    return f"data: {json.dumps(body)}\n\n"


def _usage(messages: list[Any], chunks: list[str], calls: list[FakeToolCall]) -> dict[str, int]:
    # Made-up but repeatable counts: a word of the request is a prompt token, a streamed chunk
    # or a tool call a completion token.
    prompt = sum(len(_text(m.get("content")).split()) for m in messages if isinstance(m, dict))
    completion = len(chunks) + len(calls)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


async def _stream(
    step: FakeStep,
    chunks: list[str],
    calls: list[FakeToolCall],
    model: str,
    usage: dict[str, int] | None = None,
) -> AsyncIterator[str]:
    await asyncio.sleep(step.delay)
    yield _chunk(model, {"role": "assistant", "content": ""})
    for sent, chunk in enumerate(chunks):
        if step.drop_after is not None and sent >= step.drop_after:
            raise _DroppedError
        if sent:
            await asyncio.sleep(step.chunk_delay)
        yield _chunk(model, {"content": chunk})
    if step.drop_after is not None:
        raise _DroppedError
    for index, call in enumerate(calls):
        # The name first, then the arguments in two pieces, as real endpoints split them.
        head = {
            "index": index,
            "id": call.id,
            "type": "function",
            "function": {"name": call.name, "arguments": ""},
        }
        yield _chunk(model, {"tool_calls": [head]})
        text = _arguments(call)
        for piece in (text[: len(text) // 2], text[len(text) // 2 :]):
            yield _chunk(model, {"tool_calls": [{"index": index, "function": {"arguments": piece}}]})
    yield _chunk(model, {}, "tool_calls" if calls else "stop")
    if usage is not None:
        # As OpenAI sends it when asked (stream_options.include_usage): a last chunk, no choices.
        body = {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 0, "model": model}
        yield f"data: {json.dumps({**body, 'choices': [], 'usage': usage})}\n\n"
    yield "data: [DONE]\n\n"


def _completion(model: str, text: str, calls: list[FakeToolCall]) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": text or None}
    if calls:
        message["tool_calls"] = [
            {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": _arguments(c)}}
            for c in calls
        ]
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": 0,
        "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": "tool_calls" if calls else "stop"}],
        "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
    }


def main(argv: list[str] | None = None) -> None:
    """Serve the rules of a file until Ctrl-C."""
    parser = argparse.ArgumentParser(description="A fake OpenAI-compatible chat model for tests.")
    parser.add_argument("rules", help="YAML or JSON file with the rules")
    parser.add_argument("--port", type=int, default=8090)
    args = parser.parse_args(argv)
    model = FakeModel.from_file(args.rules, port=args.port)
    with model:
        print(f"fake model at {model.base_url} ({len(model.rules)} rules); Ctrl-C stops it", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()


if __name__ == "__main__":
    main()
