"""An item's life (waiting, claimed, resolved, returned, abandoned), what is
refused on the way, agent states, agent messages and the change log (SQLite)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.queue import Agent, AgentQueue, QueueError, QueueItem
from tests.queue_databases import ManualClock


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def queue(tmp_path: Path, clock: ManualClock) -> Iterator[AgentQueue]:
    with AgentQueue(f"sqlite:///{tmp_path / 'queue.sqlite3'}", clock=clock) as queue:
        yield queue


@pytest.fixture
def ann(queue: AgentQueue) -> Agent:
    return queue.add_agent("ann", "pw", skills=["orders", "general"])


@pytest.fixture
def bob(queue: AgentQueue) -> Agent:
    return queue.add_agent("bob", "pw", skills=["orders", "general"])


HANDOFF = {
    "intents": [{"name": "order_status", "confidence": 0.41}],
    "details": {"order_id": "12345"},
    "transcript": [{"t_ms": 1200, "speaker": "caller", "text": "where is my order"}],
    "summary": "Order 12345 not delivered; caller asked for a person.",
}


def waiting_call(queue: AgentQueue, call_id: str = "call-1") -> QueueItem:
    return queue.enqueue(
        call_id, "call", "explicit_request", 1, "orders", "+15550100", HANDOFF, "wants a person"
    )


def refusal(action: object, *args: object) -> str:
    assert callable(action)
    with pytest.raises(QueueError) as refused:
        action(*args)
    return refused.value.code


def test_an_enqueued_item_keeps_what_the_bot_gave_it(queue: AgentQueue) -> None:
    item = waiting_call(queue)
    stored = queue.item(item.id)
    assert stored == item
    assert (stored.call_id, stored.kind, stored.reason, stored.priority, stored.skill) == (
        "call-1", "call", "explicit_request", 1, "orders"
    )  # fmt: skip
    assert stored.status == "waiting"
    assert stored.caller_number == "+15550100"
    assert stored.handoff == HANDOFF
    assert stored.summary == "wants a person"
    assert stored.position == 1


def test_enqueue_refuses_unknown_kinds_and_empty_fields(queue: AgentQueue) -> None:
    assert refusal(queue.enqueue, "c", "transfer", "explicit_request") == "invalid"
    assert refusal(queue.enqueue, "c", "call", "") == "invalid"
    assert refusal(queue.enqueue, "", "call", "explicit_request") == "invalid"
    assert queue.waiting() == []


def test_claim_resolve_records_who_when_and_how(
    queue: AgentQueue, clock: ManualClock, ann: Agent
) -> None:
    item = waiting_call(queue)
    clock.advance(12)
    claimed = queue.claim_next(ann.id)
    assert claimed is not None
    assert (claimed.status, claimed.claimed_by, claimed.claimed_at) == ("claimed", ann.id, clock())
    assert claimed.waiting_seconds == 12.0
    assert queue.agent(ann.id) == Agent(ann.id, "ann", "agent", ann.skills, "on_call", clock())
    clock.advance(200)
    resolved = queue.resolve(item.id, ann.id, "order_found", "sent tracking link")
    assert (resolved.status, resolved.disposition, resolved.notes) == (
        "resolved", "order_found", "sent tracking link"
    )  # fmt: skip
    assert resolved.resolved_at == clock()
    wrapping_up = queue.agent(ann.id)
    assert wrapping_up is not None and wrapping_up.state == "wrap_up"


def test_only_the_claiming_agent_may_resolve(queue: AgentQueue, ann: Agent, bob: Agent) -> None:
    item = waiting_call(queue)
    assert refusal(queue.resolve, item.id, ann.id, "x") == "not_claimed"
    assert queue.claim(item.id, ann.id) is not None
    assert refusal(queue.resolve, item.id, bob.id, "x") == "claimed_by_other"
    assert refusal(queue.return_to_bot, item.id, bob.id) == "claimed_by_other"
    assert queue.resolve(item.id, ann.id, "done").status == "resolved"
    assert refusal(queue.resolve, item.id, ann.id, "again") == "not_claimed"
    assert refusal(queue.resolve, 999, ann.id, "x") == "no_such_item"
    stored = queue.item(item.id)
    assert stored is not None and stored.disposition == "done"


def test_an_item_is_claimed_once(queue: AgentQueue, ann: Agent, bob: Agent) -> None:
    item = waiting_call(queue)
    first = queue.claim(item.id, ann.id)
    assert first is not None and first.claimed_by == ann.id
    assert queue.claim(item.id, bob.id) is None
    assert queue.claim(item.id, ann.id) is None
    assert queue.claim_next(bob.id) is None
    stored = queue.item(item.id)
    assert stored is not None and stored.claimed_by == ann.id
    assert refusal(queue.claim, 999, bob.id) == "no_such_item"


def test_returning_a_call_to_the_bot(queue: AgentQueue, ann: Agent) -> None:
    item = waiting_call(queue)
    assert queue.claim_next(ann.id) is not None
    returned = queue.return_to_bot(item.id, ann.id)
    assert returned.status == "returned"
    assert returned.resolved_at is not None
    agent = queue.agent(ann.id)
    assert agent is not None and agent.state == "available"
    assert queue.claim(item.id, ann.id) is None


def test_a_caller_hanging_up_abandons_their_waiting_call(
    queue: AgentQueue, clock: ManualClock, ann: Agent
) -> None:
    item = waiting_call(queue, "call-9")
    callback = queue.enqueue("call-9", "callback", "after_hours", 0, "orders")
    clock.advance(47.5)
    abandoned = queue.abandon("call-9")
    assert [(i.id, i.status, i.abandoned_wait_seconds) for i in abandoned] == [
        (item.id, "abandoned", 47.5)
    ]
    assert queue.abandon("call-9") == []
    assert queue.claim(item.id, ann.id) is None
    # The callback still waits: nobody was on the line for it.
    assert [i.id for i in queue.waiting()] == [callback.id]


def test_a_claimed_call_is_not_abandoned(queue: AgentQueue, ann: Agent) -> None:
    item = waiting_call(queue)
    assert queue.claim_next(ann.id) is not None
    assert queue.abandon(item.call_id) == []
    stored = queue.item(item.id)
    assert stored is not None and stored.status == "claimed"


def test_agent_states(queue: AgentQueue, clock: ManualClock, ann: Agent) -> None:
    assert ann.state == "offline"
    clock.advance(5)
    available = queue.set_agent_state(ann.id, "available")
    assert (available.state, available.state_since) == ("available", clock())
    assert refusal(queue.set_agent_state, ann.id, "napping") == "invalid"
    assert refusal(queue.set_agent_state, 999, "available") == "no_such_agent"


def test_agents_speak_to_callers_they_hold(queue: AgentQueue, ann: Agent, bob: Agent) -> None:
    item = waiting_call(queue)
    assert refusal(queue.send_to_caller, item.call_id, ann.id, "hello") == "not_claimed"
    assert queue.claim_next(ann.id) is not None
    assert refusal(queue.send_to_caller, item.call_id, bob.id, "hello") == "not_claimed"
    assert refusal(queue.send_to_caller, item.call_id, ann.id, "   ") == "invalid"
    first = queue.send_to_caller(item.call_id, ann.id, "Hello, this is Ann.")
    second = queue.send_to_caller(item.call_id, ann.id, "I see your order.")
    assert queue.pending_messages(item.call_id) == [first, second]
    assert queue.pending_messages("another-call") == []
    assert queue.mark_delivered([first.id]) == 1
    assert queue.mark_delivered([first.id]) == 0
    assert [m.text for m in queue.pending_messages(item.call_id)] == ["I see your order."]


def test_every_change_is_logged(queue: AgentQueue, ann: Agent) -> None:
    start = queue.changes_since()[-1].id  # the agent's creation
    item = waiting_call(queue)
    assert queue.claim_next(ann.id) is not None
    message = queue.send_to_caller(item.call_id, ann.id, "hi")
    queue.mark_delivered([message.id])
    queue.resolve(item.id, ann.id, "done")
    queue.set_agent_state(ann.id, "available")
    queue.enqueue("call-2", "call", "low_confidence")
    queue.abandon("call-2")
    logged = [(c.kind, c.item_id, c.agent_id) for c in queue.changes_since(start)]
    assert logged == [
        ("enqueued", item.id, None),
        ("claimed", item.id, ann.id),
        ("message_sent", item.id, ann.id),
        ("message_delivered", None, None),
        ("resolved", item.id, ann.id),
        ("agent_state", None, ann.id),
        ("enqueued", item.id + 1, None),
        ("abandoned", item.id + 1, None),
    ]
    ids = [c.id for c in queue.changes_since(start)]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)


def test_a_refused_change_writes_nothing(queue: AgentQueue, ann: Agent, bob: Agent) -> None:
    item = waiting_call(queue)
    assert queue.claim(item.id, ann.id) is not None
    before = queue.changes_since()
    refusal(queue.resolve, item.id, bob.id, "x")
    assert queue.claim(item.id, bob.id) is None
    assert queue.changes_since() == before
    agent = queue.agent(bob.id)
    assert agent is not None and agent.state == "offline"
