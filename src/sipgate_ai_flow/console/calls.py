"""The console's calls: emulated calls in real time, told to the page as they happen.

Each :class:`ConsoleCall` wraps an :class:`~sipgate_ai_flow.testing.EmulatedCall` on a real
clock. A ticker lets the call run by itself between the caller's steps (playback ends, input
timeouts, transfers ringing out); it does so with ``wait_until`` steps, so the recording holds the
same steps a replay takes, and ``aiflow replay`` finds the call "same". Every transcript entry,
every reply's latency and, where the assistant runs in this process, ``call.state`` after each
reply, goes to the page as a JSON message.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from sipgate_ai_flow.protocol.actions import Audio, Speak
from sipgate_ai_flow.testing.checks import StrictModeError
from sipgate_ai_flow.testing.emulator import EmulatedCall, EmulatorError, Entry
from sipgate_ai_flow.testing.speech import spoken_text
from sipgate_ai_flow.testing.transports import Reply, Transport, TransportError, WebSocketTransport

if TYPE_CHECKING:
    from sipgate_ai_flow.assistant.assistant import Assistant

__all__ = ["ConsoleCall", "Message", "Publish"]

Message = dict[str, Any]
Publish = Callable[[Message], None]
_POLL_S = 0.02
"""How often a WebSocket call looks for actions the assistant sends on its own."""
_AWAITED = frozenset({"session_start", "user_speak", "dtmf_received", "user_input_timeout"})
"""Events a caller waits to be answered: an answer to them after the emulator's reply window
(a WebSocket's) still counts as their turn."""


class _TimedTransport:
    """Passes everything through to the call's transport and reports each reply as it comes."""

    def __init__(
        self,
        inner: Transport,
        on_reply: Callable[[Reply, float], Any],
        on_pushed: Callable[[list[bytes | str]], None],
    ) -> None:
        self.inner = inner
        self.websocket = inner.websocket
        self.on_reply = on_reply
        self.on_pushed = on_pushed

    async def open(self) -> None:
        """Connect."""
        await self.inner.open()

    async def exchange(self, event: bytes) -> Reply:
        """Deliver ``event``; its reply (latency included) goes to the console first."""
        started = time.perf_counter()
        reply = await self.inner.exchange(event)
        await self.on_reply(reply, started)
        return reply

    def pushed(self) -> list[bytes | str]:
        """Messages the assistant sent on its own (the console hears of them first)."""
        messages = self.inner.pushed()
        if messages:
            self.on_pushed(messages)
        return messages

    async def close(self) -> None:
        """Disconnect."""
        await self.inner.close()


class ConsoleCall:
    """One call placed from the page: the caller's commands in, JSON messages out.

    ``assistant`` is the assistant behind the target when it runs in this process (called
    in-process, or served by the console itself): its ``call.state`` is shown after each reply
    and its hold replies are marked. ``publish`` gets every message for the page, ``notify`` a
    line for the terminal when the call cannot go on.
    """

    def __init__(
        self,
        number: int,
        call: EmulatedCall,
        publish: Publish,
        *,
        assistant: Assistant | None = None,
        notify: Callable[[str], None] | None = None,
    ) -> None:
        self.id = str(number)
        self.call = call
        self.assistant = assistant
        self.publish = publish
        self.notify = notify or (lambda _line: None)
        self.log: list[Message] = []
        """Every message so far but the latest status (a page that connects later gets them)."""
        self.error: str | None = None
        self.turns: list[Message] = []
        self._event_index = -1
        self._entries = 0
        self._holding = False
        self._awaiting: tuple[float, int] | None = None
        self._holds = _hold_texts(assistant, call) if assistant is not None else set()
        self._ticker: asyncio.Task[None] | None = None
        self._transport = _TimedTransport(call.transport, self._on_reply, self._on_pushed)
        call.transport = self._transport
        call.listeners.append(self._on_entry)

    # -- what the page sees -------------------------------------------------------------------

    def info(self) -> Message:
        """The call's setup, as the page shows it."""
        session = self.call.session.model_dump(mode="json", exclude_none=True)
        return {"type": "call", "call": self.id, "session": session}

    def status(self) -> Message:
        """Where the call stands: what plays, its outcome so far, and how it ended."""
        call = self.call
        playing = call.playing
        now = call.elapsed_ms
        shown = None
        if playing is not None:
            shown = {
                "kind": playing.action.type,
                "text": playing.text,
                "duration_ms": round(playing.duration_ms),
                "left_ms": round(max(playing.ends_ms - call.clock.now(), 0)),
            }
        return {
            "type": "status",
            "call": self.id,
            "at_ms": round(now, 1),
            "ended": call.ended or self.error is not None,
            "end_reason": call.end_reason,
            "error": self.error,
            "playing": shown,
            "transferred_to": call.transferred_to,
            "hung_up": call.hung_up,
            "sms": [{"to": sms.phone_number, "message": sms.message} for sms in call.sms],
            "violations": len(call.violations),
        }

    def snapshot(self) -> list[Message]:
        """Everything a page needs to show this call from scratch."""
        return [self.info(), *self.log, self.status()]

    def summary(self) -> Message:
        """The call as JSON for the API: its setup, status, turns and transcript."""
        return {
            **self.info(),
            "status": self.status(),
            "turns": self.turns,
            "transcript": [entry.to_dict() for entry in self.call.transcript],
        }

    def _emit(self, message: Message) -> None:
        self.log.append(message)
        self.publish(message)
        self.publish(self.status())

    def _on_entry(self, entry: Entry) -> None:
        message: Message = {"type": "entry", "call": self.id, "index": self._entries, **entry.to_dict()}
        self._entries += 1
        if entry.kind == "event":
            self._event_index = message["index"]
            playing = self.call.playing
            if entry.data.get("type") == "assistant_speak" and playing is not None:
                # What the page plays: the words for speech synthesis, or the audio itself.
                if isinstance(playing.action, Audio):
                    message["audio"] = playing.action.audio
                else:
                    message["words"] = playing.text
        elif entry.kind == "action":
            message["tag"] = self._tag(entry)
        self._emit(message)

    def _tag(self, entry: Entry) -> str | None:
        if entry.data.get("type") == "speak" and self._holds:
            text = entry.data.get("text") or ""
            if text in self._holds:
                self._holding = True
                return "hold"
        if self._holding:
            self._holding = False
            return "late"
        return "pushed" if entry.cause is None else None

    async def _on_reply(self, reply: Reply, started: float) -> None:
        answered = bool(reply.bodies)
        event = self.call.transcript[-1].data.get("type") if self.call.transcript else None
        self._awaiting = None
        if not answered and reply.error is None and self.call.transport.websocket and event in _AWAITED:
            self._awaiting = (started, self._event_index)
        self._turn(self._event_index, reply, answered=answered)
        if self.assistant is not None:
            record = await self.assistant.store.load(self.call.session.id)
            if record is not None:
                self._emit({"type": "state", "call": self.id, "state": record.state})

    def _on_pushed(self, messages: list[bytes | str]) -> None:
        if self._awaiting is not None:
            # The answer came after the reply window: it is still this event's turn.
            started, event = self._awaiting
            self._awaiting = None
            self._turn(event, Reply(bodies=messages, latency=time.perf_counter() - started), answered=True)

    def _turn(self, event: int, reply: Reply, *, answered: bool) -> None:
        turn: Message = {
            "type": "reply",
            "call": self.id,
            "event": event,
            "at_ms": round(self.call.elapsed_ms, 1),
            "latency_ms": round(reply.latency * 1000, 1),
            "status": reply.status,
            "answered": answered,
            "error": reply.error,
        }
        if answered:
            self.turns.append(turn)
        self._emit(turn)

    # -- what the caller does -----------------------------------------------------------------

    async def start(self) -> None:
        """Place the call; raises :class:`TransportError` when the target cannot be reached."""
        try:
            await self.call.start()
        except TransportError as exc:
            self.fail(str(exc))
            raise
        self._settled()
        self._ticker = asyncio.create_task(self._tick())

    async def say(self, text: str) -> None:
        """The caller says ``text`` now: over the assistant's speech, a barge-in attempt."""
        await self._step(lambda at: self.call.say(text, at_ms=at))

    async def press(self, keys: str) -> None:
        """The caller presses ``keys`` now."""
        await self._step(lambda at: self.call.press(keys, at_ms=at))

    async def hangup(self) -> None:
        """The caller hangs up now."""
        await self._step(lambda at: self.call.hangup(at_ms=at))

    async def _step(self, step: Callable[[float], Any]) -> None:
        if self.error is not None:
            raise EmulatorError(f"the call has ended: {self.error}")
        try:
            await step(self.call.elapsed_ms)
        except (TransportError, StrictModeError) as exc:
            self.fail(str(exc))
            raise EmulatorError(f"the call has ended: {exc}") from None
        finally:
            self._settled()

    def _settled(self) -> None:
        """After the call moved: tell the page where it stands, and say it loudly when the
        emulator lost the connection to the assistant."""
        call = self.call
        if self.error is None and call.end_reason == "connection_lost":
            lost = [v.message for v in call.violations if v.kind == "transport_error"]
            self.fail(lost[-1] if lost else "the connection to the assistant was lost")
        else:
            self.publish(self.status())

    def fail(self, error: str) -> None:
        """The call cannot go on (its target is gone): say so, and stop its clock."""
        self.error = error
        self.notify(f"call {self.id}: {error}")
        self._emit({"type": "error", "call": self.id, "message": error})
        if self._ticker is not None and self._ticker is not asyncio.current_task():
            self._ticker.cancel()

    async def _tick(self) -> None:
        # The service's own moves happen at their time: playback ends, input timeouts, a transfer
        # nobody answers. A WebSocket assistant may also send actions at any time.
        call = self.call
        inner = self._transport.inner
        while not call.ended and self.error is None:
            if isinstance(inner, WebSocketTransport) and inner.closed_reason:
                # Say so now: the emulator would notice only when it next sends an event.
                self.fail(inner.closed_reason)
                return
            due = call.next_due()
            wait = _POLL_S if due is None else min(_POLL_S, max((due - call.clock.now()) / 1000, 0))
            await asyncio.sleep(wait)
            due = call.next_due()
            try:
                if due is not None and due <= call.clock.now():
                    # Rounded up, as recordings keep 0.1 ms: a replay must reach what came due.
                    await call.wait_until(math.ceil(call.elapsed_ms * 10) / 10)
                elif call.transport.websocket:
                    await call.tick()
                else:
                    continue
            except (TransportError, StrictModeError, EmulatorError) as exc:
                self.fail(str(exc))
                return
            self._settled()

    async def close(self) -> None:
        """Stop the clock and disconnect (a call still running is left as it is)."""
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
        await self.call.close()


def _hold_texts(assistant: Assistant, call: EmulatedCall) -> set[str]:
    """The words of the assistant's hold and give-up replies, to mark them in the timeline."""
    from sipgate_ai_flow.assistant.replies import to_actions  # noqa: PLC0415

    texts: set[str] = set()
    for reply in (assistant.hold, assistant.give_up):
        texts.update(spoken_text(a) for a in to_actions(reply, call.session) if isinstance(a, Speak))
    return texts
