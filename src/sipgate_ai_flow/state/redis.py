"""Redis state: for a flow served by several worker processes or hosts (extra ``[redis]``).

Every key of a call carries the session id as a hash tag (``aiflow:{id}:...``), so all of a call's
keys live on one Redis Cluster slot and the Lua scripts below stay atomic.

An event costs three round trips when its call's turn is free: ``begin``; drawing a ticket, which
also loads the record; and leaving the turn, which stores the record, notes what was delivered,
takes the outbox and passes the turn on in one script.

The turn lock is a ticket queue: each event draws the next ticket (``INCR``) and waits until the
previous holder passes it on with an ``RPUSH`` to the key its ticket waits on (``BLPOP``). That
grants turns strictly in arrival order across processes. A waiter that gives up (its task was
cancelled) marks its ticket skipped so the queue does not stall.

Every ticket also has a lease (``alive:N``) that the process owning it renews while the event
waits or runs. A new ticket, and a waiter whose wake-up is late, check the leases of the tickets
ahead: when none is alive, their process died (a killed worker), and the turn goes ahead at once
rather than after ``turn_timeout``, which now only bounds a live holder that is stuck. The turn
then tells the runtime that it was *orphaned*, so a caller still waiting for the dead turn's answer
is told.

A cancel (a stale turn, a hang-up) may land at any await. A command already on its way still
runs in Redis, so the commands that change the queue or the record are awaited to their end
before the cancel goes on (:func:`_finished`): a drawn ticket is always given back, a save always
lands before the turn passes on.

After a restart of Redis every pooled connection is stale: the pool checks a connection that
was idle for a while before using it, and a command that meets a dropped connection is sent again
on a new one (redis-py's ``Retry``, ``retry_on_error``, ``health_check_interval``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, TypeVar, cast

from sipgate_ai_flow.errors import StateError
from sipgate_ai_flow.state.base import (
    DEFAULT_TTL,
    CallRecord,
    Interrupt,
    InterruptListener,
    PostResult,
    Turn,
    dump_record,
    load_record,
)

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from redis.commands.core import AsyncScript

__all__ = ["RedisStore"]

logger = logging.getLogger("sipgate_ai_flow.state")

T = TypeVar("T")

# How often a command that met a dropped connection is sent again, and how long a pooled
# connection may sit idle before it is checked with a PING (seconds).
_RETRIES = 1
_HEALTH_CHECK_INTERVAL = 1

# KEYS: epoch, out, holds, playing, opening.
# ARGV: interrupt ('', 'spoke', 'always'), ttl ms, channel, session id, speech ended, opening.
_BEGIN = """
local epoch = tonumber(redis.call('GET', KEYS[1]) or '0')
if ARGV[5] == '1' and tonumber(redis.call('GET', KEYS[4]) or '0') > 0 then
  redis.call('DECR', KEYS[4])
end
if ARGV[1] ~= '' then
  redis.call('DEL', KEYS[3], KEYS[4])
  if ARGV[1] == 'always' or redis.call('EXISTS', KEYS[5]) == 0 then
    epoch = epoch + 1
    redis.call('DEL', KEYS[2], KEYS[5])
    redis.call('PUBLISH', ARGV[3], epoch .. ' ' .. ARGV[4])
  end
end
if ARGV[6] == '1' then redis.call('SET', KEYS[5], 1, 'PX', ARGV[2]) end
redis.call('SET', KEYS[1], epoch, 'PX', ARGV[2])
return epoch
"""

# KEYS: holds, playing. ARGV: ttl ms.
_ADD_HOLD = """
if tonumber(redis.call('GET', KEYS[2]) or '0') > 0 then return 0 end
redis.call('SET', KEYS[2], 1, 'PX', ARGV[1])
local holds = redis.call('INCR', KEYS[1])
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return holds
"""

# KEYS: holds, playing. ARGV: speeches, cut, ttl ms.
_DELIVERED = """
redis.call('DEL', KEYS[1])
if ARGV[2] == '1' then redis.call('DEL', KEYS[2]) end
if tonumber(ARGV[1]) > 0 then
  redis.call('INCRBY', KEYS[2], ARGV[1])
  redis.call('PEXPIRE', KEYS[2], ARGV[3])
end
"""

_POST = """
local epoch = redis.call('GET', KEYS[1])
if not epoch then return 'ended' end
if epoch ~= ARGV[1] then return 'stale' end
if #ARGV > 2 then
  redis.call('RPUSH', KEYS[2], unpack(ARGV, 3))
  redis.call('PEXPIRE', KEYS[2], ARGV[2])
end
return 'queued'
"""

# KEYS: out, opening.
_COLLECT = """
local items = redis.call('LRANGE', KEYS[1], 0, -1)
if #items > 0 then
  redis.call('DEL', KEYS[1])
  if redis.call('GET', KEYS[2]) == '2' then redis.call('DEL', KEYS[2]) end
end
return items
"""

# The session_start turn is over: the call stops opening, or once its queued output is collected.
# KEYS: out, opening. ARGV: ttl ms.
_OPENED = """
if redis.call('EXISTS', KEYS[1]) == 1 and redis.call('EXISTS', KEYS[2]) == 1 then
  redis.call('SET', KEYS[2], 2, 'PX', ARGV[1])
else
  redis.call('DEL', KEYS[2])
end
"""

# Draw a ticket and take out its lease; return it, the last ticket served, how long (ms) the
# longest live lease of a ticket between them still runs (0: none is alive), and, when ARGV[4] is
# '1' and the turn is free, the record (false: none, or not free).
# KEYS: ticket, served, rec. ARGV: ttl ms, prefix, lease ms, load.
_DRAW = """
local n = redis.call('INCR', KEYS[1])
redis.call('PEXPIRE', KEYS[1], ARGV[1])
redis.call('SET', ARGV[2] .. 'alive:' .. n, 1, 'PX', ARGV[3])
local served = tonumber(redis.call('GET', KEYS[2]) or '0')
local longest = 0
for t = served + 1, n - 1 do
  longest = math.max(longest, redis.call('PTTL', ARGV[2] .. 'alive:' .. t))
end
local record = false
if ARGV[4] == '1' and served >= n - 1 then record = redis.call('GET', KEYS[3]) end
return {n, served, longest, record}
"""

# For ticket ARGV[1]: -1 if its turn came, 0 if no ticket ahead of it has a live lease, else how
# long (ms) the longest live lease ahead still runs. KEYS: served. ARGV: ticket, prefix.
_AHEAD_ALIVE = """
local n = tonumber(ARGV[1])
local served = tonumber(redis.call('GET', KEYS[1]) or '0')
if served >= n - 1 then return -1 end
local longest = 0
for t = served + 1, n - 1 do
  longest = math.max(longest, redis.call('PTTL', ARGV[2] .. 'alive:' .. t))
end
return longest
"""

# Pass the turn on from ticket ARGV[1], past any skipped tickets (the end of _RELEASE and _LEAVE).
# KEYS[1]: served. ARGV: ticket, ttl ms, prefix, -, wake ttl ms.
_PASS_ON = """
redis.call('DEL', ARGV[3] .. 'alive:' .. n)
while redis.call('DEL', ARGV[3] .. 'skip:' .. (n + 1)) == 1 do n = n + 1 end
if n > served then redis.call('SET', KEYS[1], n, 'PX', ARGV[2]) end
local wake = ARGV[3] .. 'wake:' .. (n + 1)
redis.call('RPUSH', wake, 1)
redis.call('PEXPIRE', wake, ARGV[5])
"""

# Pass the turn on, or, when ARGV[4] is 'abandon' and the turn has not reached this ticket yet,
# mark it skipped. KEYS: served. ARGV: ticket, ttl ms, prefix, 'abandon' or 'release', wake ttl ms.
_RELEASE = (
    """
local n = tonumber(ARGV[1])
local served = tonumber(redis.call('GET', KEYS[1]) or '0')
if ARGV[4] == 'abandon' and served < n - 1 then
  redis.call('DEL', ARGV[3] .. 'alive:' .. n)
  redis.call('SET', ARGV[3] .. 'skip:' .. n, 1, 'PX', ARGV[2])
  return -1
end
"""
    + _PASS_ON
    + "return n\n"
)

# Leave the turn: store the record (ARGV[6], '' for none), take the outbox (ARGV[9] '1'), note the
# deliveries (ARGV[7] '1': ARGV[8] speeches, ARGV[10] '1' if cut) unless the outbox held
# something, and pass the turn on. Returns what the outbox held.
# KEYS: served, rec, holds, playing, out, opening. ARGV: ticket, ttl ms, prefix, -, wake ttl ms,
# record, note, speeches, collect, cut.
_LEAVE = (
    """
if ARGV[6] ~= '' then redis.call('SET', KEYS[2], ARGV[6], 'PX', ARGV[2]) end
local items = {}
if ARGV[9] == '1' then
  items = redis.call('LRANGE', KEYS[5], 0, -1)
  if #items > 0 then
    redis.call('DEL', KEYS[5])
    if redis.call('GET', KEYS[6]) == '2' then redis.call('DEL', KEYS[6]) end
  end
end
if ARGV[7] == '1' and #items == 0 then
  redis.call('DEL', KEYS[3])
  if ARGV[10] == '1' then redis.call('DEL', KEYS[4]) end
  if tonumber(ARGV[8]) > 0 then
    redis.call('INCRBY', KEYS[4], ARGV[8])
    redis.call('PEXPIRE', KEYS[4], ARGV[2])
  end
end
local n = tonumber(ARGV[1])
local served = tonumber(redis.call('GET', KEYS[1]) or '0')
"""
    + _PASS_ON
    + "return items\n"
)


async def _finished(aw: Awaitable[T]) -> tuple[T, asyncio.CancelledError | None]:
    """``aw``'s result, awaited to its end even when the caller is cancelled meanwhile; then also
    that cancel, for the caller to raise once it has cleaned up.

    A cancelled redis-py command may have reached Redis all the same, and its reply would be lost:
    a drawn ticket nobody gives back, or a save that lands after the turn passed on."""
    task = asyncio.ensure_future(aw)
    cancel: asyncio.CancelledError | None = None
    while not task.done():
        try:
            await asyncio.wait((task,))
        except asyncio.CancelledError as exc:
            cancel = exc
    if cancel is not None and (task.cancelled() or task.exception() is not None):
        raise cancel  # it failed, and the caller is going away anyway
    return task.result(), cancel


class RedisStore:
    """Keeps call data in Redis so any worker process can handle any event of a call.

    ``url`` is a ``redis://`` (or ``rediss://``, ``unix://``) URL; pass ``client`` to reuse a
    configured ``redis.asyncio.Redis`` instead. Keys start with ``prefix`` and expire ``ttl``
    seconds after a call's last event. A turn holder that does not finish within ``turn_timeout``
    seconds is taken to be stuck, and the next event goes ahead; one whose process died is noticed
    within about ``lease`` seconds.

    At most ``max_connections`` commands are in flight at once; more wait for a free connection
    rather than fail. Events waiting for their call's turn wait on connections of their own.
    """

    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379/0",
        *,
        ttl: float = DEFAULT_TTL,
        prefix: str = "aiflow:",
        turn_timeout: float = 120.0,
        lease: float = 2.0,
        max_connections: int = 100,
        client: Redis | None = None,
    ) -> None:
        if ttl <= 0 or turn_timeout <= 0 or lease <= 0 or max_connections <= 0:
            raise ValueError("ttl, turn_timeout, lease and max_connections must be positive")
        try:
            from redis.asyncio import BlockingConnectionPool, Redis  # noqa: PLC0415 - optional extra
        except ImportError:
            raise ImportError(
                "RedisStore needs the redis package: pip install 'sipgate-ai-flow[redis]'"
            ) from None
        # redis-py's default pool raises "Too many connections" past 100 commands in flight,
        # which a busy server reaches: a blocking pool queues them instead.
        if client is None:
            from redis import exceptions  # noqa: PLC0415
            from redis.asyncio.retry import Retry  # noqa: PLC0415
            from redis.backoff import ExponentialBackoff  # noqa: PLC0415

            pool = BlockingConnectionPool.from_url(
                url,
                max_connections=max_connections,
                timeout=None,
                retry=Retry(ExponentialBackoff(), _RETRIES),
                retry_on_error=[exceptions.ConnectionError, exceptions.TimeoutError],
                health_check_interval=_HEALTH_CHECK_INTERVAL,
            )
            client = Redis.from_pool(pool)  # the client owns the pool: aclose() closes it
        self.redis: Redis = client
        # BLPOP holds its connection while the call's previous event runs; in the commands' pool
        # such waiters could take every connection and starve the holder that would wake them.
        commands = client.connection_pool
        self._waits: Redis = Redis.from_pool(
            BlockingConnectionPool(
                connection_class=commands.connection_class,
                max_connections=max(1000, max_connections),
                timeout=None,
                **commands.connection_kwargs,
            )
        )
        self.ttl_ms = int(ttl * 1000)
        self.prefix = prefix
        self.turn_timeout = turn_timeout
        self.lease = lease
        self._leases: set[str] = set()  # alive:N keys of tickets this process holds or waits with
        self._renewer: asyncio.Task[None] | None = None
        self.channel = f"{prefix}interrupts"
        self._listeners: list[InterruptListener] = []
        self._reader: asyncio.Task[None] | None = None
        self._subscribing = asyncio.Lock()
        scripts = (
            _BEGIN,
            _POST,
            _COLLECT,
            _RELEASE,
            _ADD_HOLD,
            _DELIVERED,
            _DRAW,
            _AHEAD_ALIVE,
            _OPENED,
            _LEAVE,
        )
        registered: list[AsyncScript] = [self.redis.register_script(s) for s in scripts]
        self._begin, self._post, self._collect, self._release, self._add_hold = registered[:5]
        self._delivered, self._draw, self._ahead_alive, self._opened, self._leave = registered[5:]

    def __repr__(self) -> str:
        return f"RedisStore(prefix={self.prefix!r})"

    def _key(self, session_id: str, name: str) -> str:
        return f"{self.prefix}{{{session_id}}}:{name}"

    async def load(self, session_id: str) -> CallRecord | None:
        """The record of a live session, or ``None``."""
        text = await self.redis.get(self._key(session_id, "rec"))
        return None if text is None else load_record(text)

    async def save(self, session_id: str, record: CallRecord) -> None:
        """Store ``record`` for another TTL; a cancel meanwhile waits until it is stored."""
        text = dump_record(record)
        _, cancel = await _finished(self.redis.set(self._key(session_id, "rec"), text, px=self.ttl_ms))
        if cancel is not None:
            raise cancel

    async def delete(self, session_id: str) -> None:
        """Forget a session (its turn queue keys expire on their own)."""
        names = ("rec", "epoch", "out", "holds", "playing", "opening")
        await self.redis.delete(*(self._key(session_id, n) for n in names))

    @asynccontextmanager
    async def turn(self, session_id: str, *, load: bool = False) -> AsyncIterator[Turn]:
        """The call's turn, granted in ticket order across every process; ``orphaned`` when taken
        over from a turn whose process stopped renewing its lease. When the turn is free, the
        ticket comes with the record; leaving is one script."""
        base = self._key(session_id, "")
        lease_ms = int(self.lease * 1000)
        drawn, cancel = await _finished(
            self._draw(
                keys=[base + "ticket", base + "served", base + "rec"],
                args=[self.ttl_ms, base, lease_ms, int(load)],
            )
        )
        ticket, served, ahead, text = drawn
        lease = f"{base}alive:{ticket}"
        self._leases.add(lease)
        if self._renewer is None:
            self._renewer = asyncio.create_task(self._renew_leases())
        try:
            try:
                if cancel is not None:
                    raise cancel
                orphaned = served < ticket - 1 and ahead <= 0
                if orphaned:
                    self._log_orphaned(session_id, ticket)
                elif served < ticket - 1:
                    orphaned = await self._wait_for_turn(session_id, base, ticket, ahead)
            except BaseException:
                # Cancelled or failed before the turn came: step out of the queue without stalling
                # those behind (a second cancel must not stop that either).
                with contextlib.suppress(Exception):
                    await _finished(self._pass_turn(base, ticket, abandon=True))
                raise
            turn = Turn(orphaned=orphaned)
            try:
                if load:
                    if served < ticket - 1:  # the ticket did not come with the record
                        text = await self.redis.get(base + "rec")
                    turn.record = None if text is None else load_record(text)
                yield turn
            except BaseException:
                await self._leave_turn(base, ticket, turn, failed=True)
                raise
            await self._leave_turn(base, ticket, turn, failed=False)
        finally:
            self._leases.discard(lease)

    async def _leave_turn(self, base: str, ticket: int, turn: Turn, *, failed: bool) -> None:
        # What the holder asked for, and the turn passed on, in one script. State that is not
        # JSON is not stored; the error is raised once the turn passed on, unless the turn is
        # ending with another exception already.
        text = ""
        error: StateError | None = None
        if turn.save and turn.record is not None:
            try:
                text = dump_record(turn.record)
            except StateError as exc:
                error = exc
        if error is not None:
            _, cancel = await _finished(self._pass_turn(base, ticket, abandon=False))
        else:
            keys = [base + n for n in ("served", "rec", "holds", "playing", "out", "opening")]
            args: list[str | int] = [
                ticket,
                self.ttl_ms,
                base,
                "",
                int(self.turn_timeout * 1000),
                text,
                int(turn.noted),
                turn.speeches,
                int(turn.collect),
                int(turn.cut),
            ]
            items, cancel = await _finished(self._leave(keys=keys, args=args))
            if turn.collect:
                turn.collected = [item.decode() for item in items]
        if cancel is not None:
            raise cancel
        if error is not None and not failed:
            raise error

    async def _wait_for_turn(self, session_id: str, base: str, ticket: int, ahead: int) -> bool:
        # True when the turn was orphaned, False when it came or the holder overran turn_timeout.
        # Until woken, look again when the longest lease ahead would run out unless renewed.
        loop = asyncio.get_running_loop()
        give_up = loop.time() + self.turn_timeout
        while True:
            wait = min(ahead / 1000 + 0.01, give_up - loop.time())
            if wait <= 0:
                logger.warning(
                    "session %s: the previous event held its turn for over %g s; going ahead",
                    session_id,
                    self.turn_timeout,
                )
                return False
            if await self._waits.blpop([f"{base}wake:{ticket}"], timeout=wait) is not None:
                return False
            ahead = await self._ahead_alive(keys=[base + "served"], args=[ticket, base])
            if ahead < 0:
                return False  # the wake-up came just after the wait
            if ahead == 0:
                self._log_orphaned(session_id, ticket)
                return True

    @staticmethod
    def _log_orphaned(session_id: str, ticket: int) -> None:
        logger.warning(
            "session %s: no event ahead of turn %d has a live lease (the process handling it died "
            "or lost Redis); going ahead",
            session_id,
            ticket,
        )

    async def _renew_leases(self) -> None:
        from redis.exceptions import RedisError  # noqa: PLC0415

        lease_ms = int(self.lease * 1000)
        while True:
            await asyncio.sleep(self.lease / 3)
            if not self._leases:
                continue
            try:
                async with self.redis.pipeline(transaction=False) as pipe:
                    for key in list(self._leases):
                        pipe.pexpire(key, lease_ms)
                    await pipe.execute()
            except (RedisError, OSError) as exc:
                logger.warning("could not renew the turn leases in Redis (%s)", exc)

    async def _pass_turn(self, base: str, ticket: int, *, abandon: bool) -> None:
        args: list[str | int] = [
            ticket,
            self.ttl_ms,
            base,
            "abandon" if abandon else "release",
            int(self.turn_timeout * 1000),
        ]
        await self._release(keys=[base + "served"], args=args)

    async def begin(
        self,
        session_id: str,
        *,
        interrupt: Interrupt | None = None,
        speech_ended: bool = False,
        opening: bool = False,
    ) -> int:
        """Mark the call live; with ``interrupt``, advance its epoch and tell every process."""
        keys = [self._key(session_id, n) for n in ("epoch", "out", "holds", "playing", "opening")]
        args: list[str | int] = [
            interrupt or "",
            self.ttl_ms,
            self.channel,
            session_id,
            int(speech_ended),
            int(opening),
        ]
        return int(await self._begin(keys=keys, args=args))

    async def opened(self, session_id: str) -> None:
        """End the opening, or, if output is queued, when it is collected."""
        keys = [self._key(session_id, "out"), self._key(session_id, "opening")]
        await self._opened(keys=keys, args=[self.ttl_ms])

    async def epoch(self, session_id: str) -> int | None:
        """The call's epoch, or ``None`` when it is not live."""
        value = await self.redis.get(self._key(session_id, "epoch"))
        return None if value is None else int(value)

    async def post(self, session_id: str, epoch: int, payloads: list[str]) -> PostResult:
        """Queue ``payloads`` unless ``epoch`` is stale or the call ended."""
        keys = [self._key(session_id, "epoch"), self._key(session_id, "out")]
        result = await self._post(keys=keys, args=[epoch, self.ttl_ms, *payloads])
        return cast("PostResult", result.decode() if isinstance(result, bytes) else result)

    async def collect(self, session_id: str) -> list[str]:
        """Take every queued payload."""
        keys = [self._key(session_id, "out"), self._key(session_id, "opening")]
        items: list[bytes] = await self._collect(keys=keys)
        return [item.decode() for item in items]

    async def delivered(self, session_id: str, speeches: int, *, cut: bool = False) -> None:
        """Note an answer that went out."""
        keys = [self._key(session_id, "holds"), self._key(session_id, "playing")]
        await self._delivered(keys=keys, args=[speeches, int(cut), self.ttl_ms])

    async def holds(self, session_id: str) -> int:
        """Holds given in a row since the last answer."""
        return int(await self.redis.get(self._key(session_id, "holds")) or 0)

    async def add_hold(self, session_id: str) -> int:
        """Count a hold if nothing is playing."""
        keys = [self._key(session_id, "holds"), self._key(session_id, "playing")]
        return int(await self._add_hold(keys=keys, args=[self.ttl_ms]))

    async def listen(self, listener: InterruptListener) -> None:
        """Call ``listener`` on every interrupt published by any process (Redis pub/sub)."""
        if listener not in self._listeners:
            self._listeners.append(listener)
        # The first events of a cold server all ask at once: one subscription, not one each
        # (each holds a pooled connection for good; a hundred of them once starved the pool).
        async with self._subscribing:
            if self._reader is None:
                pubsub = await self._subscribe()
                self._reader = asyncio.create_task(self._read(pubsub))

    async def _subscribe(self) -> Any:
        pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
        await pubsub.subscribe(self.channel)
        return pubsub

    async def _read(self, pubsub: Any) -> None:
        from redis.exceptions import RedisError  # noqa: PLC0415

        while True:
            try:
                async for message in pubsub.listen():
                    self._tell(message["data"].decode())
            except (RedisError, OSError) as exc:
                # Without the subscription, stale turns here would run on: get it back.
                logger.warning("lost the Redis subscription for interrupts (%s); subscribing again", exc)
                with contextlib.suppress(Exception):
                    await pubsub.aclose()
                while True:
                    await asyncio.sleep(1.0)
                    try:
                        pubsub = await self._subscribe()
                        break
                    except (RedisError, OSError):
                        continue
            except asyncio.CancelledError:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()
                raise

    def _tell(self, data: str) -> None:
        epoch, _, session_id = data.partition(" ")
        for listener in self._listeners:
            try:
                listener(session_id, int(epoch))
            except Exception:
                logger.exception("an interrupt listener failed for session %s", session_id)

    async def close(self) -> None:
        """Stop listening and close the connections."""
        if self._renewer is not None:
            self._renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._renewer
            self._renewer = None
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
            self._reader = None
        await self._waits.aclose()
        await self.redis.aclose()
