"""One contract, every backend: what the runtime relies on from a SessionStore.

Each test gets two handles on one backend, as two worker processes would have: for memory the
same store twice, for Redis two clients of one real redis-server.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from sipgate_ai_flow import Action, Assistant, Call, MemoryStore, SessionStore, StateError, UserSpeak
from sipgate_ai_flow.protocol import parse_event
from sipgate_ai_flow.state import CallRecord, RedisStore
from tests.helpers import event, free_port, redis_server

Pair = tuple[SessionStore, SessionStore]
MakePair = Callable[..., Pair]


@pytest.fixture(params=["memory", "redis"])
async def make_pair(request: pytest.FixtureRequest) -> AsyncIterator[MakePair]:
    made: list[SessionStore] = []

    def factory(ttl: float = 60.0) -> Pair:
        if request.param == "memory":
            store = MemoryStore(ttl=ttl)
            made.append(store)
            return store, store
        url = request.getfixturevalue("redis_url")
        prefix = f"test-{uuid.uuid4().hex[:8]}:"
        pair = (RedisStore(url, ttl=ttl, prefix=prefix), RedisStore(url, ttl=ttl, prefix=prefix))
        made.extend(pair)
        return pair

    yield factory
    for store in made:
        await store.close()


@pytest.fixture
def pair(make_pair: MakePair) -> Pair:
    return make_pair()


async def test_records_round_trip_and_are_copies(pair: Pair) -> None:
    a, b = pair
    assert await a.load("s") is None
    await a.save("s", CallRecord(state={"n": 1, "items": ["x", {"y": None}], "f": 1.5}, starts=2))
    loaded = await b.load("s")
    assert loaded == CallRecord(state={"n": 1, "items": ["x", {"y": None}], "f": 1.5}, starts=2)
    assert loaded is not None
    loaded.state["n"] = 99  # not saved: the stored record is unchanged
    assert (await a.load("s")) == CallRecord(state={"n": 1, "items": ["x", {"y": None}], "f": 1.5}, starts=2)


@pytest.mark.parametrize(
    ("state", "where"),
    [
        ({"when": {1, 2}}, "call.state['when'] is a set"),
        ({"deep": [1, {"x": object()}]}, "call.state['deep'][1]['x'] is an object"),
        ({"nan": float("nan")}, "call.state['nan'] is a float"),
        ({"keys": {3: "x"}}, "call.state['keys'] key 3"),
    ],
)
async def test_state_that_is_not_json_is_refused_with_its_path(pair: Pair, state: dict, where: str) -> None:  # type: ignore[type-arg]
    a, _ = pair
    await a.save("s", CallRecord(state={"ok": True}))
    with pytest.raises(StateError, match=r"cannot be stored as JSON") as info:
        await a.save("s", CallRecord(state=state))
    assert where in str(info.value)
    assert await a.load("s") == CallRecord(state={"ok": True})  # the old record is kept


async def test_begin_epochs_and_interrupts_reach_every_handle(pair: Pair) -> None:
    a, b = pair
    heard: list[tuple[str, int]] = []
    await b.listen(lambda sid, epoch: heard.append((sid, epoch)))
    assert await a.epoch("s") is None
    assert await a.begin("s") == 0
    assert await b.epoch("s") == 0
    assert await b.begin("s") == 0
    assert await a.begin("s", interrupt="spoke") == 1
    assert await b.begin("other", interrupt="always") == 1
    for _ in range(100):
        if len(heard) == 2:
            break
        await asyncio.sleep(0.01)
    assert sorted(heard) == [("other", 1), ("s", 1)]
    assert await b.epoch("s") == 1


async def test_outbox_takes_current_turns_in_order_and_drops_stale_ones(pair: Pair) -> None:
    a, b = pair
    assert await a.post("s", 0, ['{"n":1}']) == "ended"  # not begun: nobody to deliver to
    epoch = await a.begin("s")
    assert await a.post("s", epoch, ['{"n":1}', '{"n":2}']) == "queued"
    assert await b.post("s", epoch, ['{"n":3}']) == "queued"
    assert await b.collect("s") == ['{"n":1}', '{"n":2}', '{"n":3}']
    assert await a.collect("s") == []
    await a.post("s", epoch, ['{"n":4}'])
    newer = await b.begin("s", interrupt="spoke")  # the caller spoke: queued output is stale
    assert await a.collect("s") == []
    assert await a.post("s", epoch, ['{"n":5}']) == "stale"
    assert await a.post("s", newer, ['{"n":6}']) == "queued"
    assert await b.collect("s") == ['{"n":6}']


async def test_holds_count_only_while_nothing_plays(pair: Pair) -> None:
    a, b = pair
    await a.begin("s")
    assert await a.add_hold("s") == 1  # silence: hold #1, which now plays
    assert await b.add_hold("s") == 0  # the hold is still playing
    await b.begin("s", speech_ended=True)
    assert await a.add_hold("s") == 2
    assert await b.holds("s") == 2  # the caller waits for the answer these stand in for
    await a.begin("s", speech_ended=True)
    await b.delivered("s", 2)  # a real answer: the count restarts, two speeches play
    assert await a.holds("s") == 0
    await a.begin("s", speech_ended=True)
    assert await a.add_hold("s") == 0
    await a.begin("s", speech_ended=True)
    assert await a.add_hold("s") == 1
    await a.delivered("s", 1, cut=True)  # barge_in first: only the new speech plays
    await a.begin("s", speech_ended=True)
    await a.begin("s", speech_ended=True)  # never below zero
    assert await b.add_hold("s") == 1
    await a.begin("s", interrupt="spoke")  # the caller spoke: nothing plays, no holds
    assert await a.holds("s") == 0
    assert await b.add_hold("s") == 1
    assert await a.holds("unknown") == 0


async def test_the_callers_words_do_not_interrupt_an_opening_call(pair: Pair) -> None:
    a, b = pair
    heard: list[tuple[str, int]] = []
    await b.listen(lambda sid, epoch: heard.append((sid, epoch)))
    assert await a.begin("s", opening=True) == 0  # session_start: the greeting is being made
    assert await a.add_hold("s") == 1  # it overran: a hold plays
    await b.post("s", 0, ['{"greeting":1}'])
    assert await b.begin("s", interrupt="spoke") == 0  # early words: no interrupt...
    assert await a.add_hold("s") == 1  # ...but they cut the hold: the caller waits in silence
    assert await a.post("s", 0, ['{"greeting":2}']) == "queued"
    assert await a.collect("s") == ['{"greeting":1}', '{"greeting":2}']  # nothing was dropped
    await a.post("s", 0, ['{"greeting":3}'])
    await b.opened("s")  # the greeting turn is over, but the caller has not got all of it yet
    assert await a.begin("s", interrupt="spoke") == 0
    assert await b.collect("s") == ['{"greeting":3}']  # now they have
    assert await a.begin("s", interrupt="spoke") == 1
    await b.opened("s")  # not opening any more: nothing changes
    assert await a.begin("s", interrupt="spoke") == 2
    # A repeated session_start opens the call again; "always" interrupts even then, and clears it.
    assert await b.begin("s", opening=True) == 2
    assert await a.begin("s", interrupt="spoke") == 2
    assert await a.begin("s", interrupt="always") == 3
    assert await b.begin("s", interrupt="spoke") == 4
    for _ in range(100):
        if len(heard) == 4:
            break
        await asyncio.sleep(0.01)
    assert heard == [("s", 1), ("s", 2), ("s", 3), ("s", 4)]


async def test_delete_forgets_everything(pair: Pair) -> None:
    a, b = pair
    epoch = await a.begin("s", opening=True)
    await a.save("s", CallRecord(state={"x": 1}))
    await a.post("s", epoch, ["{}"])
    await b.delete("s")
    assert await a.load("s") is None
    assert await a.epoch("s") is None
    assert await a.collect("s") == []
    assert await a.post("s", epoch, ["{}"]) == "ended"
    assert await a.begin("s") == 0
    assert await a.begin("s", interrupt="spoke") == 1  # the opening mark went too


async def test_data_expires_after_the_ttl(make_pair: MakePair) -> None:
    a, b = make_pair(ttl=0.3)
    await a.begin("s")
    await a.save("s", CallRecord(state={"x": 1}))
    assert await b.load("s") is not None
    await asyncio.sleep(0.5)
    assert await b.load("s") is None
    assert await b.epoch("s") is None


async def test_turns_are_granted_one_at_a_time_in_arrival_order(pair: Pair) -> None:
    a, b = pair
    order: list[str] = []
    inside = 0
    overlaps = 0

    async def take(store: SessionStore, name: str, hold: float) -> None:
        nonlocal inside, overlaps
        async with store.turn("s"):
            inside += 1
            overlaps += inside > 1
            order.append(name)
            await asyncio.sleep(hold)
            inside -= 1

    tasks = []
    for i, store in enumerate([a, b, a, b, a, b]):
        tasks.append(asyncio.create_task(take(store, f"t{i}", 0.05)))
        await asyncio.sleep(0.02)  # each asks after the previous one
    async with asyncio.timeout(10):
        await asyncio.gather(*tasks)
    assert order == [f"t{i}" for i in range(6)]
    assert overlaps == 0


async def test_a_waiter_that_gives_up_does_not_stall_the_queue(pair: Pair) -> None:
    a, b = pair
    order: list[str] = []
    release = asyncio.Event()

    async def first() -> None:
        async with a.turn("s"):
            order.append("first")
            await release.wait()

    async def later(store: SessionStore, name: str) -> None:
        async with store.turn("s"):
            order.append(name)

    t1 = asyncio.create_task(first())
    await asyncio.sleep(0.05)
    t2 = asyncio.create_task(later(b, "cancelled"))
    await asyncio.sleep(0.05)
    t3 = asyncio.create_task(later(a, "third"))
    await asyncio.sleep(0.05)
    t2.cancel()
    await asyncio.sleep(0.05)
    release.set()
    async with asyncio.timeout(5):
        await asyncio.gather(t1, t3)
    assert t2.cancelled()
    assert order == ["first", "third"]
    async with asyncio.timeout(5), b.turn("s"):  # and the queue still works afterwards
        order.append("fourth")
    if isinstance(a, MemoryStore):
        assert a._turnstiles == {}  # nothing of the queue is left behind


async def test_calls_do_not_wait_for_each_other(pair: Pair) -> None:
    a, b = pair
    async with a.turn("one"), asyncio.timeout(2), b.turn("two"):
        pass


async def test_redis_listeners_survive_a_restart_of_redis() -> None:
    # redis-py's retry subscribes again on a new connection; if Redis stays away longer than its
    # retries, the store's reader does ("lost the Redis subscription ...; subscribing again").
    port = free_port()
    heard: list[tuple[str, int]] = []
    with redis_server(port) as url:
        listening, other = RedisStore(url), RedisStore(url)
        await listening.listen(lambda sid, epoch: heard.append((sid, epoch)))
    with redis_server(port):  # the same address, a fresh server
        try:
            for _ in range(100):  # until the listener has subscribed again
                await other.begin("s", interrupt="always")
                if heard:
                    break
                await asyncio.sleep(0.1)
        finally:
            await listening.close()
            await other.close()
    assert heard
    assert heard[0][0] == "s"


async def test_more_commands_than_connections_wait_instead_of_failing(redis_url: str) -> None:
    # Found by the scale-out benchmark: redis-py's default pool raised "Too many connections"
    # past 100 commands in flight, and 200 concurrent calls heard the fallback.
    store = RedisStore(redis_url, prefix=f"test-{uuid.uuid4().hex[:8]}:")  # 100 connections
    try:

        async def one_event(n: int) -> int:
            epoch = await store.begin(f"call-{n}")
            async with store.turn(f"call-{n}"):
                await store.save(f"call-{n}", CallRecord(state={"n": n}))
            return epoch

        assert await asyncio.gather(*(one_event(n) for n in range(300))) == [0] * 300
        loaded = await store.load("call-299")
        assert loaded is not None
        assert loaded.state == {"n": 299}
    finally:
        await store.close()


async def test_a_cold_store_asked_to_listen_by_many_events_at_once_subscribes_once(redis_url: str) -> None:
    # Found by the scale-out benchmark: 200 first events each subscribed, each subscription kept a
    # pooled connection, and with all 100 taken the server stood still.
    store = RedisStore(redis_url, prefix=f"test-{uuid.uuid4().hex[:8]}:")
    try:
        async with asyncio.timeout(10):
            await asyncio.gather(*(store.listen(lambda session, epoch: None) for _ in range(150)))
            assert await store.begin("after") == 0  # commands still get a connection
        assert len(store.redis.connection_pool._in_use_connections) <= 1  # the subscription's
    finally:
        await store.close()


async def test_a_turn_taken_in_order_is_not_orphaned(pair: Pair) -> None:
    a, b = pair
    async with a.turn("s") as turn:
        assert turn.orphaned is False
    async with b.turn("s") as turn:
        assert turn.orphaned is False


async def test_a_redis_turn_behind_a_dead_holder_goes_ahead_orphaned_when_its_lease_ends(
    redis_url: str,
) -> None:
    prefix = f"test-{uuid.uuid4().hex[:8]}:"
    store = RedisStore(redis_url, prefix=prefix)
    try:
        # Ticket 1 was drawn by a process that died: its lease has 0.2 s left, nobody renews it.
        await store.redis.set(f"{prefix}{{s}}:ticket", 1)
        await store.redis.set(f"{prefix}{{s}}:alive:1", 1, px=200)
        async with asyncio.timeout(5), store.turn("s") as turn:
            assert turn.orphaned is True
        async with asyncio.timeout(5), store.turn("s") as turn:
            assert turn.orphaned is False  # and the queue goes on from there
    finally:
        await store.close()


# -- one turn, few store calls: loading with the turn, saving and noting as it is left ------------


async def test_a_turn_loads_the_record_as_a_copy_and_stores_it_on_leaving(pair: Pair) -> None:
    a, b = pair
    async with a.turn("s", load=True) as turn:
        assert turn.record is None  # an unknown call
    async with a.turn("s", load=True) as turn:
        turn.record = CallRecord(state={"n": 1, "t": (1, 2)}, starts=1)
        turn.save = True
    async with b.turn("s", load=True) as turn:
        assert turn.record == CallRecord(state={"n": 1, "t": [1, 2]}, starts=1)  # as JSON gives it back
        assert turn.record is not None
        turn.record.state["n"] = 2  # not saved: leaving without `save` stores nothing
    assert await a.load("s") == CallRecord(state={"n": 1, "t": [1, 2]}, starts=1)
    loaded = await a.load("s")
    assert loaded is not None
    loaded.state["n"] = 99  # a copy: the stored record is unchanged
    async with b.turn("s") as turn:
        assert turn.record is None  # not asked to load
    assert await b.load("s") == CallRecord(state={"n": 1, "t": [1, 2]}, starts=1)


async def test_a_turn_whose_state_is_not_json_keeps_the_old_record_and_passes_the_turn_on(
    pair: Pair,
) -> None:
    a, b = pair
    await a.save("s", CallRecord(state={"ok": True}, starts=1))
    epoch = await a.begin("s")
    await a.post("s", epoch, ['{"n":1}'])

    async def bad_turn() -> None:
        async with a.turn("s", load=True) as turn:
            assert turn.record is not None
            turn.record.state["bad"] = {1}
            turn.save = True
            turn.collect = True
            turn.note(1)

    with pytest.raises(StateError, match=r"call.state\['bad'\] is a set"):
        await bad_turn()
    assert await b.load("s") == CallRecord(state={"ok": True}, starts=1)
    assert await b.collect("s") == ['{"n":1}']  # nothing else was done either
    assert await b.add_hold("s") == 1  # the note did not land: nothing plays
    async with asyncio.timeout(5), b.turn("s"):  # and the turn was passed on
        pass


async def test_a_turn_cancelled_inside_still_stores_what_it_was_told_to(pair: Pair) -> None:
    a, b = pair
    inside = asyncio.Event()

    async def holder() -> None:
        async with a.turn("s", load=True) as turn:
            turn.record = CallRecord(state={"heard": "hello"})
            turn.save = True
            inside.set()
            await asyncio.sleep(30)

    task = asyncio.create_task(holder())
    await inside.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await b.load("s") == CallRecord(state={"heard": "hello"})
    async with asyncio.timeout(5), b.turn("s"):
        pass


async def test_leaving_a_turn_notes_deliveries_like_delivered(pair: Pair) -> None:
    a, b = pair
    await a.begin("s")
    assert await a.add_hold("s") == 1  # a hold plays
    await a.begin("s", speech_ended=True)
    async with a.turn("s") as turn:
        turn.note(1)
        turn.note(1)  # two speeches in two deliveries
    assert await b.holds("s") == 0  # an answer went out: the count restarted
    await b.begin("s", speech_ended=True)
    assert await b.add_hold("s") == 0  # one of the two still plays
    async with b.turn("s") as turn:
        turn.note(0, cut=True)  # a barge_in: nothing plays any more
    assert await a.add_hold("s") == 1


async def test_leaving_a_turn_takes_the_outbox_and_leaves_the_note_to_the_holder_if_it_held_something(
    pair: Pair,
) -> None:
    a, b = pair
    epoch = await a.begin("s")
    assert await a.add_hold("s") == 1
    async with a.turn("s") as turn:
        turn.collect = True
        turn.note(1)
    assert turn.collected == []
    assert await a.add_hold("s") == 0  # the outbox was empty: the note landed, a speech plays
    await a.begin("s", speech_ended=True)  # the hold ended
    await a.begin("s", speech_ended=True)  # the answer ended
    await b.post("s", epoch, ['{"late":1}'])
    async with b.turn("s") as turn:
        turn.collect = True
        turn.note(1)
    assert turn.collected == ['{"late":1}']
    assert await a.collect("s") == []
    assert await a.add_hold("s") == 1  # not noted: the holder notes it with what it collected


async def test_leaving_the_opening_turn_takes_the_greeting_and_ends_the_opening(pair: Pair) -> None:
    a, b = pair
    epoch = await a.begin("s", opening=True)
    await a.post("s", epoch, ['{"greeting":1}'])
    await a.opened("s")
    assert await b.begin("s", interrupt="spoke") == epoch  # the greeting has not reached the caller
    async with b.turn("s") as turn:
        turn.collect = True
    assert turn.collected == ['{"greeting":1}']
    assert await a.begin("s", interrupt="spoke") == epoch + 1  # now it has


async def test_an_event_whose_turn_is_free_costs_three_redis_round_trips(redis_url: str) -> None:
    # begin; the ticket with the record; leaving the turn (store, note, pass on). Each round trip
    # bounds how many events a call, and a worker, can handle.
    from redis.asyncio import Redis

    sent: list[str] = []

    class Counted(Redis):
        async def execute_command(self, *args: Any, **options: Any) -> Any:
            sent.append(str(args[0]))
            return await super().execute_command(*args, **options)

    store = RedisStore(client=Counted.from_url(redis_url), prefix=f"test-{uuid.uuid4().hex[:8]}:")
    answered: list[list[Action]] = []

    async def reply(actions: list[Action]) -> None:
        answered.append(actions)

    async def counting(ev: UserSpeak, call: Call) -> str:
        call.state["n"] = call.state.get("n", 0) + 1
        return f"turn {call.state['n']}"

    assistant = Assistant(store=store, on_user_speak=counting)
    try:
        for call, outlet in (("live", {"send": reply}), ("webhook", {"reply": reply})):
            await assistant.serve(parse_event(event("user_speak", call)), **outlet)  # type: ignore[arg-type]
            sent.clear()
            await assistant.serve(parse_event(event("user_speak", call)), **outlet)  # type: ignore[arg-type]
            assert len(sent) == 3, sent
    finally:
        await assistant.drain(1.0)
    texts = [[a.text for a in actions] for actions in answered]  # type: ignore[union-attr]
    assert texts == [["turn 1"], ["turn 2"], ["turn 1"], ["turn 2"]]
