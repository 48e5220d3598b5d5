"""LLM evals for emulated calls: a simulated caller that pursues a goal, and an LLM judge.

Both talk to any OpenAI-compatible endpoint (``pip install 'sipgate-ai-flow[llm]'``), and to the
test kit's :class:`~sipgate_ai_flow.testing.FakeModel` in CI. Settings come from the arguments of
:class:`Evals` or from the environment: ``AIFLOW_EVAL_BASE_URL`` (else ``OPENAI_BASE_URL``),
``AIFLOW_EVAL_API_KEY`` (else ``OPENAI_API_KEY``; none is fine for local servers),
``AIFLOW_EVAL_MODEL`` (default ``gpt-4o-mini``), and ``AIFLOW_EVAL_CALLER_MODEL`` /
``AIFLOW_EVAL_JUDGE_MODEL`` to use other models for the two roles.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from sipgate_ai_flow.errors import AiFlowError
from sipgate_ai_flow.testing.speech import strip_ssml
from sipgate_ai_flow.testing.transports import WebSocketTransport

if TYPE_CHECKING:
    import openai

    from sipgate_ai_flow.testing.emulator import EmulatedCall

__all__ = ["DONE", "EvalError", "Evals", "ToolLog", "Verdict", "transcript_text"]

DONE = "[done]"
"""The simulated caller ends its last line with this when its goal is reached (or out of reach)."""
DEFAULT_EVAL_MODEL = "gpt-4o-mini"
_NO_KEY = "no-key"
_CALLER = (
    "You play a caller on a phone call with a company's voice assistant, to test it. Your goal: "
    "{goal} {persona}Speak as a caller does: one or two short sentences per turn, nothing else "
    "(no names of speakers, no stage directions). When the goal is reached, or cannot be "
    f"reached, say goodbye and end with {DONE}."
)
_JUDGE = (
    "You judge a phone call between a caller and a voice assistant. Read the transcript, then "
    "decide whether the statement holds. Answer PASS or FAIL on the first line, then say why "
    "in one sentence."
)


class EvalError(AiFlowError):
    """An eval could not run: no ``openai`` package, or the eval model failed."""


class ToolLog(Protocol):
    """Where the tool calls made in calls can be read, in order (e.g. a FakeModel)."""

    @property
    def tool_calls(self) -> Sequence[Any]:
        """Objects with a ``name``, oldest first."""
        ...


@dataclass(frozen=True, slots=True)
class Verdict:
    """The judge's answer: ``passed``, and its ``reason``."""

    passed: bool
    reason: str


class Evals:
    """The models that simulate callers and judge calls, and the ``tool_log`` that
    ``expect: tool_called`` reads. Arguments left out come from the environment (see above).
    """

    def __init__(
        self,
        *,
        model: str | None = None,
        caller_model: str | None = None,
        judge_model: str | None = None,
        base_url: str | None = None,
        api_key: str | None = None,
        tool_log: ToolLog | None = None,
        timeout: float = 60.0,
    ) -> None:
        env = os.environ
        default = model or env.get("AIFLOW_EVAL_MODEL") or DEFAULT_EVAL_MODEL
        self.caller_model = caller_model or env.get("AIFLOW_EVAL_CALLER_MODEL") or default
        self.judge_model = judge_model or env.get("AIFLOW_EVAL_JUDGE_MODEL") or default
        self.base_url = base_url or env.get("AIFLOW_EVAL_BASE_URL") or env.get("OPENAI_BASE_URL")
        self.api_key = api_key or env.get("AIFLOW_EVAL_API_KEY") or env.get("OPENAI_API_KEY")
        self.tool_log = tool_log
        self.timeout = timeout

    async def judge(self, call: EmulatedCall, statement: str) -> Verdict:
        """Whether ``statement`` holds for the call so far, in the judge model's view."""
        transcript = transcript_text(call) or "(nothing was said)"
        answer = await self._complete(
            self.judge_model,
            [
                {"role": "system", "content": _JUDGE},
                {"role": "user", "content": f"Transcript:\n{transcript}\n\nStatement: {statement}"},
            ],
        )
        first, _, rest = answer.strip().partition("\n")
        word = first.strip().split(":")[0].split()[0].upper() if first.strip() else ""
        if word not in ("PASS", "FAIL"):
            raise EvalError(f"the judge answered neither PASS nor FAIL: {answer[:200]!r}")
        reason = (first.strip()[len(word) :].strip(" :-") + " " + rest.strip()).strip()
        return Verdict(word == "PASS", reason)

    async def simulate(self, call: EmulatedCall, goal: str, *, max_turns: int = 5, persona: str = "") -> int:
        """Let the caller model talk to the assistant toward ``goal``, for up to ``max_turns``
        caller lines; returns how many it said. It stops early when it is done or the call ends."""
        system = _CALLER.format(goal=goal.strip(), persona=f"{persona.strip()} " if persona.strip() else "")
        said = 0
        for _ in range(max_turns):
            await answered(call)
            if call.ended:
                break
            line = await self._complete(
                self.caller_model, [{"role": "system", "content": system}, *_flipped(call)]
            )
            done = DONE in line.lower()
            line = " ".join(line.replace(DONE, " ").replace(DONE.upper(), " ").split())
            if line:
                await call.say(line)
                said += 1
            if done:
                break
        return said

    async def _complete(self, model: str, messages: list[dict[str, str]]) -> str:
        client, keyed = self._client()
        try:
            import openai  # noqa: PLC0415

            async with client:
                result = await client.chat.completions.create(
                    model=model,
                    messages=messages,  # type: ignore[arg-type]  # dicts in the API's shape
                    extra_headers=None if keyed else {"Authorization": openai.omit},
                )
        except Exception as exc:  # openai's errors, and whatever a broken endpoint causes
            raise EvalError(f"the eval model {model!r} failed: {type(exc).__name__}: {exc}") from None
        return result.choices[0].message.content or ""

    def _client(self) -> tuple[openai.AsyncOpenAI, bool]:
        try:
            import openai  # noqa: PLC0415 - the [llm] extra, only for evals
        except ImportError:
            raise EvalError("simulated callers and judges need: pip install 'sipgate-ai-flow[llm]'") from None
        client = openai.AsyncOpenAI(
            base_url=self.base_url, api_key=self.api_key or _NO_KEY, timeout=self.timeout, max_retries=2
        )
        return client, bool(self.api_key)


async def answered(call: EmulatedCall) -> None:
    """Let the assistant finish what it is saying; over WebSocket, wait for answers that come
    later than the emulator's reply window, until one second passes without anything new."""
    await call.listen()
    if isinstance(call.transport, WebSocketTransport):
        while not call.ended:
            before = len(call.actions)
            await call.listen(1.0)
            if len(call.actions) == before:
                break
            await asyncio.sleep(0)


def transcript_text(call: EmulatedCall) -> str:
    """The call so far as lines a model can read: what each side said and did."""
    lines: list[str] = []
    for entry in call.transcript:
        data = entry.data
        if entry.kind == "event":
            kind = data.get("type")
            if kind == "user_speak":
                lines.append(f"Caller: {data.get('text', '')}")
            elif kind == "dtmf_received":
                lines.append(f"[The caller presses {data.get('digit')}]")
        elif entry.kind == "action" and (line := _action_line(data)):
            lines.append(line)
    if call.end_reason == "caller_hangup":
        lines.append("[The caller hangs up]")
    return "\n".join(lines)


def _action_line(action: dict[str, Any]) -> str | None:
    kind = action.get("type")
    if kind == "speak":
        text = action.get("text") or strip_ssml(str(action.get("ssml") or ""))
        return f"Assistant: {text}" if text else None
    if kind == "transfer":
        return f"[The assistant transfers the call to {action.get('target_phone_number')}]"
    if kind == "hangup":
        return "[The assistant hangs up]"
    if kind == "send_sms":
        return f"[The assistant sends an SMS to {action.get('phone_number')}: {action.get('message')}]"
    return None


def _flipped(call: EmulatedCall) -> list[dict[str, str]]:
    # The caller model is the "assistant" of its own conversation: the voice assistant's words
    # are its "user" messages.
    messages: list[dict[str, str]] = []
    for line in transcript_text(call).splitlines():
        role, text = (
            ("assistant", line.removeprefix("Caller: ")) if line.startswith("Caller: ") else ("user", line)
        )
        text = text.removeprefix("Assistant: ")
        if messages and messages[-1]["role"] == role:
            messages[-1]["content"] += " " + text
        else:
            messages.append({"role": role, "content": text})
    if not messages or messages[-1]["role"] == "assistant":
        messages.append({"role": "user", "content": "(silence)"})
    return messages
