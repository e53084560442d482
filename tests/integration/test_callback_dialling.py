"""Callback tasks dialled for agents, in the queue, on SQLite and PostgreSQL:
who may ask, one dialler per request, attempts and their retry time, the task
closed as unreachable after the last attempt, and what is not an attempt."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from bot.queue import AgentQueue, QueueError
from bot.queue.callbacks import CallbackDialling
from tests.queue_databases import BACKENDS, ManualClock, queue_database

HANDOFF = {"intents": [{"intent": "delivery_problem", "confidence": 0.8}]}


@pytest.fixture(params=BACKENDS)
def queue(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[AgentQueue, ManualClock]]:
    clock = ManualClock()
    with queue_database(request.param, tmp_path) as database:
        queue = database.queue(clock=clock)
        try:
            yield queue, clock
        finally:
            queue.close()


def _callback(queue: AgentQueue, number: str | None = "+447700900123") -> int:
    item = queue.enqueue("call-1", "callback", "callback_requested", 1, "general", number, HANDOFF)
    return item.id


def test_only_the_agent_with_the_task_may_ask_and_only_once(queue) -> None:  # type: ignore[no-untyped-def]
    queue, _clock = queue
    ann = queue.add_agent("ann", "pw", "agent", ["general"])
    bob = queue.add_agent("bob", "pw", "agent", ["general"])
    dialling = CallbackDialling(queue)
    item_id = _callback(queue)
    with pytest.raises(QueueError) as untaken:
        dialling.request(item_id, ann.id)
    assert untaken.value.code == "not_claimed"
    queue.claim(item_id, ann.id)
    with pytest.raises(QueueError) as other:
        dialling.request(item_id, bob.id)
    assert other.value.code == "not_claimed"
    asked = dialling.request(item_id, ann.id)
    assert asked.state == "requested" and asked.number == "+447700900123"
    with pytest.raises(QueueError) as twice:
        dialling.request(item_id, ann.id)
    assert twice.value.code == "already_dialling"
    live = queue.enqueue("call-2", "call", "explicit_request", 1, "general", None, {})
    queue.claim(live.id, ann.id)
    with pytest.raises(QueueError) as not_callback:
        dialling.request(live.id, ann.id)
    assert not_callback.value.code == "not_callback"


def test_each_request_is_taken_by_one_dialler(queue) -> None:  # type: ignore[no-untyped-def]
    queue, _clock = queue
    ann = queue.add_agent("ann", "pw", "agent", ["general"])
    dialling = CallbackDialling(queue)
    asked = []
    for n in range(6):
        item = queue.enqueue(f"c{n}", "callback", "callback_requested", 1, "general", "+4477", {})
        queue.claim(item.id, ann.id)
        asked.append(dialling.request(item.id, ann.id).id)
    taken: list[int] = []
    lock = threading.Lock()

    def dialler() -> None:
        while (request := CallbackDialling(queue).take()) is not None:
            with lock:
                taken.append(request.id)

    threads = [threading.Thread(target=dialler) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(taken) == sorted(asked)


def test_failed_attempts_retry_later_then_close_the_task(queue) -> None:  # type: ignore[no-untyped-def]
    queue, clock = queue
    ann = queue.add_agent("ann", "pw", "agent", ["general"])
    dialling = CallbackDialling(queue)
    item_id = _callback(queue)
    for attempt, outcome in enumerate(("no_answer", "busy"), start=1):
        assert queue.claim_next(ann.id).id == item_id
        request = dialling.request(item_id, ann.id)
        assert dialling.take().id == request.id
        done = dialling.finish(request.id, outcome, "", 3, timedelta(minutes=15))
        assert (done.attempts, done.task) == (attempt, "retry")
        assert queue.item(item_id).status == "waiting"
        # Not offered again before its retry time; then it is.
        assert queue.claim_next(ann.id) is None
        clock.advance(16 * 60)
    assert queue.claim_next(ann.id).id == item_id
    request = dialling.request(item_id, ann.id)
    dialling.take()
    done = dialling.finish(request.id, "rejected", "603 Decline", 3, timedelta(minutes=15))
    assert (done.attempts, done.task) == (3, "unreachable")
    closed = queue.item(item_id)
    assert closed.status == "resolved" and closed.disposition == "unreachable"
    assert "3 attempt(s)" in (closed.notes or "")


def test_unserved_and_outside_hours_are_not_attempts(queue) -> None:  # type: ignore[no-untyped-def]
    queue, _clock = queue
    ann = queue.add_agent("ann", "pw", "agent", ["general"])
    dialling = CallbackDialling(queue)
    item_id = _callback(queue)
    queue.claim(item_id, ann.id)
    request = dialling.request(item_id, ann.id)
    assert dialling.unserved(request.id).state == "unserved"
    assert dialling.take() is None  # withdrawn: no dialler picks it up later
    request = dialling.request(item_id, ann.id)
    dialling.take()
    done = dialling.finish(request.id, "outside_hours", "", 3, timedelta(hours=10))
    assert (done.attempts, done.task) == (0, "waiting")
    assert queue.item(item_id).status == "waiting"


def test_an_answered_callback_stays_with_the_agent(queue) -> None:  # type: ignore[no-untyped-def]
    queue, _clock = queue
    ann = queue.add_agent("ann", "pw", "agent", ["general"])
    dialling = CallbackDialling(queue)
    item_id = _callback(queue)
    queue.claim(item_id, ann.id)
    request = dialling.request(item_id, ann.id)
    dialling.take()
    done = dialling.finish(request.id, "answered")
    assert done.task == "connected" and done.request.state == "answered"
    item = queue.item(item_id)
    assert item.status == "claimed" and item.claimed_by == ann.id
