"""The turn journal contract, run against every store; then what only a file can do."""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
from collections.abc import Awaitable, Callable
from contextlib import suppress
from pathlib import Path

import pytest
from pydantic_core import PydanticSerializationError

from core.messages import (
    AssistantMessage,
    ConversationBreak,
    ConversationKey,
    ToolCall,
    ToolResult,
    UserMessage,
)
from core.store import (
    ConversationStore,
    Lease,
    LeaseLost,
    SqliteStore,
    StoreError,
    Turn,
    discord_order,
)
from tests.conftest import Closing
from tests.support import stores
from tests.support.clock import FakeTime

KEY = ConversationKey(platform="slack", workspace="T1", channel="C1", thread="1700000000.000100")
OTHER = ConversationKey(platform="discord", workspace="G1", channel="42", thread="4242")
LEASE = 30.0
DATA = Path(__file__).resolve().parent / "data"


clock, store = stores.clock, stores.store  # the contract fixtures, by the same names


def user(text: str) -> UserMessage:
    return UserMessage(text=text, author_id="U1", author_name="Ada")


def answer(text: str) -> AssistantMessage:
    return AssistantMessage(text=text, finish_reason="stop")


async def accept(
    store: ConversationStore, order: str, *, key: ConversationKey = KEY, event_id: str = ""
) -> Turn:
    turn = await store.accept(
        event_id=event_id or f"{key}/{order}",
        key=key,
        order=order,
        question=user(f"question {order}"),
        platform="Slack",
        claim_ttl=600,
    )
    assert turn is not None
    return turn


async def take(store: ConversationStore, key: ConversationKey = KEY, owner: str = "A") -> Lease:
    lease = await store.take(key, owner=owner, lease_seconds=LEASE)
    assert lease is not None
    return lease


async def answer_it(store: ConversationStore, lease: Lease) -> None:
    text = f"answer {lease.turn.order}"
    await store.answered(lease, messages=[answer(text)], text=text, finish_reason="stop")


async def answer_and_deliver(store: ConversationStore, lease: Lease) -> None:
    """The whole of a turn's run: answered, then shown (which frees its thread)."""
    await answer_it(store, lease)
    await store.delivered(lease.turn.id, [f"{lease.turn.order}.5"])


def ids(turns: list[Turn]) -> list[int]:
    return [turn.id for turn in turns]


# --- accept -----------------------------------------------------------------------------------


async def test_accept_saves_the_question_and_queues_a_turn(
    store: ConversationStore, clock: FakeTime
) -> None:
    turn = await store.accept(
        event_id="slack:Ev1",
        key=KEY,
        order="1700000001.000200",
        question=user("Wie ist das Wetter in Köln? 🌦"),
        platform="Slack",
        timezone="Europe/Berlin",
        claim_ttl=600,
    )
    assert turn is not None
    assert turn == Turn(
        id=turn.id,
        key=KEY,
        order="1700000001.000200",
        event_id="slack:Ev1",
        question=user("Wie ist das Wetter in Köln? 🌦"),
        platform="Slack",
        timezone="Europe/Berlin",
        state="queued",
        accepted_at=clock.now,
    )
    assert await store.turn(turn.id) == turn
    assert await store.load(KEY) == [user("Wie ist das Wetter in Köln? 🌦")]
    assert await store.known(KEY)


async def test_an_event_is_accepted_once_within_its_claim_ttl(
    store: ConversationStore, clock: FakeTime
) -> None:
    first = await accept(store, "1", event_id="Ev1")
    again = await store.accept(
        event_id="Ev1", key=KEY, order="1", question=user("again"), platform="Slack", claim_ttl=600
    )
    assert again is None
    assert await store.claim("Ev1", ttl=600) is False  # one table of claims
    assert await store.load(KEY) == [user("question 1")]

    clock.now += 600  # the claim expired: the event is new again
    second = await accept(store, "1", event_id="Ev1")
    assert second.id != first.id


async def test_an_event_claimed_already_is_not_accepted(store: ConversationStore) -> None:
    assert await store.claim("Ev1", ttl=600) is True
    turn = await store.accept(
        event_id="Ev1", key=KEY, order="1", question=user("hi"), platform="Slack", claim_ttl=600
    )
    assert turn is None
    assert not await store.known(KEY)


async def test_an_accept_that_cannot_be_stored_writes_nothing(store: ConversationStore) -> None:
    unstorable = UserMessage(text="half a surrogate pair: \ud800")  # no UTF-8 for it
    with pytest.raises(PydanticSerializationError):
        await store.accept(
            event_id="Ev1", key=KEY, order="1", question=unstorable, platform="Slack", claim_ttl=60
        )
    assert await store.claim("Ev1", ttl=60) is True  # not even the claim was kept
    assert not await store.known(KEY)
    assert await store.load(KEY) == []
    assert await store.stranded() == []


async def test_concurrent_accepts_of_one_event_make_one_turn(store: ConversationStore) -> None:
    results = await asyncio.gather(
        *(
            store.accept(
                event_id="Ev1",
                key=KEY,
                order="1",
                question=user(f"delivery {n}"),
                platform="Slack",
                claim_ttl=600,
            )
            for n in range(20)
        )
    )
    accepted = [turn for turn in results if turn is not None]
    assert len(accepted) == 1
    assert await store.load(KEY) == [accepted[0].question]


async def test_claim_ttl_and_lease_seconds_must_be_positive(store: ConversationStore) -> None:
    with pytest.raises(ValueError, match="positive ttl"):
        await store.accept(
            event_id="Ev1", key=KEY, order="1", question=user("hi"), platform="Slack", claim_ttl=0
        )
    await accept(store, "1")
    with pytest.raises(ValueError, match="positive lease_seconds"):
        await store.take(KEY, owner="A", lease_seconds=0)


async def test_known_threads(store: ConversationStore) -> None:
    assert not await store.known(KEY)
    await store.append(KEY, [user("rebuilt from the platform")])
    assert await store.known(KEY)
    assert not await store.known(OTHER)
    await accept(store, discord_order(1), key=OTHER)
    assert await store.known(OTHER)


def test_discord_order_sorts_as_the_snowflakes_do() -> None:
    snowflakes = [9, 1_100_000_000_000_000_000, 175_928_847_299_117_063, 10]
    assert discord_order("42") == "00000000000000000042"
    assert sorted(snowflakes, key=discord_order) == sorted(snowflakes)


# --- order and leases -------------------------------------------------------------------------


async def test_turns_of_a_thread_are_taken_one_at_a_time_in_platform_order(
    store: ConversationStore,
) -> None:
    for order in ["3", "1", "2"]:  # arrival order is not the platform's order
        await accept(store, order)

    first = await take(store)
    assert (first.turn.order, first.turn.state) == ("1", "running")
    assert await store.take(KEY, owner="B", lease_seconds=LEASE) is None  # "1" holds the thread
    await answer_and_deliver(store, first)

    second = await take(store, owner="B")
    assert second.turn.order == "2"
    assert await store.take(KEY, owner="A", lease_seconds=LEASE) is None
    await store.failed(second, messages=[], error="The model is unavailable.")

    third = await take(store)
    assert third.turn.order == "3"
    await answer_and_deliver(store, third)
    assert await store.take(KEY, owner="A", lease_seconds=LEASE) is None  # none queued


async def test_workers_asking_at_once_take_a_threads_turns_one_at_a_time_in_order(
    store: ConversationStore,
) -> None:
    for order in ["2", "3", "1"]:
        await accept(store, order)

    async def everyone_takes() -> list[Lease]:
        leases = await asyncio.gather(
            *(store.take(KEY, owner=f"worker-{n}", lease_seconds=LEASE) for n in range(20))
        )
        return [lease for lease in leases if lease is not None]

    for order in ["1", "2", "3"]:
        (taken,) = await everyone_takes()
        assert taken.turn.order == order
        assert await everyone_takes() == []  # it holds the thread
        await answer_and_deliver(store, taken)
    assert await everyone_takes() == []  # none queued


async def test_two_threads_run_at_the_same_time(store: ConversationStore) -> None:
    await accept(store, "1", key=KEY)
    await accept(store, discord_order(7), key=OTHER)
    here = await take(store, KEY, owner="A")
    there = await take(store, OTHER, owner="B")
    assert (here.turn.key, there.turn.key) == (KEY, OTHER)


async def test_take_leases_the_turn_and_increments_its_fence(
    store: ConversationStore, clock: FakeTime
) -> None:
    turn = await accept(store, "1")
    lease = await take(store, owner="worker-1")
    assert lease == Lease(turn=lease.turn, owner="worker-1", fence=1, expires_at=clock.now + LEASE)
    assert lease.turn == await store.turn(turn.id)
    assert (lease.turn.state, lease.turn.owner, lease.turn.fence) == ("running", "worker-1", 1)
    assert lease.turn.lease_expires_at == clock.now + LEASE


async def test_renew_extends_the_lease_from_now(store: ConversationStore, clock: FakeTime) -> None:
    await accept(store, "1")
    await accept(store, "2")
    lease = await take(store)
    clock.now += 20
    renewed = await store.renew(lease, lease_seconds=LEASE)
    assert renewed.expires_at == renewed.turn.lease_expires_at == clock.now + LEASE
    assert renewed.fence == lease.fence
    clock.now += 20  # past the first lease, within the renewed one
    assert await store.take(KEY, owner="B", lease_seconds=LEASE) is None
    assert await store.stranded() == []


async def test_an_expired_running_turn_holds_its_thread_until_it_is_recovered(
    store: ConversationStore, clock: FakeTime
) -> None:
    """Order holds through a crash: "2" does not start while "1", whose worker died, is still
    running. Recovering "1" comes first; once it is answered, "2" runs."""
    first = await accept(store, "1")
    second = await accept(store, "2")
    await take(store, owner="gone")
    clock.now += LEASE  # gone died
    assert await store.take(KEY, owner="B", lease_seconds=LEASE) is None
    assert await store.take_over(second.id, owner="B", lease_seconds=LEASE) is None
    assert ids(await store.stranded()) == [first.id]  # not "2", behind it

    recovered = await store.take_over(first.id, owner="B", lease_seconds=LEASE)
    assert recovered is not None
    assert await store.take(KEY, owner="C", lease_seconds=LEASE) is None
    await answer_it(store, recovered)
    assert await store.take(KEY, owner="C", lease_seconds=LEASE) is None  # not yet delivered
    await store.delivered(first.id, ["1.5"])
    assert (await take(store, owner="C")).turn.order == "2"


async def test_an_answer_holds_its_thread_until_it_is_delivered(
    store: ConversationStore, clock: FakeTime
) -> None:
    """In a fleet, "2" may be taken by another worker the moment it is free: were it free once
    "1" is answered, "2"'s answer could be shown above "1"'s, still being posted."""
    first = await accept(store, "1")
    await accept(store, "2")
    lease = await take(store, owner="A")
    await answer_it(store, lease)
    assert await store.take(KEY, owner="B", lease_seconds=LEASE) is None
    assert await store.stranded() == []
    clock.now += LEASE  # A died before it delivered: delivering "1" comes first
    assert ids(await store.stranded()) == [first.id]
    assert await store.take(KEY, owner="B", lease_seconds=LEASE) is None
    await store.delivered(first.id, ["1.5"])
    assert (await take(store, owner="B")).turn.order == "2"


async def test_a_taken_over_lease_fences_out_its_old_owner(
    store: ConversationStore, clock: FakeTime
) -> None:
    turn = await accept(store, "1")
    old = await take(store, owner="A")
    await store.save_refs(old, ["1700000001.000300"])
    clock.now += LEASE + 1  # A stopped renewing
    new = await store.take_over(turn.id, owner="B", lease_seconds=LEASE)
    assert new is not None
    assert (new.owner, new.fence, new.turn.state, new.turn.owner) == ("B", 2, "running", "B")
    taken_over = await store.turn(turn.id)

    with pytest.raises(LeaseLost, match=f"turn {turn.id} "):
        await store.renew(old, lease_seconds=LEASE)
    with pytest.raises(LeaseLost, match=f"turn {turn.id} "):
        await store.tool_started(old, "call_1")
    with pytest.raises(LeaseLost, match=f"turn {turn.id} "):
        await store.save_refs(old, ["from A"])
    with pytest.raises(LeaseLost, match=f"turn {turn.id} "):
        await store.answered(old, messages=[answer("A's")], text="A's", finish_reason="stop")
    with pytest.raises(LeaseLost, match=f"turn {turn.id} "):
        await store.failed(old, messages=[answer("A's")], error="A failed")
    with pytest.raises(LeaseLost, match=f"turn {turn.id} "):
        await store.history(old)
    with pytest.raises(LeaseLost, match=f"turn {turn.id} "):
        await store.revise_question(old, user("A's names"))

    assert await store.turn(turn.id) == taken_over  # A changed nothing
    assert await store.load(KEY) == [user("question 1")]
    await answer_it(store, new)
    assert await store.load(KEY) == [user("question 1"), answer("answer 1")]


async def test_answered_saves_the_answer_and_keeps_the_lease_to_deliver(
    store: ConversationStore,
) -> None:
    turn = await accept(store, "1")
    lease = await take(store, owner="A")
    tool_turn = [
        AssistantMessage(tool_calls=(ToolCall(id="c1", name="get_weather", arguments={}),)),
        answer("Sunny."),
    ]
    await store.answered(lease, messages=tool_turn, text="Sunny.", finish_reason="stop")
    stored = await store.turn(turn.id)
    assert (stored.state, stored.final_text, stored.finish_reason) == ("answered", "Sunny.", "stop")
    assert (stored.owner, stored.fence, stored.lease_expires_at) == ("A", 1, lease.expires_at)
    assert await store.load(KEY) == [user("question 1"), *tool_turn]
    with pytest.raises(LeaseLost):
        await answer_it(store, lease)  # no second answer
    with pytest.raises(LeaseLost):
        await store.tool_started(lease, "call_2")  # no tool after it
    with pytest.raises(LeaseLost):
        await store.failed(lease, messages=[answer("late")], error="late")
    assert await store.load(KEY) == [user("question 1"), *tool_turn]
    assert await store.turn(turn.id) == stored


async def test_failed_saves_what_was_said_and_the_error(store: ConversationStore) -> None:
    turn = await accept(store, "1")
    lease = await take(store)
    partial = AssistantMessage(text="In Köln sind es", stopped=True)
    await store.failed(lease, messages=[partial], error="The answer was interrupted.")
    stored = await store.turn(turn.id)
    assert (stored.state, stored.error, stored.lease_expires_at) == (
        "failed",
        "The answer was interrupted.",
        None,
    )
    assert await store.load(KEY) == [user("question 1"), partial]


async def test_an_answer_that_cannot_be_stored_writes_nothing(store: ConversationStore) -> None:
    turn = await accept(store, "1")
    lease = await take(store)
    unstorable = AssistantMessage(
        tool_calls=(ToolCall(id="c1", name="t", arguments={"value": object()}),)
    )
    with pytest.raises(PydanticSerializationError):
        await store.answered(
            lease, messages=[answer("ok"), unstorable], text="", finish_reason=None
        )
    assert (await store.turn(turn.id)).state == "running"
    assert await store.load(KEY) == [user("question 1")]
    await answer_it(store, lease)  # the lease still holds


# --- history by turn --------------------------------------------------------------------------


async def test_history_by_turn(store: ConversationStore) -> None:
    await store.append(KEY, [user("before the journal"), answer("old answer")])
    assert await store.take(KEY, owner="A", lease_seconds=LEASE) is None
    await accept(store, "1")
    first = await take(store)
    await accept(store, "2")  # a follow-up, while "1" runs
    assert await store.history(first) == [
        user("before the journal"),
        answer("old answer"),
        user("question 1"),
    ]  # never the later question
    await answer_and_deliver(store, first)
    second = await take(store)
    assert await store.history(second) == [
        user("before the journal"),
        answer("old answer"),
        user("question 1"),
        answer("answer 1"),
        user("question 2"),
    ]


async def test_load_gives_messages_of_no_turn_first_then_by_turn_order(
    store: ConversationStore, clock: FakeTime
) -> None:
    await accept(store, "2")
    await accept(store, "1")
    first = await take(store)
    await answer_and_deliver(store, first)
    await store.append(KEY, [user("rebuilt from the platform")])
    second = await take(store)
    await answer_it(store, second)
    assert await store.load(KEY) == [
        user("rebuilt from the platform"),
        user("question 1"),
        answer("answer 1"),
        user("question 2"),
        answer("answer 2"),
    ]


# --- recovery ---------------------------------------------------------------------------------


async def test_stranded_turns(store: ConversationStore, clock: FakeTime) -> None:
    def thread(name: str) -> ConversationKey:
        return ConversationKey(platform="slack", workspace="T1", channel="C1", thread=name)

    expired = await accept(store, "1", key=thread("expired"))
    await take(store, thread("expired"), owner="gone")
    await accept(store, "2", key=thread("expired"))  # behind a running turn: not listed
    answered = await accept(store, "1", key=thread("answered"))
    await answer_it(store, await take(store, thread("answered"), owner="gone"))
    clock.now += LEASE  # both leases expired: the next ones are taken after this
    dead = await accept(store, "1", key=thread("dead"))
    await take(store, thread("dead"), owner="previous-process")
    queued = await accept(store, "1", key=thread("queued"))
    await accept(store, "2", key=thread("queued"))  # behind "1": not listed
    await accept(store, "1", key=thread("delivering"))
    await answer_it(store, await take(store, thread("delivering"), owner="alive"))
    await accept(store, "1", key=thread("live"))
    await take(store, thread("live"), owner="alive")
    await accept(store, "2", key=thread("live"))  # waits for a running turn: not stranded
    delivered = await accept(store, "1", key=thread("delivered"))
    await answer_it(store, await take(store, thread("delivered")))
    await store.delivered(delivered.id, ["1.2"])

    assert ids(await store.stranded()) == [expired.id, answered.id, queued.id]
    found = await store.stranded(is_dead=lambda owner: owner == "previous-process")
    assert ids(found) == [expired.id, answered.id, dead.id, queued.id]
    assert [turn.state for turn in found] == ["running", "answered", "running", "queued"]


async def test_take_over_leases_a_stranded_turn(store: ConversationStore, clock: FakeTime) -> None:
    running = await accept(store, "1")
    await take(store, owner="gone")
    behind = await accept(store, "2")
    clock.now += LEASE
    lease = await store.take_over(running.id, owner="B", lease_seconds=LEASE)
    assert lease is not None
    assert await store.take_over(running.id, owner="C", lease_seconds=LEASE) is None  # B has it
    assert await store.take_over(behind.id, owner="C", lease_seconds=LEASE) is None  # B runs "1"
    await store.failed(lease, messages=[], error="interrupted")
    queued = await store.take_over(behind.id, owner="C", lease_seconds=LEASE)
    assert queued is not None
    assert (queued.turn.state, queued.owner, queued.fence) == ("running", "C", 1)
    await answer_it(store, queued)
    assert await store.take_over(running.id, owner="C", lease_seconds=LEASE) is None  # failed


async def test_take_over_only_the_earliest_queued_turn(store: ConversationStore) -> None:
    await accept(store, "1")
    later = await accept(store, "2")
    assert await store.take_over(later.id, owner="B", lease_seconds=LEASE) is None
    assert await store.take_over(12345, owner="B", lease_seconds=LEASE) is None  # no such turn


async def test_take_over_a_dead_owners_live_lease_with_force(store: ConversationStore) -> None:
    turn = await accept(store, "1")
    old = await take(store, owner="previous-process")
    assert await store.take_over(turn.id, owner="B", lease_seconds=LEASE) is None  # still live
    lease = await store.take_over(turn.id, owner="B", lease_seconds=LEASE, force=True)
    assert lease is not None
    assert lease.fence == 2
    with pytest.raises(LeaseLost):
        await store.renew(old, lease_seconds=LEASE)


async def test_the_worker_that_answered_delivers_it(
    store: ConversationStore, clock: FakeTime
) -> None:
    """``answered`` keeps the lease, as a delivery lease: while it lives no other worker of a
    fleet delivers the turn a second time."""
    turn = await accept(store, "1")
    lease = await take(store, owner="A")
    await answer_it(store, lease)
    assert await store.stranded() == []
    assert await store.take_over(turn.id, owner="B", lease_seconds=LEASE) is None
    await store.save_refs(lease, ["1.5"])  # A posts the answer, under the same lease
    clock.now += 20
    lease = await store.renew(lease, lease_seconds=LEASE)
    clock.now += 20  # past the answer's lease, within the renewed one
    assert await store.stranded() == []
    assert ids(await store.stranded(is_dead=lambda owner: owner == "A")) == [turn.id]

    clock.now += LEASE  # A died before it delivered
    assert ids(await store.stranded()) == [turn.id]
    taken = await store.take_over(turn.id, owner="B", lease_seconds=LEASE)
    assert taken is not None
    assert (taken.turn.state, taken.turn.refs, taken.fence) == ("answered", ("1.5",), 2)
    with pytest.raises(LeaseLost):
        await store.save_refs(lease, ["from A"])  # A is fenced out
    await store.delivered(turn.id, ["1.5"])
    assert (await store.turn(turn.id)).state == "delivered"


async def test_an_answered_turn_is_taken_over_for_delivery(
    store: ConversationStore, clock: FakeTime
) -> None:
    turn = await accept(store, "1")
    await answer_it(store, await take(store, owner="gone"))
    clock.now += LEASE  # gone died before it delivered
    assert ids(await store.stranded()) == [turn.id]

    lease = await store.take_over(turn.id, owner="B", lease_seconds=LEASE)
    assert lease is not None
    assert (lease.turn.state, lease.turn.final_text, lease.fence) == ("answered", "answer 1", 2)
    assert await store.stranded() == []  # B is delivering it
    assert await store.take_over(turn.id, owner="C", lease_seconds=LEASE) is None
    await store.save_refs(lease, ["1.5"])  # a delivery lease may save refs and renew
    lease = await store.renew(lease, lease_seconds=LEASE)
    with pytest.raises(LeaseLost):
        await answer_it(store, lease)  # but the turn is answered already

    clock.now += LEASE  # B died too
    assert ids(await store.stranded()) == [turn.id]
    again = await store.take_over(turn.id, owner="C", lease_seconds=LEASE)
    assert again is not None
    await store.delivered(turn.id, ["1.5", "1.6"])
    assert await store.stranded() == []
    with pytest.raises(LeaseLost):
        await store.renew(again, lease_seconds=LEASE)  # delivered ends the delivery lease


async def test_delivered(store: ConversationStore) -> None:
    turn = await accept(store, "1")
    lease = await take(store)
    with pytest.raises(StoreError, match=f"turn {turn.id} is running, not answered"):
        await store.delivered(turn.id, ["1.1"])
    await answer_it(store, lease)
    await store.delivered(turn.id, ["1.1", "1.2"])
    await store.delivered(turn.id, ["1.1", "1.2"])  # again: nothing happens
    stored = await store.turn(turn.id)
    assert (stored.state, stored.refs, stored.final_text) == (
        "delivered",
        ("1.1", "1.2"),
        "answer 1",
    )
    with pytest.raises(StoreError, match="there is no turn 12345"):
        await store.delivered(12345, [])


async def test_refs_and_tool_started_are_saved(store: ConversationStore) -> None:
    turn = await accept(store, "1")
    lease = await take(store)
    await store.save_refs(lease, ["1700000001.000300"])
    await store.save_refs(lease, ["1700000001.000300", "1700000001.000400"])  # replaced
    await store.tool_started(lease, "call_1")
    stored = await store.turn(turn.id)
    assert stored.refs == ("1700000001.000300", "1700000001.000400")
    assert stored.tool_started is True


async def test_release_puts_a_running_turn_back_in_the_queue(store: ConversationStore) -> None:
    first, second = await accept(store, "1"), await accept(store, "2")
    lease = await take(store)
    await store.save_refs(lease, ["m1"])
    assert await store.release(lease)

    released = await store.turn(first.id)
    assert (released.state, released.owner, released.lease_expires_at) == ("queued", None, None)
    assert released.refs == ("m1",)  # what it showed, for whoever runs it next to replace
    with pytest.raises(LeaseLost):
        await store.failed(lease, messages=[], error="stopped")  # its old worker writes nothing
    again = await take(store, owner="B")  # first again: it keeps its place in the thread
    assert (again.turn.id, again.fence) == (first.id, lease.fence + 1)
    assert second.id != again.turn.id


async def test_release_refuses_a_turn_that_ran_a_tool(store: ConversationStore) -> None:
    turn = await accept(store, "1")
    lease = await take(store)
    await store.tool_started(lease, "call_1")
    assert not await store.release(lease)
    assert (await store.turn(turn.id)).state == "running"
    await store.failed(lease, messages=[], error="interrupted")  # the lease still holds


async def test_release_under_a_lost_lease_raises(store: ConversationStore) -> None:
    await accept(store, "1")
    lease = await take(store)
    await store.answered(lease, messages=[answer("hi")], text="hi", finish_reason="stop")
    with pytest.raises(LeaseLost):
        await store.release(lease)  # answered: deliver it, don't run it again


async def test_a_revised_question_is_saved_and_read_in_history(store: ConversationStore) -> None:
    await store.append(KEY, [user("rebuilt from the platform")])
    turn = await accept(store, "1")
    follow_up = await accept(store, "2")
    lease = await take(store)
    named = UserMessage(text="ask @Grace Hopper", author_id="U1", author_name="Ada Lovelace")
    revised = await store.revise_question(lease, named)
    assert (revised.turn.question, revised.fence) == (named, lease.fence)
    assert (await store.turn(turn.id)).question == named
    assert await store.history(revised) == [user("rebuilt from the platform"), named]
    await answer_and_deliver(store, revised)
    later = await take(store)
    assert later.turn.id == follow_up.id
    assert await store.history(later) == [
        user("rebuilt from the platform"), named, answer("answer 1"), user("question 2"),
    ]  # fmt: skip


async def test_unfinished_is_the_threads_running_turn(store: ConversationStore) -> None:
    await accept(store, "1")
    await accept(store, "2")
    assert await store.unfinished(KEY) is None  # queued only
    lease = await take(store, owner="A")
    running = await store.unfinished(KEY)
    assert running is not None
    assert (running.id, running.owner) == (lease.turn.id, "A")
    assert await store.unfinished(OTHER) is None
    await answer_and_deliver(store, lease)
    assert await store.unfinished(KEY) is None


async def test_a_break_goes_after_the_threads_turns(store: ConversationStore) -> None:
    await store.append(KEY, [user("rebuilt")])
    await accept(store, "1")
    await answer_and_deliver(store, await take(store))
    await store.break_conversation(KEY)
    await accept(store, "2")
    later = await take(store)
    assert await store.history(later) == [
        user("rebuilt"), user("question 1"), answer("answer 1"), ConversationBreak(),
        user("question 2"),
    ]  # fmt: skip


async def test_turn_of_an_unknown_id_is_an_error(store: ConversationStore) -> None:
    with pytest.raises(StoreError, match="there is no turn 12345"):
        await store.turn(12345)


# --- deletion and retention -------------------------------------------------------------------


async def test_forget_message(store: ConversationStore) -> None:
    await store.append(KEY, [user("old")])
    running = await accept(store, "1")
    lease = await take(store)
    queued = await accept(store, "2")
    await store.forget_message(KEY, "2")
    stored = await store.turn(queued.id)
    assert (stored.state, stored.error) == ("failed", "deleted")
    assert await store.load(KEY) == [user("old"), user("question 1")]

    await store.forget_message(KEY, "1")  # deleted while its answer streams
    assert (await store.turn(running.id)).state == "failed"
    with pytest.raises(LeaseLost):
        await answer_it(store, lease)  # the worker is told, and writes nothing
    assert await store.load(KEY) == [user("old")]

    await store.forget_message(KEY, "7")  # no such message: nothing happens
    await store.forget_message(OTHER, "1")
    assert await store.load(KEY) == [user("old")]


async def test_forget_message_of_an_answered_turn_keeps_it_to_deliver(
    store: ConversationStore,
) -> None:
    turn = await accept(store, "1")
    await answer_it(store, await take(store))
    await store.forget_message(KEY, "1")
    assert await store.load(KEY) == []
    assert (await store.turn(turn.id)).state == "answered"
    await store.delivered(turn.id, ["1.1"])


async def test_prune_deletes_old_history_and_ended_turns(
    store: ConversationStore, clock: FakeTime
) -> None:
    await store.append(KEY, [user("very old")])
    old = await accept(store, "1")
    old_lease = await take(store)
    clock.now += 100
    await answer_it(store, old_lease)  # its answer is newer than the cut, and goes with it
    unfinished = await accept(store, "2", key=OTHER)  # old, but not finished: kept
    cut = clock.now + 1
    clock.now += 10
    await store.append(KEY, [user("recent")])
    recent = await accept(store, "3")
    await store.delivered(old.id, [])
    await answer_it(store, await take(store))
    await store.delivered(recent.id, [])

    assert await store.prune(older_than=cut) == 3
    assert await store.load(KEY) == [user("recent"), user("question 3"), answer("answer 3")]
    assert await store.load(OTHER) == [user("question 2")]
    with pytest.raises(StoreError):
        await store.turn(old.id)
    assert (await store.turn(unfinished.id)).state == "queued"
    assert await store.prune(older_than=cut) == 0

    assert await store.prune(older_than=clock.now + 1) == 3  # KEY's ended turn and messages
    assert not await store.known(KEY)
    assert await store.known(OTHER)


# --- what only a file can do ------------------------------------------------------------------


def rows(path: Path, sql: str) -> list[tuple[object, ...]]:
    with sqlite3.connect(path) as db:
        return db.execute(sql).fetchall()


OpenFile = Callable[[Path], Awaitable[SqliteStore]]


@pytest.fixture
def open_file(clock: FakeTime, closing: Closing) -> OpenFile:
    """Opens store files on the test's clock, closed after the test even when it fails."""
    return lambda path: closing(SqliteStore.open(path, clock=clock))


async def test_tool_started_survives_reopening_the_file(
    tmp_path: Path, open_file: OpenFile
) -> None:
    path = tmp_path / "relaybot.db"
    store = await open_file(path)
    turn = await accept(store, "1")
    lease = await take(store, owner="process-1")
    await store.tool_started(lease, "call_1")
    await store.save_refs(lease, ["1.1"])
    await store.close()  # the process dies mid-turn

    again = await open_file(path)
    (found,) = await again.stranded(is_dead=lambda owner: owner == "process-1")
    assert (found.id, found.state, found.tool_started, found.refs) == (
        turn.id,
        "running",
        True,
        ("1.1",),
    )
    await again.close()


async def test_a_write_that_fails_midway_leaves_nothing(
    tmp_path: Path, open_file: OpenFile
) -> None:
    """The disk fills up after the claim and the turn were written, before the question."""
    path = tmp_path / "relaybot.db"
    store = await open_file(path)
    running = await accept(store, "1")
    lease = await take(store)
    with sqlite3.connect(path) as db:
        db.execute(
            "CREATE TRIGGER full BEFORE INSERT ON messages"
            " BEGIN SELECT RAISE(ABORT, 'disk full'); END"
        )
    with pytest.raises(StoreError, match="disk full"):
        await accept(store, "2", event_id="Ev2")
    with pytest.raises(StoreError, match="disk full"):
        await answer_it(store, lease)
    with sqlite3.connect(path) as db:
        db.execute("DROP TRIGGER full")

    assert await store.claim("Ev2", ttl=60) is True  # the claim was rolled back
    assert ids(await store.stranded()) == []
    assert (await store.turn(running.id)).state == "running"
    await answer_it(store, lease)
    await store.close()
    assert rows(path, "SELECT ord, state FROM turns") == [("1", "answered")]


async def test_a_cancelled_write_leaves_all_or_nothing(tmp_path: Path, open_file: OpenFile) -> None:
    """Accepts cancelled at every point of their transaction; the connection is never left
    inside one, and each event is accepted whole or not at all."""
    path = tmp_path / "relaybot.db"
    store = await open_file(path)
    for n in range(30):
        task = asyncio.create_task(accept(store, f"{n:02}", key=OTHER, event_id=f"Ev{n}"))
        for _ in range(n):
            await asyncio.sleep(0)
        task.cancel()
        with suppress(asyncio.CancelledError):
            await task
    last = await accept(store, "99", key=OTHER)  # a transaction left open would refuse this
    await store.close()

    claims = {event for (event,) in rows(path, "SELECT event_id FROM claims")}
    turns = {event for (event,) in rows(path, "SELECT event_id FROM turns")}
    questions = rows(path, "SELECT count(*) FROM messages")
    assert claims == turns
    assert questions == [(len(turns),)]
    assert last.event_id in turns


async def test_a_cancelled_transaction_is_rolled_back(tmp_path: Path, open_file: OpenFile) -> None:
    path = tmp_path / "relaybot.db"
    store = await open_file(path)
    inside = asyncio.Event()

    async def interrupted() -> None:
        async with store._connection.transaction() as db:
            await db.execute("INSERT INTO claims (event_id, expires_at) VALUES ('half', 1e12)")
            inside.set()
            await asyncio.Event().wait()  # cancelled here

    task = asyncio.create_task(interrupted())
    await asyncio.wait_for(inside.wait(), 10)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await store.claim("half", ttl=60) is True  # the insert was rolled back
    await store.close()


async def test_a_version_1_file_keeps_its_threads(tmp_path: Path, open_file: OpenFile) -> None:
    """tests/data/store-v1.db was written by the schema-version-1 store (tests/data/README.md)."""
    path = tmp_path / "relaybot.db"
    shutil.copyfile(DATA / "store-v1.db", path)
    slack = KEY
    discord = ConversationKey(platform="discord", workspace="G1", channel="42", thread="4242")
    store = await open_file(path)

    old = await store.load(slack)
    assert old == [
        UserMessage(text="What is the weather in Köln?", author_id="U1", author_name="Ada"),
        AssistantMessage(
            tool_calls=(ToolCall(id="call_1", name="get_weather", arguments={"city": "Köln"}),)
        ),
        ToolResult(call_id="call_1", name="get_weather", content='{"temperature": 7.5}'),
        AssistantMessage(text="It is 7.5 °C in Köln."),
        UserMessage(text="And tomorrow?", author_id="U1", author_name="Ada"),
    ]
    assert await store.load(discord) == [
        UserMessage(text="hello", author_id="100", author_name="Grace"),
        AssistantMessage(text="Hello, Grace!"),
    ]
    assert await store.known(slack)
    assert await store.known(discord)
    assert await store.claim(str(slack), ttl=60) is False  # the old claim still holds

    await store.accept(
        event_id="slack:Ev9",
        key=slack,
        order="1700000100.000100",
        question=user("And next week?"),
        platform="Slack",
        claim_ttl=600,
    )
    lease = await take(store, slack)
    assert await store.history(lease) == [*old, user("And next week?")]
    await store.answered(lease, messages=[answer("Rain.")], text="Rain.", finish_reason="stop")
    await store.close()

    assert rows(path, "PRAGMA user_version") == [(5,)]
    again = await open_file(path)
    assert await again.load(slack) == [*old, user("And next week?"), answer("Rain.")]
    await again.close()
