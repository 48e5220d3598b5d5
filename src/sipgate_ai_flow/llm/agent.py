"""The agent: an LLM behind the phone line, on an :class:`~sipgate_ai_flow.Assistant`.

``agent.attach(assistant)`` registers the agent's handlers. Each caller turn streams the model's
answer into sentence-sized ``speak`` actions through the assistant's runtime, which brings the
rest: a hold when the model is slow to start, stale answers dropped when the caller speaks again,
per-call order, and state in the assistant's store (Redis for several workers).
"""

from __future__ import annotations

import asyncio
import html
import inspect
import json
import logging
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import openai

from sipgate_ai_flow.assistant.assistant import Assistant
from sipgate_ai_flow.assistant.call import Call
from sipgate_ai_flow.assistant.replies import Reply
from sipgate_ai_flow.assistant.sentences import SentenceSplitter
from sipgate_ai_flow.errors import AiFlowError
from sipgate_ai_flow.llm.collect import Value, describe, value_tools
from sipgate_ai_flow.llm.handoff import Handoff
from sipgate_ai_flow.llm.history import CUT_OFF, History
from sipgate_ai_flow.llm.mcp import McpServer
from sipgate_ai_flow.llm.model import ChatModel, ModelError, ToolCallRequest, Usage
from sipgate_ai_flow.llm.speakable import speakable
from sipgate_ai_flow.llm.tools import Tool, ToolOutcome
from sipgate_ai_flow.otel import tool_span
from sipgate_ai_flow.protocol.actions import Action, ActionBase, Hangup, Speak, Transfer
from sipgate_ai_flow.protocol.codec import parse_action
from sipgate_ai_flow.protocol.config import BargeInConfig, TtsConfig
from sipgate_ai_flow.protocol.events import (
    AssistantSpeak,
    AssistantSpeechEnded,
    DtmfReceived,
    SessionEnd,
    SessionStart,
    UserSpeak,
    UserSpeechStarted,
)

__all__ = [
    "DEFAULT_HOLDS",
    "DEFAULT_MODEL_FALLBACK",
    "DEFAULT_RETURNED",
    "KEYPAD",
    "PHONE_RULES",
    "PREVIEW",
    "Agent",
    "OnTranscript",
]

logger = logging.getLogger("sipgate_ai_flow.llm")

KEYPAD = "[keypad: {digit}]"
"""How a key the caller pressed reaches the model, as a message of the caller."""
PHONE_RULES = (
    "You are on a phone call: everything you write is spoken to the caller. Answer in one to "
    "three short sentences of plain speech, without lists, markdown, emoji or web addresses. "
    f"Keys the caller presses arrive as {KEYPAD.format(digit='N')}. When one of your answers ends "
    f"with {CUT_OFF}, the caller interrupted it and heard only the words before the mark."
)
"""Added to the instructions: how a phone call differs from a chat."""
DEFAULT_MODEL_FALLBACK = "Sorry, I can't answer that right now. Could you say it again in a moment?"
DEFAULT_RETURNED = "Sorry, nobody answered there. Is there anything else I can do for you?"
DEFAULT_HOLDS: Mapping[str, Sequence[str]] = {
    "en": (
        "One moment, please.",
        "I'm still on it.",
        "Just a moment longer, please.",
        "Thanks for your patience, almost there.",
    ),
    "de": (
        "Einen Moment, bitte.",
        "Ich bin noch dran.",
        "Nur noch einen kleinen Moment, bitte.",
        "Danke für Ihre Geduld, gleich habe ich es.",
    ),
}
"""What the caller hears while the agent works (the model or a tool is slow), by language; they
take turns, so a long wait does not repeat one sentence."""

WAIT_FOR_TURN = "wait_for_turn"
"""The tool a model calls when the caller has not finished (``end_of_turn="model"``)."""
_WAIT_SCHEMA: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": WAIT_FOR_TURN,
        "description": (
            "Call this instead of answering when the caller's last words are clearly an unfinished "
            "sentence: they paused mid-thought (e.g. 'I would like to book a table for'). Never "
            "for a complete question, statement or answer, however short."
        ),
        "parameters": {
            "type": "object",
            "properties": {
                "filler": {
                    "type": "string",
                    "description": "Optional, at most three words that show you listen, e.g. 'Mhm.'",
                }
            },
            "additionalProperties": False,
        },
    },
}
EndOfTurn = Callable[[str, Call], Awaitable[bool] | bool]
"""A classifier: whether the caller's words (partial ones joined) are a finished turn."""
OnTranscript = Callable[[Call, dict[str, Any]], Awaitable[None] | None]
"""Gets each transcript entry of a call once it is final."""
PREVIEW = 200
"""Characters of a tool's result kept in the transcript."""

_TAG = re.compile(r"<[^>]*>")
_HANDLERS = (
    "on_session_start",
    "on_user_speak",
    "on_dtmf_received",
    "on_assistant_speak",
    "on_assistant_speech_ended",
    "on_user_speech_started",
)


def _wall_clock() -> float:
    return time.time() * 1000


def _filler(request: ToolCallRequest) -> str | None:
    try:
        filler = json.loads(request.arguments or "{}").get("filler")
    except (ValueError, AttributeError):
        return None
    return filler if isinstance(filler, str) and len(filler) <= 40 else None


def _check_tools(tools: Sequence[Tool]) -> None:
    for index, item in enumerate(tools):
        if not isinstance(item, Tool):
            hint = "; make it one with @tool" if callable(item) else ""
            raise AiFlowError(f"tools[{index}] is a {type(item).__name__}, not a Tool{hint}")
    names = [t.name for t in tools]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise AiFlowError(f"two tools are called {', '.join(twice)}; tool names must differ")


def _since(started: float) -> float:
    return round((time.monotonic() - started) * 1000, 1)


def _count(record: dict[str, Any], usage: Usage) -> None:
    # Each request's tokens add up to the turn's.
    total = record["usage"] or {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
    total["prompt_tokens"] += usage.prompt_tokens
    total["completion_tokens"] += usage.completion_tokens
    total["total_tokens"] += usage.total_tokens
    record["usage"] = total


def _tool_entry(request: ToolCallRequest, outcome: ToolOutcome, ms: float) -> dict[str, Any]:
    try:
        arguments: Any = json.loads(request.arguments or "{}")
    except ValueError:
        arguments = request.arguments  # as the model wrote it
    return {
        "name": request.name,
        "arguments": arguments,
        "result": outcome.content[:PREVIEW],
        "error": outcome.error,
        "ms": ms,
    }


def _append(path: Path, line: str) -> None:
    with path.open("a", encoding="utf-8") as file:
        file.write(line + "\n")


def _in_language(texts: Mapping[str, Any], language: str) -> Any:
    # The entry for the language, else English, else the first.
    return texts.get(language) or texts.get("en") or next(iter(texts.values()))


def _words(action: Speak) -> str:
    # What the caller hears of a speak a tool sent: its text, or its SSML without the tags.
    if action.text is not None:
        return action.text
    return " ".join(html.unescape(_TAG.sub(" ", action.ssml or "")).split())


class _Turn:
    """What one caller turn has done so far, across its model and tool rounds."""

    __slots__ = (
        "calls",
        "ending",
        "farewell",
        "handoff",
        "handoffs",
        "record",
        "round_said",
        "said",
        "said_before_ending",
        "started",
    )

    def __init__(self, record: dict[str, Any], started: float, handoffs: int = 0) -> None:
        self.record = record  # its transcript entry, in call.state until the caller heard it
        self.started = started  # time.monotonic() when the caller's turn came
        self.handoff: Handoff | None = None  # the handoff the model asked for in this round
        self.handoffs = handoffs  # handoffs so far in this turn: one at most
        self.calls: list[ToolCallRequest] = []
        self.round_said = 0  # what was said before the current model round
        self.ending: list[ActionBase] = []  # transfer / hangup, sent after the last words
        self.farewell: str | None = None
        self.said = 0
        self.said_before_ending = 0


class Agent:
    """An LLM agent for phone calls, on any OpenAI-compatible chat completions endpoint.

    ``instructions`` is the system prompt (:data:`PHONE_RULES` is added to it; ``rules=None``
    leaves it out). ``model`` names the model; ``client``, ``base_url`` and ``api_key`` say where
    it runs (see :class:`ChatModel`). ``tools`` are :class:`Tool` objects (``@tool`` functions and
    the ready-made :mod:`~sipgate_ai_flow.llm.calltools`).

    ``greeting`` is said when a call starts; ``returned`` when it comes back after a transfer
    nobody answered. ``fallback`` is said when the model fails, rate-limits or stays silent for
    ``timeout`` seconds (``retries`` times it is asked again first, while it has said nothing,
    on ``fallback_model`` if given). ``max_tool_rounds`` bounds the model-tool round trips per
    turn. The history keeps ``max_turns`` caller turns and about ``max_chars`` characters, under
    ``call.state[state_key]``. ``tts`` and ``barge_in`` go to every ``speak``; ``model_options``
    into every request (``{"temperature": 0.3}``). ``clock`` gives the time in Unix ms (the
    history compares it with the service's ``speech_started_at``).

    ``language`` is the call's language code (default: from ``tts.language``, else ``"en"``;
    :meth:`set_language` changes it per call). It picks the ``holds`` the caller hears while
    the agent works (:data:`DEFAULT_HOLDS`; they take turns) and tools' announcements.
    ``holds=None`` leaves holds to the assistant's ``hold``.

    ``end_of_turn`` lets the agent wait when the caller paused mid-sentence: ``"model"`` offers
    the model the :data:`WAIT_FOR_TURN` tool; a function ``(text, call) -> bool`` (sync or
    async, e.g. a cheap classifier call) decides before the model runs. The words are then kept
    and joined with the caller's next ones; at most ``max_waits`` times in a row, saying
    ``filler`` (or the model's) meanwhile, if any.

    Every call has a transcript (:meth:`transcript`): the caller's turns, the agent's with what
    the caller heard, tool calls, latency and token usage (``usage=False`` stops asking the
    endpoint for it, for one that refuses ``stream_options``). Each entry, once final, is also
    appended to the JSON Lines file ``transcript_path`` and given to ``on_transcript(call,
    entry)`` (sync or async). ``collect`` names :class:`~sipgate_ai_flow.llm.Value` s to gather:
    the model saves each with a tool that validates it (and re-asks when it is invalid);
    :meth:`values` reads them. ``name`` names the agent in the transcript and for handoffs
    (:func:`~sipgate_ai_flow.llm.handoff`): agents reached by handoffs answer the call in turn.
    """

    def __init__(
        self,
        instructions: str,
        *,
        model: str,
        tools: Sequence[Tool | McpServer] = (),
        client: openai.AsyncOpenAI | None = None,
        base_url: str | None = None,
        api_key: str | None = None,
        greeting: str | None = None,
        returned: str | None = DEFAULT_RETURNED,
        fallback: str = DEFAULT_MODEL_FALLBACK,
        timeout: float = 4.0,
        retries: int = 1,
        fallback_model: str | None = None,
        max_tool_rounds: int = 4,
        max_turns: int = 20,
        max_chars: int | None = 24_000,
        model_options: Mapping[str, Any] | None = None,
        tts: TtsConfig | None = None,
        barge_in: BargeInConfig | None = None,
        rules: str | None = PHONE_RULES,
        state_key: str = "llm",
        clock: Callable[[], float] | None = None,
        language: str | None = None,
        holds: Mapping[str, Sequence[str]] | None = DEFAULT_HOLDS,
        end_of_turn: Literal["model"] | EndOfTurn | None = None,
        max_waits: int = 2,
        filler: str | None = None,
        name: str = "agent",
        transcript_path: str | Path | None = None,
        on_transcript: OnTranscript | None = None,
        usage: bool = True,
        collect: Sequence[Value] = (),
    ) -> None:
        self.servers = tuple(t for t in tools if isinstance(t, McpServer))
        local: list[Any] = [t for t in tools if not isinstance(t, McpServer)]
        own: list[Tool] = [*local, *(value_tools(collect, state_key) if collect else ())]
        _check_tools(own)
        self._unlisted = list(self.servers)
        self._listing = asyncio.Lock()
        self._warming: set[asyncio.Task[None]] = set()
        if max_tool_rounds < 0:
            raise ValueError(f"max_tool_rounds must be 0 or more, got {max_tool_rounds!r}")
        History({}, max_turns=max_turns, max_chars=max_chars)  # bad bounds fail here
        self.instructions = instructions
        self.model = ChatModel(
            model,
            client=client,
            base_url=base_url,
            api_key=api_key,
            timeout=timeout,
            retries=retries,
            fallback_model=fallback_model,
            options=model_options,
        )
        self.tools: dict[str, Tool] = {t.name: t for t in own}
        self.greeting = greeting
        self.returned = returned
        self.fallback = fallback
        self.max_tool_rounds = max_tool_rounds
        self.max_turns = max_turns
        self.max_chars = max_chars
        self.tts = tts
        self.barge_in = barge_in
        self.rules = rules
        self.state_key = state_key
        self.clock = clock or _wall_clock
        voice = tts.language if tts is not None else None
        self.language = (language or (voice or "en").split("-")[0]).lower()
        if holds is not None and not all(holds.values()):
            raise ValueError("holds maps each language to at least one sentence")
        self.holds = holds
        if end_of_turn is not None and end_of_turn != "model" and not callable(end_of_turn):
            raise ValueError(f'end_of_turn must be "model", a function or None, got {end_of_turn!r}')
        if WAIT_FOR_TURN in self.tools:
            raise AiFlowError(f"the tool name {WAIT_FOR_TURN} is the agent's own (end_of_turn)")
        self.end_of_turn = end_of_turn
        self.max_waits = max_waits
        self.filler = filler
        self.name = name
        self.transcript_path = Path(transcript_path) if transcript_path is not None else None
        self.on_transcript = on_transcript
        self.usage = usage
        self.collect = tuple(collect)
        # Fail now, not in a call: each must make a valid speak.
        for text in (greeting, returned, fallback):
            if text:
                Speak(text=text, tts=tts, barge_in=barge_in)

    def add_tools(self, *tools: Tool) -> None:
        """Give the model more tools, such as a :func:`~sipgate_ai_flow.llm.handoff` back to an
        agent made after this one."""
        _check_tools([*self.tools.values(), *tools])
        if WAIT_FOR_TURN in {t.name for t in tools}:
            raise AiFlowError(f"the tool name {WAIT_FOR_TURN} is the agent's own (end_of_turn)")
        self.tools.update((t.name, t) for t in tools)

    async def aclose(self) -> None:
        """Close the connections to the agent's MCP servers (the assistant's ``drain`` does
        this for an attached agent)."""
        await asyncio.gather(*(server.aclose() for server in self.servers))
        self._unlisted = list(self.servers)
        # Listed again on the next connection, which may bring other tools.
        self.tools = {k: t for k, t in self.tools.items() if getattr(t, "server", None) not in self.servers}

    def _warm(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._warming.add(task)
        task.add_done_callback(self._warmed)

    def _warmed(self, task: asyncio.Task[None]) -> None:
        self._warming.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            # The turn that needs it will try again, and say what went wrong.
            logger.warning("%s: not prepared ahead of the first turn (%s)", self.name, type(exc).__name__)

    async def _list_servers(self) -> None:
        # MCP servers connect on first use; one that cannot be reached is tried again next turn.
        async with self._listing:
            for server in list(self._unlisted):
                try:
                    found = await server.tools()
                    self.add_tools(*found)
                except Exception as exc:
                    logger.warning("%r: no tools (%s: %s)", server, type(exc).__name__, exc)
                    continue
                self._unlisted.remove(server)

    def agents(self) -> dict[str, Agent]:
        """This agent and every agent its handoffs reach (theirs too), by name.

        Raises :class:`AiFlowError` when two of them share a name or keep their history under
        different ``state_key``s (they share the call's history)."""
        found: dict[str, Agent] = {}
        todo: list[Agent] = [self]
        while todo:
            agent = todo.pop()
            known = found.setdefault(agent.name, agent)
            if known is not agent:
                raise AiFlowError(
                    f"two agents are called {agent.name!r}; agents handing over must differ in name"
                )
            if agent.state_key != self.state_key:
                raise AiFlowError(
                    f"agent {agent.name!r} keeps its history under {agent.state_key!r}, not "
                    f"{self.state_key!r}; agents handing over to each other share one state_key"
                )
            todo.extend(
                t.target
                for t in agent.tools.values()
                if isinstance(t, Handoff) and found.get(t.target.name) is not t.target
            )
        return found

    def active(self, call: Call) -> Agent:
        """The agent answering ``call`` now: this one, or the one a handoff gave the call to."""
        name = call.state.get(self.state_key, {}).get("agent")
        if name is None or name == self.name:
            return self
        found = self.agents().get(name)
        if found is None:
            logger.warning("session %s: no agent %r among the handoffs; %s answers", call.id, name, self.name)
            return self
        return found

    def attach(self, assistant: Assistant) -> Assistant:
        """Register the agent's handlers on ``assistant`` and return it.

        The agent takes ``session_start``, ``user_speak`` (barge-ins too), ``dtmf_received`` and
        the playback reports (``assistant_speak``, ``assistant_speech_ended``,
        ``user_speech_started``), and ``session_end`` when it writes transcripts
        (``transcript_path`` or ``on_transcript``: the last turn is final then). Where the
        assistant has a handler for one of them already, this raises; such a handler can call
        the agent's method of the same name instead.
        """
        self.agents()  # handoffs that cannot work fail here, not in a call
        handlers = (*_HANDLERS, "on_session_end") if self._writes else _HANDLERS
        taken = [name for name in (*handlers, "on_user_barge_in") if name in assistant.handlers]
        if taken:
            raise AiFlowError(
                f"the assistant already has {', '.join(taken)}; attach the agent to an assistant "
                "without them, or call the agent's methods of the same names from your handlers"
            )
        for name in handlers:
            assistant.add_handler(name, getattr(self, name))
        if self.holds:
            assistant.holds = self.hold
        for agent in self.agents().values():
            if agent.servers:
                assistant.closers.append(agent.aclose)
        return assistant

    def language_of(self, call: Call) -> str:
        """The call's language code: as :meth:`set_language` set it, else the agent's."""
        language: str = call.state.get(self.state_key, {}).get("language") or self.language
        return language

    def set_language(self, call: Call, language: str) -> None:
        """Speak ``language`` (a code such as ``"de"``) in this call's holds and announcements."""
        call.state.setdefault(self.state_key, {})["language"] = language.split("-", maxsplit=1)[0].lower()

    def hold(self, call: Call, count: int) -> Speak | None:
        """The ``count``-th hold in a row for ``call``: the holds of its language take turns (in
        the voice of the agent answering the call)."""
        active = self.active(call)
        if active is not self:
            return active.hold(call, count)
        if not self.holds:
            return None
        phrases = _in_language(self.holds, self.language_of(call))
        turns = sum(m.get("role") == "user" for m in call.state.get(self.state_key, {}).get("messages", []))
        return Speak(text=phrases[(turns + count - 1) % len(phrases)], tts=self.tts, barge_in=self.barge_in)

    @property
    def _writes(self) -> bool:
        return self.transcript_path is not None or self.on_transcript is not None

    def transcript(self, call: Call) -> list[dict[str, Any]]:
        """The call's transcript so far, oldest first (JSON-ready dicts, copies).

        ``{"kind": "user", "at", "text", "barged_in"}`` (a key press: ``"keys"``) for the
        caller; ``{"kind": "assistant", "at", "agent", "said", "heard", "interrupted",
        "latency_ms", "duration_ms", "requests", "usage", "tools"}`` for the agent's answers
        (``heard``: the words the caller heard; the answer in progress counts what has played so
        far). Each tool call: ``{"name", "arguments", "result"}`` (the result's first
        :data:`PREVIEW` characters), ``"error"`` and ``"ms"``. ``at`` is Unix ms.
        """
        data = call.state.get(self.state_key, {})
        entries = [dict(e) for e in data.get("transcript", [])]
        if data.get("turn") is not None:
            entries.append(self._settled(data["turn"], self.history(call).heard_answer()))
        copied: list[dict[str, Any]] = json.loads(json.dumps(entries))  # deep: nothing shared with the state
        return copied

    def values(self, call: Call) -> dict[str, str]:
        """The values collected in ``call`` so far (see ``collect``), by name (a copy)."""
        return dict(call.state.get(self.state_key, {}).get("values", {}))

    def missing(self, call: Call) -> list[str]:
        """The names of the values still to collect in ``call``."""
        saved = self.values(call)
        return [v.name for v in self.collect if v.name not in saved]

    def history(self, call: Call) -> History:
        """The call's history (kept in ``call.state``)."""
        data = call.state.setdefault(self.state_key, {})
        return History(data, max_turns=self.max_turns, max_chars=self.max_chars)

    # -- handlers -----------------------------------------------------------------------------

    async def on_session_start(self, event: SessionStart, call: Call) -> Reply:
        """Greet a new call; on a call back from an unanswered transfer, say ``returned``."""
        history = self.history(call)
        if call.is_return:
            # The goodbye before the transfer played out.
            await self._finish(call, history, history.settle())
        agent = self.active(call)  # back from a transfer: the agent that made it
        # Starting an MCP server, or the model's client, takes a while: during the greeting, not
        # in the caller's first turn.
        if agent._unlisted:
            agent._warm(agent._list_servers())
        if not agent.model.ready():
            agent._warm(agent.model.warm())
        text = agent.returned if call.is_return else self.greeting
        if text:
            agent._open(history)
        return agent._say(text, history)

    async def on_user_speak(self, event: UserSpeak, call: Call) -> AsyncIterator[Reply]:
        """Answer what the caller said (after a barge-in, the history keeps what they heard)."""
        started = time.monotonic()
        history = self.history(call)
        if history.data.pop("ending", None):
            logger.info("session %s: the caller spoke during the goodbye; the call goes on", call.id)
        partial = history.data.pop("partial", None)
        text = f"{partial} {event.text}" if partial else event.text
        now = self.clock()
        await self._finish(call, history, history.user(text, barged_in=event.barged_in, now=now))
        await self._emit(call, {"kind": "user", "at": now, "text": event.text, "barged_in": event.barged_in})
        agent = self.active(call)
        waits = history.data.get("waits", 0)
        if callable(agent.end_of_turn) and waits < agent.max_waits:
            finished = agent.end_of_turn(text, call)
            if not (await finished if inspect.isawaitable(finished) else finished):
                yield agent._waited(history, agent._open(history), text, agent.filler)
                return
        async for item in agent.respond(call, history, may_wait=waits < agent.max_waits, started=started):
            yield item

    async def on_dtmf_received(self, event: DtmfReceived, call: Call) -> AsyncIterator[Reply]:
        """Answer a key press, which reaches the model as :data:`KEYPAD` text."""
        started = time.monotonic()
        history = self.history(call)
        text = KEYPAD.format(digit=event.digit)
        now = self.clock()
        await self._finish(call, history, history.user(text))
        await self._emit(call, {"kind": "user", "at": now, "text": text, "keys": event.digit})
        async for item in self.active(call).respond(call, history, started=started):
            yield item

    async def on_session_end(self, event: SessionEnd, call: Call) -> None:
        """Write the transcript's last answer (registered by :meth:`attach` when the agent
        writes transcripts): the caller heard what had played when the call ended."""
        history = self.history(call)
        await self._finish(call, history, history.heard_answer())

    async def on_assistant_speak(self, event: AssistantSpeak, call: Call) -> None:
        """Note that a sentence started playing."""
        self.history(call).started(event.text, event.speech_started_at, event.duration_ms)

    async def on_assistant_speech_ended(self, event: AssistantSpeechEnded, call: Call) -> list[Action]:
        """Note that what was playing finished; once the last words before a transfer or a
        hangup the model asked for have played, send it."""
        history = self.history(call)
        history.ended()
        if history.data.get("ending") and not history.unplayed():
            return [parse_action(raw) for raw in history.data.pop("ending")]
        return []

    async def on_user_speech_started(self, event: UserSpeechStarted, call: Call) -> None:
        """Note when the caller started talking (the moment a barge-in cut the answer)."""
        self.history(call).voice(self.clock())

    # -- answering ----------------------------------------------------------------------------

    async def respond(
        self, call: Call, history: History, *, may_wait: bool = False, started: float | None = None
    ) -> AsyncIterator[Reply]:
        """Run the model on the history: stream its answer as speech, carry out its tool calls
        (round after round, at most ``max_tool_rounds``), and end with the call-ending actions
        the tools asked for. Whatever fails, the caller hears the fallback, never silence.
        ``may_wait``: the model may call :data:`WAIT_FOR_TURN` (with ``end_of_turn="model"``).
        ``started`` (``time.monotonic()``) is when the caller's turn came, for the latency."""
        turn = _Turn(self._open(history), time.monotonic() if started is None else started)
        async for item in self._answer(call, history, turn, may_wait=may_wait):
            yield item

    async def _answer(
        self, call: Call, history: History, turn: _Turn, *, may_wait: bool = False
    ) -> AsyncIterator[Reply]:
        rounds = 0
        wait = may_wait and self.end_of_turn == "model"
        try:
            while True:
                may_call = rounds < self.max_tool_rounds and not turn.ending
                async for speak in self._model_round(
                    history, turn, may_call=may_call, wait=wait and not rounds
                ):
                    self._spoke(turn)
                    yield speak
                waiting = [c for c in turn.calls if c.name == WAIT_FOR_TURN]
                if waiting and not turn.said:
                    text = history.messages[-1]["content"]
                    yield self._waited(history, turn.record, text, _filler(waiting[0]))
                    return
                turn.calls = [c for c in turn.calls if c.name != WAIT_FOR_TURN]
                if not turn.calls:
                    break
                rounds += 1
                async for action in self._tool_round(call, history, turn, may_call=may_call):
                    yield action
                if turn.handoff is not None:
                    async for item in self._hand_over(call, history, turn, turn.handoff):
                        yield item
                    return
                if not may_call:
                    break  # it called tools when told not to: stop here rather than loop
                if turn.ending and turn.said > turn.said_before_ending:
                    break  # its goodbye came with the call: another round would only delay it
        except ModelError as exc:
            logger.warning("session %s: the model failed (%s); saying the fallback", call.id, exc.reason)
            turn.said += 1
            self._spoke(turn)
            yield self._say(self.fallback, history)
        except Exception:
            # A bug (ours or a tool's result handling): the caller still hears an answer.
            logger.exception("session %s: answering failed; saying the fallback", call.id)
            turn.said += 1
            self._spoke(turn)
            yield self._say(self.fallback, history)
        for item in self._close(call, history, turn):
            yield item

    def _close(self, call: Call, history: History, turn: _Turn) -> list[Reply]:
        # The end of an answer: the fallback if it said nothing, then the call-ending actions.
        out: list[Reply] = []
        history.data.pop("waits", None)
        if not turn.said and not turn.ending:
            logger.warning("session %s: the model answered nothing; saying the fallback", call.id)
            self._spoke(turn)
            out.append(self._say(self.fallback, history))
        turn.record["duration_ms"] = _since(turn.started)
        if turn.ending:
            if turn.said == turn.said_before_ending and turn.farewell:
                out.append(self._say(turn.farewell, history))
            if history.unplayed():
                # Sent now, it would cut the goodbye off: it goes when that has played.
                history.data["ending"] = [a.model_dump(mode="json", exclude_none=True) for a in turn.ending]
            else:
                out.append(list(turn.ending))
        return out

    async def _model_round(
        self, history: History, turn: _Turn, *, may_call: bool, wait: bool = False
    ) -> AsyncIterator[Speak]:
        # One request: its text spoken sentence by sentence; its tool calls kept in turn.calls.
        splitter = SentenceSplitter()
        turn.calls = []
        turn.round_said = turn.said
        if self._unlisted:
            await self._list_servers()
        schemas = [t.schema for t in self.tools.values()]
        turn.record["requests"] += 1
        async for piece in self.model.stream(
            self._request(history),
            tools=[*schemas, _WAIT_SCHEMA] if wait else schemas,
            tool_choice=None if may_call else "none",
            usage=self.usage,
        ):
            if isinstance(piece, Usage):
                _count(turn.record, piece)
                continue
            if isinstance(piece, list):
                turn.calls = piece
                continue
            for sentence in splitter.feed(piece):
                if speak := self._sentence(sentence, history):
                    turn.said += 1
                    yield speak
        for sentence in splitter.flush():
            if speak := self._sentence(sentence, history):
                turn.said += 1
                yield speak

    async def _tool_round(
        self, call: Call, history: History, turn: _Turn, *, may_call: bool
    ) -> AsyncIterator[ActionBase]:
        # The tool calls of the last request, run together; call-ending actions wait in turn.
        calls = turn.calls
        announced = [t.announce for c in calls if (t := self.tools.get(c.name)) and t.announce]
        if announced and may_call and turn.said == turn.round_said:
            # The model said nothing first: the tool's own words cover the wait (and join the
            # history as if the model had said them before its call).
            first = announced[0]
            text = first if isinstance(first, str) else _in_language(first, self.language_of(call))
            turn.said += 1
            self._spoke(turn)
            history.said(text)
            yield Speak(text=text, tts=self.tts, barge_in=self.barge_in)
        history.tool_calls([c.to_message() for c in calls])
        outcomes = await self._run_tools(calls, call, allowed=may_call)
        for request, (done, ms) in zip(calls, outcomes, strict=True):
            result = self._handing_over(turn, request, done)
            turn.record["tools"].append(_tool_entry(request, result, ms))
            history.tool_result(request.id, result.content)
            for action in result.actions:
                if isinstance(action, Transfer | Hangup):
                    turn.ending.append(action)
                    turn.farewell = turn.farewell or result.farewell
                    turn.said_before_ending = turn.round_said  # words with the call count too
                    continue
                if isinstance(action, Speak) and (text := _words(action)):
                    history.said(text)
                    turn.said += 1
                    self._spoke(turn)
                yield action

    def _request(self, history: History) -> list[dict[str, Any]]:
        system = self.instructions if not self.rules else f"{self.instructions}\n\n{self.rules}"
        if self.collect:
            system = f"{system}\n\n{describe(self.collect, history.data)}"
        return [{"role": "system", "content": system}, *history.for_request()]

    async def _run_tools(
        self, calls: list[ToolCallRequest], call: Call, *, allowed: bool
    ) -> list[tuple[ToolOutcome, float]]:
        async def timed(request: ToolCallRequest) -> tuple[ToolOutcome, float]:
            started = time.monotonic()
            outcome = await one(request)
            return outcome, _since(started)

        async def one(request: ToolCallRequest) -> ToolOutcome:
            found = self.tools.get(request.name)
            if not allowed:
                return ToolOutcome("Error: no more tool calls in this turn; answer the caller.", error=True)
            if found is None:
                known = ", ".join(self.tools) or "none"
                refusal = f"Error: there is no tool {request.name!r}; the tools are: {known}"
                return ToolOutcome(refusal, error=True)
            logger.debug("session %s: tool %s", call.id, request.name)
            with tool_span(request.name, request.id, request.arguments) as span:
                outcome = await found.run(request.arguments, call)
                span.result(outcome.content, error=outcome.error)
            return outcome

        # Parallel tool calls run at the same time; their results keep the model's order.
        return list(await asyncio.gather(*(timed(c) for c in calls)))

    # -- handoffs -----------------------------------------------------------------------------

    def _handing_over(self, turn: _Turn, request: ToolCallRequest, result: ToolOutcome) -> ToolOutcome:
        # The first handoff of a turn is carried out after its round; others are refused (two
        # agents could hand a caller back and forth forever).
        found = self.tools.get(request.name)
        if not isinstance(found, Handoff) or result.error:
            return result
        if turn.handoffs or turn.handoff is not None:
            return ToolOutcome("Error: the call was handed over in this turn already.", error=True)
        turn.handoff = found
        return result

    async def _hand_over(
        self, call: Call, history: History, turn: _Turn, handoff: Handoff
    ) -> AsyncIterator[Reply]:
        # The handoff sentence in this agent's voice, then the other agent answers the turn.
        target = handoff.target
        if handoff.sentence and not turn.ending:
            self._spoke(turn)
            yield self._say(handoff.sentence, history)
        history.data["agent"] = target.name
        if handoff.history == "caller":
            # Only the caller's turns: the words said so far still count for the transcript.
            history.data["messages"][:] = [m for m in history.messages if m["role"] == "user"]
            history.data["answer"].clear()
        turn.record["handoff"] = target.name
        logger.debug("session %s: %s hands the call over to %s", call.id, self.name, target.name)
        async for item in target._answer(call, history, _Turn(turn.record, turn.started, handoffs=1)):
            yield item

    # -- the transcript -----------------------------------------------------------------------

    def _open(self, history: History) -> dict[str, Any]:
        # The transcript entry of an answer that starts now; final once the caller heard it.
        record: dict[str, Any] = {
            "kind": "assistant",
            "at": self.clock(),
            "agent": self.name,
            "latency_ms": None,
            "duration_ms": None,
            "requests": 0,
            "usage": None,
            "tools": [],
        }
        history.data["turn"] = record
        return record

    @staticmethod
    def _spoke(turn: _Turn) -> None:
        if turn.record["latency_ms"] is None:
            turn.record["latency_ms"] = _since(turn.started)

    @staticmethod
    def _settled(record: dict[str, Any], heard: tuple[list[str], str, bool]) -> dict[str, Any]:
        if record.get("waited"):
            return record  # a filler, out of the history: as it was said
        said, words, cut = heard
        return {**record, "said": said, "heard": words, "interrupted": cut}

    async def _finish(self, call: Call, history: History, heard: tuple[list[str], str, bool]) -> None:
        # The answer before is settled: its entry is final.
        record = history.data.pop("turn", None)
        if record is not None:
            await self._emit(call, self._settled(record, heard))

    def _waited(
        self, history: History, record: dict[str, Any], text: str, filler: str | None
    ) -> Speak | None:
        # The entry of a turn the agent waited on is final once the rest comes.
        speak = self._wait(history, text, filler)
        said = [speak.text] if speak is not None and speak.text else []
        record.update(said=said, heard=" ".join(said), interrupted=False, waited=True)
        history.data["turn"] = record
        return speak

    async def _emit(self, call: Call, entry: dict[str, Any]) -> None:
        self.history(call).data.setdefault("transcript", []).append(entry)
        try:
            if self.transcript_path is not None:
                line = json.dumps({"session_id": call.id, **entry}, ensure_ascii=False)
                await asyncio.to_thread(_append, self.transcript_path, line)
            if self.on_transcript is not None:
                done = self.on_transcript(call, entry)
                if inspect.isawaitable(done):
                    await done
        except Exception as exc:  # the call goes on without it
            logger.warning("session %s: writing the transcript failed (%s)", call.id, type(exc).__name__)

    def _wait(self, history: History, text: str, filler: str | None) -> Speak | None:
        # The caller has not finished: their words wait for the rest, out of the history (so
        # they never appear twice), and the filler stays out of it too.
        messages = history.messages
        if messages and messages[-1]["role"] == "user":
            messages.pop()
        history.data["answer"].clear()
        history.data["speech"].clear()
        history.data["partial"] = text
        history.data["waits"] = history.data.get("waits", 0) + 1
        filler = speakable(filler or "")
        return Speak(text=filler, tts=self.tts, barge_in=self.barge_in) if filler else None

    def _sentence(self, sentence: str, history: History) -> Speak | None:
        text = speakable(sentence)
        if not text:
            return None
        history.said(text)
        return Speak(text=text, tts=self.tts, barge_in=self.barge_in)

    def _say(self, text: str | None, history: History) -> Speak | None:
        if not text:
            return None
        history.said(text)
        return Speak(text=text, tts=self.tts, barge_in=self.barge_in)
