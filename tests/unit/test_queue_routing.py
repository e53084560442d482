"""Which agent gets which item, in what order; positions and wait estimates (SQLite)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.queue import AgentQueue, QueueError
from tests.queue_databases import ManualClock


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def queue(tmp_path: Path, clock: ManualClock) -> Iterator[AgentQueue]:
    with AgentQueue(f"sqlite:///{tmp_path / 'queue.sqlite3'}", clock=clock) as queue:
        yield queue


def enqueue(queue: AgentQueue, clock: ManualClock, call_id: str, priority: int, skill: str) -> int:
    clock.advance(1)
    return queue.enqueue(call_id, "call", "explicit_request", priority, skill).id


def test_higher_priority_first_then_first_come(queue: AgentQueue, clock: ManualClock) -> None:
    agent = queue.add_agent("ann", "pw", skills=["orders"])
    for call_id, priority in [("a", 0), ("b", 5), ("c", 0), ("d", 5), ("e", 9)]:
        enqueue(queue, clock, call_id, priority, "orders")
    claimed = []
    while (item := queue.claim_next(agent.id)) is not None:
        claimed.append(item.call_id)
    assert claimed == ["e", "b", "d", "a", "c"]


def test_same_time_enqueues_keep_their_order(queue: AgentQueue) -> None:
    # The manual clock does not move: the item id breaks the tie.
    agent = queue.add_agent("ann", "pw", skills=["orders"])
    ids = [queue.enqueue(f"c{n}", "call", "explicit_request", 1, "orders").id for n in range(4)]
    assert [queue.position(item_id) for item_id in ids] == [1, 2, 3, 4]
    first = queue.claim_next(agent.id)
    assert first is not None and first.id == ids[0]


def test_agents_only_get_items_in_their_skills(queue: AgentQueue, clock: ManualClock) -> None:
    billing = queue.add_agent("bea", "pw", skills=["billing"])
    both = queue.add_agent("bob", "pw", skills=["orders", "billing"])
    orders_item = enqueue(queue, clock, "o1", 9, "orders")
    billing_item = enqueue(queue, clock, "b1", 0, "billing")
    general_item = enqueue(queue, clock, "g1", 9, "general")

    got = queue.claim_next(billing.id)
    assert got is not None and got.id == billing_item
    assert queue.claim_next(billing.id) is None  # orders and general items stay
    got = queue.claim_next(both.id)
    assert got is not None and got.id == orders_item
    assert queue.claim_next(both.id) is None
    assert [item.id for item in queue.waiting()] == [general_item]


def test_an_agent_without_skills_gets_nothing(queue: AgentQueue, clock: ManualClock) -> None:
    idle = queue.add_agent("ida", "pw", skills=[])
    enqueue(queue, clock, "x", 0, "general")
    assert queue.claim_next(idle.id) is None


def test_claiming_for_an_unknown_agent_is_refused(queue: AgentQueue, clock: ManualClock) -> None:
    enqueue(queue, clock, "x", 0, "general")
    with pytest.raises(QueueError) as refused:
        queue.claim_next(999)
    assert refused.value.code == "no_such_agent"


def test_positions_count_only_the_same_skill(queue: AgentQueue, clock: ManualClock) -> None:
    o1 = enqueue(queue, clock, "o1", 0, "orders")
    b1 = enqueue(queue, clock, "b1", 0, "billing")
    o2 = enqueue(queue, clock, "o2", 0, "orders")
    urgent = enqueue(queue, clock, "o3", 3, "orders")
    assert [queue.position(i) for i in (o1, b1, o2, urgent)] == [2, 1, 3, 1]

    agent = queue.add_agent("ann", "pw", skills=["orders"])
    assert queue.claim_next(agent.id) is not None  # takes the urgent one
    assert [queue.position(i) for i in (o1, o2, urgent)] == [1, 2, 0]


def test_waiting_lists_items_in_claim_order_with_positions_and_waits(
    queue: AgentQueue, clock: ManualClock
) -> None:
    enqueue(queue, clock, "o1", 0, "orders")
    clock.advance(30)
    enqueue(queue, clock, "b1", 0, "billing")
    enqueue(queue, clock, "o2", 4, "orders")
    clock.advance(10)
    listed = [(i.call_id, i.position, i.waiting_seconds) for i in queue.waiting()]
    assert listed == [("o2", 1, 10.0), ("o1", 2, 42.0), ("b1", 1, 11.0)]
    second = queue.waiting()[1]
    assert queue.item(second.id) == second


def test_position_of_an_unknown_item_is_refused(queue: AgentQueue) -> None:
    with pytest.raises(QueueError) as refused:
        queue.position(12345)
    assert refused.value.code == "no_such_item"
    assert queue.item(12345) is None


def test_wait_estimate_without_history_uses_the_default_handle_time(
    queue: AgentQueue, clock: ManualClock
) -> None:
    ids = [enqueue(queue, clock, f"c{n}", 0, "orders") for n in range(3)]
    # Nobody staffed: divided by max(1, 0).
    assert [queue.estimated_wait_seconds(i) for i in ids] == [180.0, 360.0, 540.0]
    for name in ("ann", "bob"):
        queue.set_agent_state(queue.add_agent(name, "pw", skills=["orders"]).id, "available")
    queue.add_agent("cid", "pw", skills=["orders"])  # offline: not counted
    queue.set_agent_state(queue.add_agent("dan", "pw", skills=["billing"]).id, "available")
    assert queue.estimated_wait_seconds(ids[2]) == 540.0 / 2


def test_wait_estimate_follows_recent_handle_times(queue: AgentQueue, clock: ManualClock) -> None:
    agent = queue.add_agent("ann", "pw", skills=["orders"])
    for handle_seconds in (60, 120):
        enqueue(queue, clock, "done", 0, "orders")
        item = queue.claim_next(agent.id)
        assert item is not None
        clock.advance(handle_seconds)
        queue.resolve(item.id, agent.id, "solved")
    queue.set_agent_state(agent.id, "available")
    first = enqueue(queue, clock, "w1", 0, "orders")
    second = enqueue(queue, clock, "w2", 0, "orders")
    assert queue.estimated_wait_seconds(first) == 90.0
    assert queue.estimated_wait_seconds(second) == 180.0
    assert queue.claim_next(agent.id) is not None
    assert queue.estimated_wait_seconds(first) == 0.0  # no longer waiting


def test_wait_estimate_uses_only_the_last_twenty_resolved(
    queue: AgentQueue, clock: ManualClock
) -> None:
    agent = queue.add_agent("ann", "pw", skills=["orders"])
    for handle_seconds in [1000] * 5 + [30] * 20:
        enqueue(queue, clock, "done", 0, "orders")
        item = queue.claim_next(agent.id)
        assert item is not None
        clock.advance(handle_seconds)
        queue.resolve(item.id, agent.id, "solved")
    waiting = enqueue(queue, clock, "w", 0, "orders")
    assert queue.estimated_wait_seconds(waiting) == 30.0
