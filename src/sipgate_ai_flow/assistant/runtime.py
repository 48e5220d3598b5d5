"""The deadline runtime: budgets, holds, streaming, stale turns and per-call order.

Each event becomes a *turn*: a task that waits for the call's turn lock (so the events of a call
run one at a time, in arrival order), runs the handler and delivers what it yields. The event's
reply does not wait for the turn beyond the budget:

- **live** calls (WebSocket) get every action through their sender the moment it exists;
- **webhook** calls get, at the latest when the budget runs out, what was queued for them by
  earlier turns plus what this turn produced so far; later output is queued in the store for
  the next reply (the service's async-hold pattern).

If the budget runs out and the caller hears nothing (nothing sent, nothing playing), the hold
action goes out; after ``max_holds`` holds in a row the give-up action does, and the late turn
is dropped. A ``user_speak`` advances the call's *epoch*: older turns are cancelled, in every
process, and whatever they had not delivered is dropped. While the ``session_start`` turn runs,
the call is *opening* and the caller's words do not advance the epoch: the greeting is never lost.
The service's reports on playback (``assistant_speak``, ``assistant_speech_ended``,
``user_speech_started``) reach their handlers even when a newer ``user_speak`` came first: what the
caller heard of a cut-off answer is known only from them. Their output is stale like any other.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any

from sipgate_ai_flow.assistant import eager
from sipgate_ai_flow.assistant.call import Call
from sipgate_ai_flow.assistant.handlers import UNSET, Handler, each
from sipgate_ai_flow.assistant.replies import Reply, to_actions
from sipgate_ai_flow.errors import CallEndedError
from sipgate_ai_flow.protocol.actions import Action, Audio, BargeIn, Speak
from sipgate_ai_flow.protocol.codec import parse_action
from sipgate_ai_flow.protocol.events import (
    AssistantSpeak,
    AssistantSpeechEnded,
    EventBase,
    SessionEnd,
    SessionStart,
    UserSpeak,
    UserSpeechStarted,
)
from sipgate_ai_flow.state.base import CallRecord, SessionStore, Turn

if TYPE_CHECKING:
    from sipgate_ai_flow.assistant.assistant import Assistant

__all__ = ["HOLD_POINTS", "REPORTS", "Replier", "Runtime", "Sender"]

logger = logging.getLogger("sipgate_ai_flow")

Sender = Callable[[list[Action]], Awaitable[None]]
"""Delivers actions to a live call at once (the WebSocket's send)."""

Replier = Callable[[list[Action]], Awaitable[None]]
"""Sends the one reply to a webhook event."""

HOLD_POINTS = frozenset(
    {
        "session_start",
        "user_speak",
        "dtmf_received",
        "assistant_speech_ended",
        "user_input_timeout",
        "sms_failed",
    }
)
"""Events after which a caller waits for an answer: a slow turn there earns a hold."""
REPORTS = (AssistantSpeak, AssistantSpeechEnded, UserSpeechStarted)
"""Events that report what the caller heard: their handlers run even once the caller moved on."""

# The events the runtime treats apart, by class: a dict lookup per event instead of isinstance
# checks against pydantic's model classes, which are slow. Subclasses are looked up once each.
_KINDS: dict[type, str] = {
    SessionStart: "session_start",
    SessionEnd: "session_end",
    UserSpeak: "user_speak",
    AssistantSpeechEnded: "assistant_speech_ended",
    AssistantSpeak: "report",
    UserSpeechStarted: "user_speech_started",
}

_REPORT_KINDS = frozenset({"report", "assistant_speech_ended", "user_speech_started"})

# A line without a turn in flight that has seen no event for this long is forgotten (its call's
# session_end may never come); it is made again, as good as new, if the call has another event.
_LINE_IDLE = 300.0


def _kind(event: EventBase) -> str:
    kind = _KINDS.get(type(event))
    if kind is None:
        kind = next((k for cls, k in _KINDS.items() if isinstance(event, cls)), "other")
        if len(_KINDS) < 64:  # a bound, in case classes are made on the fly
            _KINDS[type(event)] = kind
    return kind


def _wait_time(budget: float) -> float:
    # The reply must be sent within the budget, not just decided: leave room to encode and send.
    return budget - min(0.05, budget / 10)


class _Line:
    """This process's view of one call, kept from its first event to its end (or until idle)."""

    __slots__ = ("ended", "epoch", "sender", "sent", "tasks", "touched")

    def __init__(self, now: float) -> None:
        self.sender: Sender | None = None
        self.sent = 0  # deliveries to the live sender, to tell whether a turn said something
        self.tasks: dict[asyncio.Task[Any], _Job] = {}  # the tasks running its waiting turns
        self.epoch = 0
        self.ended = False
        self.touched = now  # time.monotonic() of its last event


class _Job:
    """One turn: its event, and where the actions it produces go."""

    __slots__ = (
        "attached",
        "collected",
        "epoch",
        "event",
        "final",
        "handler",
        "items",
        "kind",
        "late",
        "line",
        "noted",
        "observed",
        "reply",
        "report",
        "runtime",
        "sent",
        "sent_before",
        "session",
        "stale",
        "started",
        "task",
        "timer",
        "traced",
        "turn",
        "waits",
    )

    def __init__(
        self,
        runtime: Runtime,
        line: _Line,
        event: EventBase,
        kind: str,
        handler: Handler | None,
        *,
        epoch: int,
        started: float,
        reply: Replier | None = None,
        waits: Callable[[], None] | None = None,
    ) -> None:
        self.runtime = runtime
        self.line = line
        self.event = event
        self.kind = kind
        self.session = event.session
        self.handler = handler
        self.epoch = epoch
        self.started = started
        self.reply = reply
        self.waits = waits
        self.attached = line.sender is None  # a webhook reply is still waiting for our output
        self.items: list[Action] = []
        self.sent = False  # whether output left for the caller (live) or the store (webhook)
        self.sent_before = line.sent
        self.stale = False  # cancelled because a newer turn took over
        self.report = kind in _REPORT_KINDS
        self.task: asyncio.Task[Any] | None = None  # the task running the turn, once it waits
        self.timer: asyncio.TimerHandle | None = None  # its budget
        self.late: asyncio.Task[None] | None = None  # the reply made when the budget ran out
        self.turn: Turn | None = None  # the store's turn, while the job holds it
        self.final = False  # the handler has returned: its last delivery is noted on leaving the turn
        self.collected: list[str] | None = None  # the outbox, if leaving the turn took it
        self.noted = 0  # how many of `items` leaving the turn noted as delivered
        self.observed: Any = None  # the observer's (see assistant/observer.py)
        self.traced: Any = None

    def waiting(self) -> None:
        """The turn waits for something (see :func:`eager.inline`)."""
        self.runtime._waiting(self)

    @property
    def ended(self) -> bool:
        return self.line.ended

    async def send(self, reply: Reply) -> None:
        await self.runtime.deliver(self, to_actions(reply, self.session), strict=True)


class Runtime:
    """Runs an assistant's handlers under the deadline rules; one per :class:`Assistant`."""

    def __init__(self, assistant: Assistant) -> None:
        self.assistant = assistant
        self._lines: dict[str, _Line] = {}
        self._next_sweep = time.monotonic() + _LINE_IDLE
        self._tasks: set[asyncio.Task[Any]] = set()  # tasks running waiting turns, late replies
        self._listening: SessionStore | None = None

    @property
    def store(self) -> SessionStore:
        return self.assistant.store

    # -- one event ----------------------------------------------------------------------------

    async def handle(self, event: EventBase, sender: Sender | None) -> list[Action]:
        """Handle ``event`` with its turn in a task of its own; return the webhook reply (empty
        for a live call). Raises what fails outside the handlers."""
        job = await self._begin(event, None, sender, None)
        if job is None:
            return []
        task = eager.start(self._turn(job))
        if task.done():
            actions = [] if sender is not None else await self._conclude(job, True)
            self._ended(job)
            return actions
        self._register(job, task)
        task.add_done_callback(lambda _: self._unregister(job, task))
        if sender is not None:
            self._time(job)  # the hold goes out from the timer, through the sender
            task.add_done_callback(lambda _: self._ended(job))
            return []
        await asyncio.wait({task}, timeout=self._due(job) - time.monotonic())
        done = task.done()
        actions = await self._conclude(job, done)
        if done:
            self._ended(job)
        else:
            task.add_done_callback(lambda _: self._ended(job))
        return actions

    async def serve(
        self,
        event: EventBase,
        *,
        reply: Replier | None = None,
        sender: Sender | None = None,
        waits: Callable[[], None] | None = None,
    ) -> None:
        """Handle ``event`` in the calling task.

        The task must be free to run the turn to its end: a webhook request's own task, or a
        reader that hands its reading on when ``waits()`` is called (the turn waits for
        something). ``reply`` gets the webhook reply exactly once, within the budget, while a
        slow turn runs on; a live call (``sender``) gets everything through ``sender``. Whatever
        fails here, the call hears the fallback.
        """
        replied = False
        job: _Job | None = None
        try:
            job = await self._begin(event, reply, sender, waits)
            if job is None:  # session_end: the cleanup ran
                if reply is not None:
                    replied = True
                    await reply([])
                return
            await self._run_turn(job)
            if job.late is not None:  # the budget ran out: the reply went, or goes, from there
                await job.late
                return
            if reply is not None:
                actions = await self._conclude(job, True)
                replied = True
                await reply(actions)
            elif job.line.sender is None:
                await self._conclude(job, True)  # e.g. a session_start before the call went live
        except Exception:
            self.assistant.observer.error("server")
            logger.exception("handling %s failed in session %s", event.type, event.session.id)
            fallback = self.assistant.fallback_actions(event)
            late_replied = job is not None and job.late is not None and job.reply is None
            if reply is not None and not replied and not late_replied:
                await reply(fallback)
            elif sender is not None and fallback and not (job is not None and job.sent):
                await sender(fallback)  # unless the caller heard the answer (e.g. the hold failed)
        finally:
            if job is not None:
                self._ended(job)

    async def _begin(
        self, event: EventBase, reply: Replier | None, sender: Sender | None, waits: Callable[[], None] | None
    ) -> _Job | None:
        # The event's mark in the store, and its turn's outlet; None once a session_end is done.
        assistant = self.assistant
        store = self.store
        started = time.monotonic()
        if self._listening is not store:
            await store.listen(self._interrupted)
            self._listening = store
        session_id = event.session.id
        line = self._lines.get(session_id)
        if line is None:
            line = self._line(session_id, started)
        line.touched = started
        if sender is not None:
            line.sender = sender
        assistant.observer.event(event.type)
        kind = _KINDS.get(type(event)) or _kind(event)
        if kind == "session_end":
            await self._end(event, line)  # type: ignore[arg-type]
            return None
        spoke = kind == "user_speak"
        epoch = await store.begin(
            session_id,
            interrupt="spoke" if spoke else None,
            speech_ended=kind == "assistant_speech_ended",
            opening=kind == "session_start",
        )
        if spoke:
            self._interrupted(session_id, epoch)
        line.epoch = max(line.epoch, epoch)
        handler = assistant.route(event)
        job = _Job(self, line, event, kind, handler, epoch=epoch, started=started, reply=reply, waits=waits)
        assistant.observer.turn_began(job)
        return job

    def _line(self, session_id: str, now: float) -> _Line:
        # A call's first event here (or its first after its line was swept). Lines of calls whose
        # session_end never came are swept once idle, at most once per _LINE_IDLE.
        if now >= self._next_sweep:
            self._next_sweep = now + _LINE_IDLE
            idle = now - _LINE_IDLE
            for key in [k for k, v in self._lines.items() if v.touched < idle and not v.tasks]:
                del self._lines[key]
        line = self._lines[session_id] = _Line(now)
        return line

    async def _run_turn(self, job: _Job) -> None:
        # Most turns finish in their first step: only a turn that waits is registered and timed.
        try:
            await eager.inline(self._turn(job), job.waiting)
        except asyncio.CancelledError:
            if not job.stale:
                raise
        finally:
            task = job.task
            if task is not None:
                self._unregister(job, task)
                if job.stale:
                    task.uncancel()  # our cancel ended the turn, not the task

    def _waiting(self, job: _Job) -> None:
        # The turn waits: from now on it can be cancelled as stale and its budget is watched.
        task = asyncio.current_task()
        assert task is not None
        self._register(job, task)
        if job.waits is not None:
            job.waits()
        self._time(job)

    def _register(self, job: _Job, task: asyncio.Task[Any]) -> None:
        job.task = task
        job.line.tasks[task] = job
        self._tasks.add(task)

    def _unregister(self, job: _Job, task: asyncio.Task[Any]) -> None:
        job.line.tasks.pop(task, None)
        self._tasks.discard(task)
        if job.timer is not None:
            job.timer.cancel()

    def _due(self, job: _Job) -> float:
        # When the turn's reply must be on its way (time.monotonic).
        handler = job.handler
        budget = handler.budget if handler and handler.budget is not None else self.assistant.budget
        return job.started + _wait_time(budget)

    def _time(self, job: _Job) -> None:
        # When the budget runs out, _overdue makes the reply or the hold.
        delay = self._due(job) - time.monotonic()
        job.timer = asyncio.get_running_loop().call_later(delay, self._overdue, job)

    def _overdue(self, job: _Job) -> None:
        job.timer = None
        late = job.late = eager.start(self._late(job))
        if not late.done():
            self._tasks.add(late)
            late.add_done_callback(self._tasks.discard)

    async def _late(self, job: _Job) -> None:
        # The budget ran out with the turn still running: the reply so far, or a hold.
        actions = await self._conclude(job, False)
        if job.reply is not None:
            reply, job.reply = job.reply, None  # serve's fallback must not reply a second time
            await reply(actions)

    async def _conclude(self, job: _Job, finished: bool) -> list[Action]:
        # The turn finished, or its budget ran out: the webhook reply, and a hold if one is due.
        store = self.store
        session_id = job.session.id
        job.attached = False
        if job.line.sender is None:
            queued, job.collected = job.collected, None
            if queued is None:
                queued = await store.collect(session_id)
                job.noted = 0
            items = job.items
            if queued:
                actions = [parse_action(p) for p in queued] + items
                await self._delivered(session_id, actions)  # leaving the turn left it to us
                self.assistant.observer.turn_delivered_late(job, len(queued))
                if items:
                    self.assistant.observer.turn_sent(job)
                return actions
            if items:
                if job.noted < len(items):  # delivered after the turn was left, or not left yet
                    await self._delivered(session_id, items[job.noted :])
                self.assistant.observer.turn_sent(job)
                return items
        if finished:
            return []
        handler = job.handler
        self.assistant.observer.overrun(handler.name if handler else "none")
        self.assistant.observer.turn_overdue(job)
        if job.event.type not in HOLD_POINTS or job.line.sent != job.sent_before:
            return []  # nobody waits here, or the caller has just been told something
        if await store.epoch(session_id) != job.epoch:
            return []  # a newer turn took over
        return await self._hold(job, handler)

    async def _hold(self, job: _Job, handler: Handler | None) -> list[Action]:
        assistant = self.assistant
        session_id = job.session.id
        hold = handler.hold if handler is not None and handler.hold is not UNSET else assistant.hold
        made = assistant.holds if hold is assistant.hold else None
        actions = to_actions(hold, job.session)
        if not actions and made is None:
            return []  # holds are switched off: the answer comes when it comes
        count = await self.store.add_hold(session_id)
        if not count:
            return []  # something is still playing; the caller is not waiting in silence
        if made is not None and count <= assistant.max_holds:
            # Made for this call: its state as the last finished turn stored it (read only).
            record = await self.store.load(session_id) or CallRecord()
            actions = to_actions(made(Call(job.session, record.state), count), job.session)
        if count > assistant.max_holds:
            assistant.observer.give_up()
            logger.warning("session %s: no answer after %d holds; giving up", session_id, count - 1)
            epoch = await self.store.begin(session_id, interrupt="always")  # drop the late answer
            self._interrupted(session_id, epoch)
            actions = to_actions(assistant.give_up, job.session)
            await self._delivered(session_id, actions)
            assistant.observer.turn_held(job, gave_up=True)
        else:
            assistant.observer.hold()  # add_hold counted it as playing
            assistant.observer.turn_held(job, gave_up=False)
        if job.line.sender is not None:
            await job.line.sender(actions)
            return []
        return actions

    # -- turns --------------------------------------------------------------------------------

    async def _turn(self, job: _Job) -> None:
        # The turn in one step where it can be: taking the call's turn loads the state, leaving
        # it stores the state, notes what was delivered and, for a webhook, takes the outbox.
        event = job.event
        handler = job.handler
        opening = job.kind == "session_start"
        stateful = opening or (handler is not None and handler.wants_call)
        leaving = False
        try:
            async with self.store.turn(job.session.id, load=stateful) as turn:
                stale = job.epoch < job.line.epoch
                if stale and not job.report:
                    return  # the caller spoke again while this event waited
                if turn.orphaned and not stale:
                    await self._orphaned(job)
                job.turn = turn
                try:
                    if stateful:
                        await self._stateful_turn(job, handler, turn, opening)
                    elif handler is not None:
                        # The handler cannot reach call.state: no state to load or store.
                        await self._run(handler, event, None, job)
                finally:
                    job.turn = None
                if job.attached and job.late is None and job.line.sender is None:
                    # The webhook reply follows at once: it takes the outbox as the turn ends.
                    turn.collect = True
                    if job.items:
                        speeches, cut = _counts(job.items)
                        turn.note(speeches, cut=cut)
                        job.noted = len(job.items)
                leaving = True
            if turn.collect:
                job.collected = turn.collected
        except Exception:
            # The store failed (or held state that is not JSON): an answer not yet given rests on
            # state that is now lost, so the call hears the fallback instead.
            self.assistant.observer.error("state")
            self.assistant.observer.turn_failed(job)
            if leaving and job.sent and job.line.sender is not None:
                logger.exception(
                    "session %s: could not note an answer in the store (nor store the call state); "
                    "it was sent",
                    job.session.id,
                )
            else:
                logger.exception("session %s: the call state could not be loaded or stored", job.session.id)
            job.items.clear()
            job.collected = None
            if not job.sent:
                await self.deliver(job, self.assistant.fallback_actions(event))

    async def _orphaned(self, job: _Job) -> None:
        # A turn before this one died with its worker. If the caller is on hold for an answer from
        # before this event, it never comes: give up on it now rather than hold on in silence.
        # New words are different: the holds since are for their answer, which this turn makes.
        session_id = job.session.id
        if job.kind == "user_speak":
            return
        holds = await self.store.holds(session_id)
        if not holds:
            return
        assistant = self.assistant
        assistant.observer.give_up()
        logger.warning(
            "session %s: the answer after %d holds was lost with its worker; giving up", session_id, holds
        )
        epoch = job.epoch = await self.store.begin(session_id, interrupt="always")  # in case it lives
        self._interrupted(session_id, epoch)
        await self.deliver(job, to_actions(assistant.give_up, job.session))

    async def _stateful_turn(self, job: _Job, handler: Handler | None, turn: Turn, opening: bool) -> None:
        event = job.event
        record = turn.record
        if record is None:
            record = turn.record = CallRecord()
        if opening:
            record.starts += 1
            if record.starts == 1:
                self.assistant.observer.call_started()
        call = Call(event.session, record.state, is_return=record.starts > 1, outlet=job)
        # Stored on leaving the turn, also when cancelled: what the handler stored before the
        # caller moved on (e.g. their words) is kept, and lands before the next turn may load.
        turn.save = True
        try:
            if handler is not None:
                await self._run(handler, event, call, job)
        except asyncio.CancelledError:
            raise
        except Exception:
            turn.save = False  # the store failed: the answer is not given, its state not kept
            raise
        finally:
            if opening:
                # From now on the caller's words cancel what is still being worked on.
                await self.store.opened(job.session.id)

    async def _run(self, handler: Handler, event: EventBase, call: Call | None, job: _Job) -> None:
        started = time.perf_counter()
        self.assistant.observer.turn_running(job)
        try:
            # Most handlers return one reply: it goes out without an async generator per turn.
            reply = await handler.reply(event, call)
            if reply is None or type(reply) is str or not isinstance(reply, AsyncIterator):
                job.final = True
                if reply is not None and job.kind != "user_speech_started":
                    await self.deliver(job, to_actions(reply, job.session))
                else:
                    await self._emit(reply, job)
            else:
                async for item in each(reply):
                    await self._emit(item, job)
        except Exception:
            # A crash must not become silence or a 500: log it and say the fallback.
            self.assistant.observer.error("handler")
            self.assistant.observer.turn_failed(job)
            logger.exception(
                "%s handler failed in session %s; sending the fallback", handler.name, event.session.id
            )
            job.final = True
            await self.deliver(job, self.assistant.fallback_actions(event))
        finally:
            self.assistant.observer.handled(handler.name, time.perf_counter() - started)
            self.assistant.observer.turn_handled(job)

    async def _emit(self, item: Reply, job: _Job) -> None:
        actions = to_actions(item, job.session)
        if actions and job.kind == "user_speech_started":
            self.assistant.warn_once(
                "user_speech_started",
                "the user_speech_started handler returned actions; the service ignores them, "
                "so they are not sent (D11)",
            )
            return
        await self.deliver(job, actions)

    async def _end(self, event: SessionEnd, line: _Line) -> None:
        session_id = event.session.id
        try:
            epoch = await self.store.begin(session_id, interrupt="always")  # cancel every turn, everywhere
            self._interrupted(session_id, epoch)
            line.ended = True
            await self._last_turn(event, line, epoch)
        finally:
            if self._lines.get(session_id) is line:
                del self._lines[session_id]

    async def _last_turn(self, event: SessionEnd, line: _Line, epoch: int) -> None:
        session_id = event.session.id
        handler = self.assistant.route(event)
        job = _Job(self, line, event, "session_end", handler, epoch=epoch, started=time.monotonic())
        started = False
        async with self.store.turn(session_id):
            try:
                # Loaded apart from taking the turn: a store that cannot load still forgets the call.
                record = await self.store.load(session_id) or CallRecord()
                started = record.starts > 0
                if handler is not None:
                    call = Call(event.session, record.state, is_return=record.starts > 1, outlet=job)
                    async for item in handler.stream(event, call):
                        if item is not None:
                            self.assistant.warn_once(
                                "session_end",
                                "the session_end handler returned a reply; no action may follow "
                                "session_end, so it is ignored (D12)",
                            )
            except Exception:
                self.assistant.observer.error("handler")
                name = handler.name if handler else "session_end"
                logger.exception("%s handler failed in session %s", name, session_id)
            finally:
                await self.store.delete(session_id)
        if started:
            self.assistant.observer.call_ended()
        self.assistant.observer.call_finished(event)

    # -- delivery -----------------------------------------------------------------------------

    async def deliver(self, job: _Job, actions: list[Action], *, strict: bool = False) -> None:
        """Send ``actions`` of ``job``'s turn where they go now; drop them if the turn is stale."""
        if not actions:
            return
        line = job.line
        session_id = job.session.id
        if line.ended:
            if strict:
                raise CallEndedError(f"call {session_id} has ended; nothing more can be sent")
            return
        if job.epoch < line.epoch:
            logger.debug("session %s: dropped %d stale actions", session_id, len(actions))
            return
        if line.sender is not None:
            job.sent = True
            line.sent += 1
            turn = job.turn
            if job.final and turn is not None:
                # The turn's last answer: noted as the turn ends, in the same store call.
                speeches, cut = _counts(actions)
                turn.note(speeches, cut=cut)
            else:
                try:
                    await self._delivered(session_id, actions)
                except Exception:
                    # The answer exists: the caller hears it even if the store cannot note it.
                    self.assistant.observer.error("state")
                    logger.exception(
                        "session %s: could not note an answer in the store; sending it", session_id
                    )
            await line.sender(actions)
            self.assistant.observer.turn_sent(job)
        elif job.attached:
            job.items.extend(actions)
        else:
            payloads = [a.model_dump_json(exclude_none=True) for a in actions]
            result = await self.store.post(session_id, job.epoch, payloads)
            job.sent = True
            if result == "queued":
                self.assistant.observer.turn_queued(job)
                return
            if result == "ended" and strict:
                raise CallEndedError(f"call {session_id} has ended; nothing more can be sent")
            logger.debug("session %s: dropped %d %s actions", session_id, len(actions), result)

    async def _delivered(self, session_id: str, actions: list[Action]) -> None:
        speeches, cut = _counts(actions)
        await self.store.delivered(session_id, speeches, cut=cut)

    def _ended(self, job: _Job) -> None:
        # The turn is over and its reply went: the observer's last word on it.
        stale = job.stale or job.epoch < job.line.epoch or job.line.ended
        self.assistant.observer.turn_ended(job, stale=stale)

    def _interrupted(self, session_id: str, epoch: int) -> None:
        # Called here and, through the store, for interrupts made by other processes.
        line = self._lines.get(session_id)
        if line is None:
            return
        line.epoch = max(line.epoch, epoch)
        if not line.tasks:
            return  # no turn of this call waits: most calls, most of the time
        for task, job in list(line.tasks.items()):
            if job.epoch < epoch and not job.stale and not job.report:
                job.stale = True
                task.cancel()

    # -- lifecycle ----------------------------------------------------------------------------

    async def drain(self, grace: float) -> None:
        """Let running turns finish for up to ``grace`` seconds, cancel the rest."""
        if self._tasks:
            _, pending = await asyncio.wait(set(self._tasks), timeout=grace)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)


def _counts(actions: list[Action]) -> tuple[int, bool]:
    # What an answer means for what plays: how many speeches it starts, whether it cuts others off.
    speeches = 0
    cut = False
    for action in actions:
        kind = type(action)
        if kind is Speak or kind is Audio:
            speeches += 1
        elif kind is BargeIn:
            cut = True
        elif isinstance(action, Speak | Audio):
            speeches += 1
        elif isinstance(action, BargeIn):
            cut = True
    return speeches, cut
