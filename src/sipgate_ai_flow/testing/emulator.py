"""The AI Flow service, emulated: it plays the caller and the service, and checks every action.

An :class:`EmulatedCall` follows the service's documented behaviour: speech and audio take time to
play and are announced with ``assistant_speak`` / ``assistant_speech_ended``; queued speech plays
in order; ``user_input_timeout`` fires after the caller stays silent; caller speech interrupts
playback as the barge-in config of what is playing says; ``hangup`` and ``transfer`` end the call.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
import weakref
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, Self

from sipgate_ai_flow.errors import AiFlowError
from sipgate_ai_flow.protocol.actions import (
    Action,
    Audio,
    BargeIn,
    ConfigureTranscription,
    ConfigureVoiceToVoice,
    Hangup,
    MixAudio,
    SendSms,
    Speak,
    Transfer,
)
from sipgate_ai_flow.protocol.codec import dump_event
from sipgate_ai_flow.protocol.config import BargeInConfig
from sipgate_ai_flow.protocol.events import (
    AssistantSpeak,
    AssistantSpeechEnded,
    DtmfReceived,
    EventBase,
    SessionEnd,
    SessionStart,
    SmsFailed,
    UserInputTimeout,
    UserSpeak,
    UserSpeechStarted,
)
from sipgate_ai_flow.protocol.session import SessionInfo
from sipgate_ai_flow.testing.checks import (
    StrictModeError,
    Violation,
    ViolationKind,
    check_action,
    decode_body,
)
from sipgate_ai_flow.testing.clock import Clock, RealClock, VirtualClock
from sipgate_ai_flow.testing.latency import AWAITED_EVENTS, Latency, Turn
from sipgate_ai_flow.testing.speech import DEFAULT_WORDS_PER_MINUTE, heard, playback_ms, spoken_text
from sipgate_ai_flow.testing.transports import (
    HttpTransport,
    InProcessTransport,
    Reply,
    Transport,
    WebSocketTransport,
    check_url,
    describe_target,
)

if TYPE_CHECKING:
    from sipgate_ai_flow.assistant.assistant import Assistant

__all__ = ["DEFAULT_BARGE_IN", "EmulatedCall", "Emulator", "EmulatorError", "Entry", "Playback"]

DEFAULT_BARGE_IN = BargeInConfig(strategy="minimum_characters", minimum_characters=3)
"""What the emulator applies to speech sent without a ``barge_in`` config (the service's default
is not documented; this is the n8n node's default)."""
_RECORDING_VERSION = 1
_KEEP_TALKING_LIMIT_MS = 600_000
EndReason = Literal[
    "caller_hangup",
    "assistant_hangup",
    "transferred",
    "transfer_failed",
    "connection_lost",
    "strict_failure",
]


def _unspoken(actions: list[Action]) -> list[Action]:
    # The actions before the first speech or audio of one message.
    spoken = next((i for i, a in enumerate(actions) if isinstance(a, Speak | Audio)), len(actions))
    return actions[:spoken]


class EmulatorError(AiFlowError):
    """The emulator was asked for something it cannot do (e.g. interrupt when nothing plays)."""


@dataclass(slots=True)
class Entry:
    """One line of a call's transcript: a caller step, an event, an action, a violation, or a
    note the app under test added (:meth:`EmulatedCall.note`)."""

    at_ms: float
    kind: Literal["step", "event", "action", "violation", "note"]
    data: dict[str, Any]
    step: int
    cause: str | None = None
    """For an action: the type of the event it answered; ``None`` when sent unprompted."""
    latency_ms: float | None = None
    """For the first action of a :class:`~.latency.Turn`: real ms since its event was sent."""

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form, one line of a recording."""
        line: dict[str, Any] = {"kind": self.kind, "at_ms": round(self.at_ms, 1), "step": self.step}
        if self.kind == "action":
            line["cause"] = self.cause
            if self.latency_ms is not None:
                line["latency_ms"] = round(self.latency_ms, 1)
        return {**line, self.kind: self.data}


@dataclass(slots=True)
class Playback:
    """A ``speak`` or ``audio`` the service played (or is playing)."""

    action: Speak | Audio
    duration_ms: float
    started_ms: float
    interrupted: bool = False

    @property
    def ends_ms(self) -> float:
        """When playback ends if nothing stops it (Unix ms)."""
        return self.started_ms + self.duration_ms

    @property
    def text(self) -> str | None:
        """The words being spoken; ``None`` for audio."""
        return spoken_text(self.action) if isinstance(self.action, Speak) else None


@dataclass(slots=True)
class _Options:
    strict: bool
    deadline: float
    words_per_minute: float
    default_barge_in: BargeInConfig
    transfer_answers: bool
    sms_failure: str | None


def _step(kind: str, value: object, at_ms: float | None) -> dict[str, Any]:
    return {kind: value} if at_ms is None else {kind: value, "at_ms": round(at_ms, 1)}


class EmulatedCall:
    """One phone call to the assistant, driven step by step. Use it as ``async with``.

    Steps: :meth:`say`, :meth:`interrupt`, :meth:`press`, :meth:`silence`, :meth:`listen`,
    :meth:`hangup`. Read back: :attr:`said`, :attr:`last_said`, :attr:`actions`,
    :attr:`ended`, :attr:`transferred_to`, :attr:`sms`, :attr:`violations`, :attr:`transcript`,
    and each turn's latency: :attr:`turns`, :attr:`latencies`, :attr:`latency`.
    """

    def __init__(
        self,
        session: SessionInfo,
        transport: Transport,
        clock: Clock,
        options: _Options,
        *,
        target: str = "",
    ) -> None:
        self.session = session
        self.transport = transport
        self.clock = clock
        self.options = options
        self.target = target
        self.transcript: list[Entry] = []
        self.violations: list[Violation] = []
        self.actions: list[Action] = []
        self.played: list[Playback] = []
        self.sms: list[SendSms] = []
        self.transfers: list[Transfer] = []
        self.settings: dict[str, Action] = {}
        self.turns: list[Turn] = []
        """Every event the caller waited on, with the latency of its first action."""
        self.ended = False
        self.end_reason: EndReason | None = None
        self.hung_up = False
        """Whether the assistant sent ``hangup``."""
        self.listeners: list[Callable[[Entry], None]] = []
        self._playing: Playback | None = None
        self._queue: deque[Speak | Audio | Hangup | Transfer] = deque()
        self._timeout_s: float | None = None
        self._timeout_at: float | None = None
        self._ringing_until: float | None = None
        self._step = -1
        self._step_first_action = 0
        self._open_turn: tuple[Turn, float] | None = None  # and when its event was sent
        self._started = False
        self._failed = False
        self._connected = False
        self._t0 = clock.now()
        self._lock = asyncio.Lock()

    # -- reading the call ---------------------------------------------------------------------

    @property
    def said(self) -> list[str]:
        """Everything the assistant said (``speak`` text, SSML without tags), in order; a ``speak``
        of silence alone (SSML breaks) says nothing."""
        return heard(self.actions)

    @property
    def last_actions(self) -> list[Action]:
        """The actions received since the last caller step began (:meth:`listen` is not one)."""
        return self.actions[self._step_first_action :]

    @property
    def last_said(self) -> str:
        """What the assistant said since the last caller step began, joined by spaces."""
        return " ".join(heard(self.last_actions))

    @property
    def transferred_to(self) -> str | None:
        """The number of the last ``transfer`` the assistant sent, if any.

        Like :attr:`hung_up` this is about what the assistant asked for; the service carries it
        out once the speech queued before it has played (:attr:`ended`, after :meth:`listen`).
        """
        return self.transfers[-1].target_phone_number if self.transfers else None

    @property
    def playing(self) -> Playback | None:
        """What is playing now."""
        return self._playing

    @property
    def events(self) -> list[dict[str, Any]]:
        """Every event sent to the assistant, as sent."""
        return [e.data for e in self.transcript if e.kind == "event"]

    @property
    def latencies(self) -> list[float]:
        """The first-action latency of every answered turn, in real ms, in order."""
        return [t.latency_ms for t in self.turns if t.latency_ms is not None]

    @property
    def latency(self) -> Latency:
        """p50, p95 and the maximum of :attr:`latencies`, and how many turns went unanswered."""
        return Latency.of(self.turns)

    @property
    def elapsed_ms(self) -> float:
        """Time since the call started (virtual or real, as the clock is)."""
        return self.clock.now() - self._t0

    # -- driving the call ---------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            if not self.ended and kind is None:
                await self.listen()
                if not self.ended:
                    await self.hangup()
        finally:
            await self.close()

    async def start(self) -> None:
        """Connect and send ``session_start``."""
        if self._started:
            raise EmulatorError("the call has already started")
        self._started = True
        await self.transport.open()
        self._connected = True
        try:
            await self._run({"start": {"session_id": self.session.id}}, self._start)
        except BaseException:
            # `async with` does not exit what failed to enter: let go of the connection here.
            await self.close()
            raise

    async def _start(self) -> None:
        await self._send(SessionStart(session=self.session))

    async def say(self, text: str, *, at_ms: float | None = None) -> None:
        """The caller waits for the assistant to finish speaking, then says ``text``.

        With ``at_ms`` the caller speaks at that moment of the call instead (ms since it
        started), whatever is playing: the barge-in rules decide. Recordings use this.
        """
        if not text.strip():
            raise EmulatorError("say() needs some text; use silence() for a pause")
        await self._run(_step("say", text, at_ms), lambda: self._when(at_ms, lambda: self._speak(text)))

    async def interrupt(self, text: str, *, after_ms: float = 0) -> None:
        """The caller talks over what is playing, ``after_ms`` into it; barge-in rules decide."""
        if not text.strip():
            raise EmulatorError("interrupt() needs some text")
        await self._run({"interrupt": text, "after_ms": after_ms}, lambda: self._interrupt(text, after_ms))

    async def press(self, keys: str, *, at_ms: float | None = None) -> None:
        """The caller waits for the assistant to finish speaking, then presses ``keys`` one by one
        (at ``at_ms`` into the call instead, if given)."""
        bad = [k for k in keys if k not in "0123456789*#ABCDabcd"]
        if not keys or bad:
            raise EmulatorError(f"press() takes keypad keys 0-9, *, #, A-D; got {keys!r}")
        await self._run(_step("press", keys, at_ms), lambda: self._when(at_ms, lambda: self._press(keys)))

    async def silence(self, seconds: float) -> None:
        """The caller waits for the assistant to finish speaking, then says nothing for ``seconds``."""
        if seconds < 0:
            raise EmulatorError("silence() needs a duration of 0 seconds or more")
        await self._run(
            {"silence": seconds},
            lambda: self._when(None, lambda: self._advance_to(self.clock.now() + seconds * 1000)),
        )

    async def listen(self, seconds: float = 0.0) -> None:
        """Let the assistant finish speaking; over WebSocket also wait up to ``seconds`` of real
        time for actions it sends on its own."""
        await self._run({"listen": seconds}, lambda: self._listen(seconds))

    async def wait_until(self, at_ms: float) -> None:
        """Let the call run by itself until ``at_ms`` since it started (playback, timeouts)."""
        await self._run({"wait_until": at_ms}, lambda: self._advance_to(self._t0 + at_ms))

    async def hangup(self, *, at_ms: float | None = None) -> None:
        """The caller hangs up now, or at ``at_ms`` into the call (``session_end``)."""
        await self._run(
            _step("hangup", True, at_ms),
            lambda: self._when(at_ms, lambda: self._end("caller_hangup"), settle=False),
        )

    async def tick(self) -> None:
        """Let what is due by now happen, and take actions that arrived (for real-time use)."""
        async with self._lock:
            if self.ended:
                return
            try:
                await self._take_pushed()
                await self._fire_due()
            except StrictModeError:
                await self._fail()
                raise

    def next_due(self) -> float | None:
        """When the call next changes by itself (playback ends, a timeout, a transfer rings out)."""
        if self.ended:
            return None
        times = [t for t in (self._timeout_at, self._ringing_until) if t is not None]
        if self._playing is not None:
            times.append(self._playing.ends_ms)
        return min(times, default=None)

    async def close(self) -> None:
        """Disconnect from the assistant (the call is not ended; use :meth:`hangup` for that)."""
        if self._connected:
            self._connected = False
            await self.transport.close()

    # -- recording ----------------------------------------------------------------------------

    def recording(self) -> list[dict[str, Any]]:
        """The call as JSON-ready lines: a header, every step, event, action and violation, an end."""
        header = {
            "kind": "call",
            "version": _RECORDING_VERSION,
            "target": self.target,
            "session": self.session.model_dump(mode="json", exclude_none=True),
            "options": {
                "transfer_answers": self.options.transfer_answers,
                "sms_failure": self.options.sms_failure,
                "words_per_minute": self.options.words_per_minute,
            },
        }
        end = {"kind": "end", "at_ms": round(self.elapsed_ms, 1), "end_reason": self.end_reason}
        return [header, *(entry.to_dict() for entry in self.transcript), end]

    def note(self, data: dict[str, Any]) -> None:
        """Add ``data`` (JSON-ready) to the transcript and the recording as a ``note`` line, such
        as an LLM agent's transcript entry. Safe to call from the thread of a server under test."""
        self._log("note", dict(data))

    def save(self, path: str | Path) -> None:
        """Write :meth:`recording` to ``path`` as JSON Lines."""
        lines = (json.dumps(line, ensure_ascii=False) for line in self.recording())
        Path(path).write_text("\n".join(lines) + "\n", encoding="utf-8")

    # -- internals: steps ---------------------------------------------------------------------

    async def _run(self, step: dict[str, Any], body: Callable[[], Any]) -> None:
        async with self._lock:
            if not self._started:
                raise EmulatorError("start the call first (await call.start() or `async with`)")
            if self.ended and step.keys() & {"listen", "wait_until"}:
                return  # nothing more to hear
            if self.ended and "start" not in step:
                raise EmulatorError(
                    f"the call has ended ({self.end_reason}); {next(iter(step))}() is too late"
                )
            self._step += 1
            if not step.keys() & {"listen", "wait_until"}:  # the caller did nothing new: same turn
                self._step_first_action = len(self.actions)
            self._log("step", step)
            try:
                await self._take_pushed()
                await body()
            except StrictModeError:
                await self._fail()
                raise

    async def _fail(self) -> None:
        self._failed = True
        if not self.ended:
            await self._end("strict_failure")

    async def _when(self, at_ms: float | None, then: Callable[[], Any], *, settle: bool = True) -> None:
        if at_ms is not None:
            await self._advance_to(self._t0 + at_ms)
        elif settle:
            await self._settle()
        if not self.ended:
            await then()

    async def _settle(self) -> None:
        limit = self.clock.now() + _KEEP_TALKING_LIMIT_MS
        while not self.ended and (self._playing or self._queue or self._ringing_until is not None):
            due = self.next_due()
            if due is None:
                break
            if due > limit:
                raise EmulatorError("the assistant kept talking for 10 minutes without a pause")
            await self.clock.sleep_until(due)
            await self._fire_due()

    async def _advance_to(self, when: float) -> None:
        while (due := self.next_due()) is not None and due <= when:
            await self.clock.sleep_until(due)
            await self._fire_due()
        if not self.ended:
            await self.clock.sleep_until(when)

    async def _listen(self, seconds: float) -> None:
        await self._settle()
        if seconds > 0 and isinstance(self.transport, WebSocketTransport) and not self.ended:
            await self._take_pushed(await self.transport.wait_pushed(seconds))
            await self._settle()

    async def _interrupt(self, text: str, after_ms: float) -> None:
        await self._pump()
        playing = self._playing
        if playing is None:
            raise EmulatorError("nothing is playing to interrupt; use say() to speak after the assistant")
        at = playing.started_ms + after_ms
        if at >= playing.ends_ms:
            raise EmulatorError(
                f"after_ms={after_ms:g} is past the end of what is playing ({playing.duration_ms:.0f} ms)"
            )
        await self.clock.sleep_until(at)
        await self._speak(text)

    async def _speak(self, text: str) -> None:
        self._timeout_s = self._timeout_at = None
        if self.transport.websocket:
            await self._send(UserSpeechStarted(session=self.session))
        barged = self._playing is not None and self._interrupts(self._playing, text)
        if barged:
            self._stop()
        if not self.ended:
            await self._send(UserSpeak(session=self.session, text=text, barged_in=barged))

    def _interrupts(self, playing: Playback, text: str) -> bool:
        config = playing.action.barge_in or self.options.default_barge_in
        if self.clock.now() - playing.started_ms < (config.allow_after_ms or 0):
            return False
        if config.strategy == "immediate":
            return True
        if config.strategy == "minimum_characters":
            return len(text.strip()) >= (config.minimum_characters or 3)
        return False  # none, manual, and strategies newer than this emulator

    async def _press(self, keys: str) -> None:
        self._timeout_s = self._timeout_at = None
        for key in keys:
            if self.ended:
                break
            await self._send(DtmfReceived(session=self.session, digit=key))

    # -- internals: the service model ---------------------------------------------------------

    async def _fire_due(self) -> None:
        now = self.clock.now()
        playing = self._playing
        if playing is not None and playing.ends_ms <= now:
            self._playing = None
            self.played.append(playing)
            await self._send(AssistantSpeechEnded(session=self.session))
            await self._pump()
            if self._playing is None and self._timeout_s is not None and not self.ended:
                self._timeout_at = playing.ends_ms + self._timeout_s * 1000
                self._timeout_s = None
        elif self._timeout_at is not None and self._timeout_at <= now:
            self._timeout_at = None
            await self._send(UserInputTimeout(session=self.session))
        elif self._ringing_until is not None and self._ringing_until <= now:
            # Nobody answered the transfer: the call comes back, same session id (D15).
            self._ringing_until = None
            await self._send(SessionStart(session=self.session))

    async def _pump(self) -> None:
        while not self.ended and self._playing is None and self._ringing_until is None and self._queue:
            item = self._queue.popleft()
            if isinstance(item, Hangup | Transfer):
                rest = list(self._queue)
                await (self._end("assistant_hangup") if isinstance(item, Hangup) else self._transfer(item))
                if self.ended:
                    self._queue.clear()
                    for late in rest:  # e.g. [hangup, speak]: the speak can never play
                        self._violate(
                            "action_after_end",
                            f"{late.type} follows {item.type}, which ended the call",
                            None,
                            late.model_dump(mode="json", exclude_none=True),
                        )
            else:
                await self._play(item)

    async def _play(self, action: Speak | Audio) -> None:
        now = self.clock.now()
        playback = Playback(action, playback_ms(action, self.options.words_per_minute), now)
        self._playing = playback
        if isinstance(action, Speak):
            self._timeout_s = action.user_input_timeout_seconds
        await self._send(
            AssistantSpeak(
                session=self.session,
                text=action.text if isinstance(action, Speak) else None,
                ssml=action.ssml if isinstance(action, Speak) else None,
                duration_ms=round(playback.duration_ms),
                speech_started_at=round(now),
            )
        )

    def _stop(self) -> None:
        if self._playing is not None:
            self._playing.interrupted = True
            self.played.append(self._playing)
            self._playing = None
        # What was still queued goes too: the caller (or the assistant's barge_in) cut it off.
        self._queue.clear()

    def _cut_off(self, action: Hangup | Transfer, at_once: bool) -> None:
        if not at_once:
            return
        cut = [p.action for p in (self._playing,) if p is not None] + list(self._queue)
        words = " ".join(heard([a for a in cut if isinstance(a, Speak)]))
        if cut:
            self._violate(
                "speech_cut_off",
                f"{action.type} came while speech sent before it was still to play ({words!r}); "
                "send it with that speech, or after assistant_speech_ended",
                None,
                action.model_dump(mode="json", exclude_none=True),
            )
        self._stop()

    async def _transfer(self, action: Transfer) -> None:
        self._timeout_s = self._timeout_at = None
        if self.options.transfer_answers:
            # On success the service sends no further events.
            self.ended, self.end_reason = True, "transferred"
        elif action.timeout is not None:
            self._ringing_until = self.clock.now() + action.timeout * 1000
        else:
            await self._end("transfer_failed")

    async def _end(self, reason: EndReason) -> None:
        self.ended, self.end_reason = True, reason
        self._playing = None
        self._queue.clear()
        self._timeout_at = self._ringing_until = None
        if reason != "connection_lost":
            await self._send(SessionEnd(session=self.session))

    async def _apply(self, actions: list[Action], later: set[int] | None = None) -> None:
        # A hangup or transfer that no speech precedes in its own message acts at once: the
        # service waits only for the speech of that message (which queues behind earlier speech).
        busy = self._playing is not None or bool(self._queue)
        alone = {id(a) for a in _unspoken(actions)} if busy else set()
        later = alone | (later or set())
        failures: list[SmsFailed] = []
        for action in actions:
            if self.ended:
                self._violate(
                    "action_after_end",
                    f"{action.type} came after the call ended ({self.end_reason})",
                    None,
                    action.model_dump(mode="json", exclude_none=True),
                )
                continue
            match action:
                case Speak() | Audio():
                    self._queue.append(action)
                case Hangup():
                    self._cut_off(action, id(action) in later)
                    self.hung_up = True
                    self._queue.append(action)
                case Transfer():
                    self._cut_off(action, id(action) in later)
                    self.transfers.append(action)
                    self._queue.append(action)
                case BargeIn():
                    self._stop()
                case SendSms():
                    self.sms.append(action)
                    if self.options.sms_failure:
                        failures.append(
                            SmsFailed(
                                session=self.session,
                                recipient=action.phone_number,
                                reason=self.options.sms_failure,
                                message="emulated failure",
                            )
                        )
                case MixAudio(stop=True):
                    self.settings.pop("mix_audio", None)
                case MixAudio() | ConfigureTranscription() | ConfigureVoiceToVoice():
                    self.settings[action.type] = action
        await self._pump()
        for failure in failures:
            if not self.ended:
                await self._send(failure)

    # -- internals: the wire ------------------------------------------------------------------

    async def _send(self, event: EventBase) -> None:
        if not self._connected:
            return
        body = dump_event(event)
        self._log("event", json.loads(body))
        sent = time.perf_counter()
        if event.type in AWAITED_EVENTS:
            # A newer event the caller waits on ends the wait for an answer to the one before.
            self._open_turn = (Turn(event.type, self._step, self.elapsed_ms), sent)
            self.turns.append(self._open_turn[0])
        reply = await self.transport.exchange(body)
        actions = self._check_reply(event.type, reply, sent + reply.latency)
        if not self.transport.websocket:
            self._open_turn = None  # the reply was the only chance to answer
        await self._apply(actions)

    async def _take_pushed(self, messages: list[tuple[bytes | str, float]] | None = None) -> None:
        # Check every message before acting on any: acting plays speech, which sends events
        # whose replies must not overtake the messages already taken.
        if messages is None:
            if isinstance(self.transport, WebSocketTransport):
                messages = self.transport.take()
            else:
                now = time.perf_counter()
                messages = [(body, now) for body in self.transport.pushed()]
        actions: list[Action] = []
        later: set[int] = set()  # actions of a message after one with speech
        for body, arrived in messages:
            checked = self._check_body(body, None, arrived)
            if any(isinstance(a, Speak | Audio) for a in actions):
                later.update(map(id, _unspoken(checked)))
            actions += checked
        await self._apply(actions, later)

    def _check_reply(self, cause: str, reply: Reply, arrived: float) -> list[Action]:
        if reply.error:
            self._violate("transport_error", reply.error, cause)
            if self.transport.websocket:
                self.ended, self.end_reason = True, "connection_lost"
            return []
        if reply.status is not None and reply.status not in (200, 204):
            text = b"".join(b if isinstance(b, bytes) else b.encode() for b in reply.bodies)
            shown = text[:120].decode(errors="replace")
            self._violate("bad_status", f"HTTP {reply.status} (must be 200 or 204): {shown!r}", cause)
            return []
        if not self.transport.websocket and reply.latency > self.options.deadline:
            self._violate(
                "slow_reply",
                f"answered after {reply.latency * 1000:.0f} ms; "
                f"the deadline is {self.options.deadline * 1000:.0f} ms",
                cause,
            )
        if reply.status == 200 and not any(reply.bodies):
            self._violate(
                "not_json", "HTTP 200 with an empty body; answer 204 when there is no action", cause
            )
            return []
        actions: list[Action] = []
        for body in reply.bodies:
            actions += self._check_body(body, cause, arrived)
        return actions

    def _check_body(self, body: bytes | str, cause: str | None, arrived: float) -> list[Action]:
        raws, not_json = decode_body(body)
        if not_json:
            self._violate("not_json", not_json, cause)
            return []
        actions: list[Action] = []
        for raw in raws:
            latency = None
            if self._open_turn is not None:
                turn, sent = self._open_turn
                self._open_turn = None
                latency = turn.latency_ms = max(arrived - sent, 0.0) * 1000
                turn.action = str(raw.get("type")) if isinstance(raw, dict) else None
            self._log("action", raw if isinstance(raw, dict) else {"value": raw}, cause, latency)
            # Not user_speech_started: it comes only over a WebSocket, where nothing ties a message
            # to the event before it, so what arrives then (a greeting that took a while, say)
            # plays like any message the assistant sends on its own.
            if cause == "session_end":
                self._violate(
                    "reply_to_session_end",
                    "no action may answer session_end; the service ignores it",
                    cause,
                    raw,
                )
                continue
            action, problems = check_action(raw, self.session.id)
            for found in problems:
                where = f"{found.path}: " if found.kind == "unknown_value" else ""
                self._violate(found.kind, where + found.message, cause, raw)
            # A value newer services may know is reported, and the action still plays.
            if action is not None and all(found.kind == "unknown_value" for found in problems):
                self.actions.append(action)
                actions.append(action)
        return actions

    def _violate(self, kind: ViolationKind, message: str, cause: str | None, action: Any = None) -> None:
        violation = Violation(
            kind, message, cause, action if isinstance(action, dict) else None, self.elapsed_ms
        )
        self.violations.append(violation)
        self._log("violation", violation.to_dict(), cause)
        if self.options.strict and not self._failed:
            raise StrictModeError(violation)

    def _log(
        self,
        kind: Literal["step", "event", "action", "violation", "note"],
        data: dict[str, Any],
        cause: str | None = None,
        latency_ms: float | None = None,
    ) -> None:
        entry = Entry(self.elapsed_ms, kind, data, self._step, cause, latency_ms)
        self.transcript.append(entry)
        for listener in self.listeners:
            listener(entry)


class Emulator:
    """The AI Flow service for one assistant: places emulated calls to it.

    ``target`` is an :class:`~sipgate_ai_flow.Assistant` (called in-process), an ``http(s)://``
    webhook URL, or a ``ws(s)://`` WebSocket URL; ``token`` is sent as ``X-API-TOKEN``.
    Time is virtual unless ``realtime`` is set: playback and silences then take no real time.
    ``clock`` gives every call this one clock instead (share a :class:`VirtualClock` with an
    assistant that reads the time, such as an LLM agent's ``clock``, to keep both in step).
    ``strict`` fails a call on its first violation; ``deadline`` (s) is the reply budget.
    """

    def __init__(
        self,
        target: Assistant | str,
        *,
        token: str | None = None,
        strict: bool = False,
        deadline: float = 1.0,
        realtime: bool = False,
        words_per_minute: float = DEFAULT_WORDS_PER_MINUTE,
        default_barge_in: BargeInConfig = DEFAULT_BARGE_IN,
        reply_window: float = 0.05,
        timeout: float = 5.0,
        account_id: str = "emulator",
        flow_number: str = "4921100000",
        clock: Clock | None = None,
    ) -> None:
        if isinstance(target, str):
            check_url(target)
        self.target = target
        self.token = token
        self.strict = strict
        self.deadline = deadline
        self.realtime = realtime
        self.words_per_minute = words_per_minute
        self.default_barge_in = default_barge_in
        self.reply_window = reply_window
        self.timeout = timeout
        self.account_id = account_id
        self.flow_number = flow_number
        self.clock = clock
        self.call_listeners: list[Callable[[EmulatedCall], None]] = []
        """Called with every call this emulator places (before it starts), e.g. to collect turns."""
        self._calls: weakref.WeakValueDictionary[str, EmulatedCall] = weakref.WeakValueDictionary()

    def transport(self) -> Transport:
        """A new channel to the target, for one call."""
        target = self.target
        if not isinstance(target, str):
            return InProcessTransport(target)
        if target.startswith(("ws://", "wss://")):
            return WebSocketTransport(target, self.token, self.reply_window, self.timeout)
        return HttpTransport(target, self.token, self.timeout)

    def call(
        self,
        *,
        direction: Literal["inbound", "outbound"] = "inbound",
        from_number: str | None = None,
        to_number: str | None = None,
        session_id: str | None = None,
        transfer_answers: bool = True,
        sms_failure: str | None = None,
        session: SessionInfo | None = None,
        strict: bool | None = None,
        deadline: float | None = None,
        flow_number: str | None = None,
    ) -> EmulatedCall:
        """A new call (not started yet: use ``async with`` or ``await call.start()``).

        The other party's number defaults to ``4915100000``. ``transfer_answers=False`` makes
        transfer targets not answer; ``sms_failure`` (e.g. ``"insufficient_balance"``) makes
        every ``send_sms`` fail with that reason. ``strict`` and ``deadline`` override the
        emulator's for this call, ``flow_number`` its phone number.
        """
        if session is None:
            person = "4915100000"
            inbound = direction == "inbound"
            flow = flow_number or self.flow_number
            session = SessionInfo(
                id=session_id or str(uuid.uuid4()),
                account_id=self.account_id,
                phone_number=flow,
                direction=direction,
                from_phone_number=from_number or (person if inbound else flow),
                to_phone_number=to_number or (flow if inbound else person),
            )
        options = _Options(
            strict=self.strict if strict is None else strict,
            deadline=self.deadline if deadline is None else deadline,
            words_per_minute=self.words_per_minute,
            default_barge_in=self.default_barge_in,
            transfer_answers=transfer_answers,
            sms_failure=sms_failure,
        )
        clock: Clock = self.clock or (RealClock() if self.realtime else VirtualClock())
        call = EmulatedCall(session, self.transport(), clock, options, target=describe_target(self.target))
        self._calls[session.id] = call
        for listener in self.call_listeners:
            listener(call)
        return call

    def note(self, session_id: str, data: dict[str, Any]) -> bool:
        """Add ``data`` as a note to the call with ``session_id`` (see :meth:`EmulatedCall.note`);
        ``False`` when this emulator placed no such call. Fits an LLM agent's ``on_transcript``:
        ``Agent(..., on_transcript=lambda call, entry: emulator.note(call.id, entry))``."""
        call = self._calls.get(session_id)
        if call is None:
            return False
        call.note(data)
        return True
