"""Many agent processes claiming at once, on SQLite and on the real PostgreSQL
server: every item goes to exactly one agent."""

from __future__ import annotations

import multiprocessing
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.queue_databases import (
    BACKENDS,
    QueueDatabase,
    claim_one,
    claim_until_empty,
    queue_database,
)

WORKERS = 8
ITEMS = 500


@pytest.fixture(params=BACKENDS)
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[QueueDatabase]:
    with queue_database(request.param, tmp_path) as database:
        yield database


def run_workers(target: Any, args: list[tuple[Any, ...]]) -> list[Any]:
    """Runs ``target(*args, start, results)`` in one spawned process per args
    tuple, released together; what they put on ``results``."""
    context = multiprocessing.get_context("spawn")
    start = context.Barrier(len(args))
    results = context.Queue()
    processes = [context.Process(target=target, args=(*a, start, results)) for a in args]
    for process in processes:
        process.start()
    collected = [results.get(timeout=300) for _ in processes]
    for process in processes:
        process.join(timeout=60)
        assert process.exitcode == 0
    return collected


@pytest.mark.slow
def test_eight_agents_claim_every_item_exactly_once(database: QueueDatabase) -> None:
    with database.queue() as queue:
        agent_ids = [queue.add_agent(f"agent{n}", "pw", skills=["orders"]).id for n in range(8)]
        for n in range(ITEMS):
            queue.enqueue(f"call-{n}", "call", "explicit_request", n % 3, "orders")
        queued = {item.id for item in queue.waiting()}
        claimed_by_worker = run_workers(
            claim_until_empty, [(database.url, database.settings, a) for a in agent_ids]
        )
        claims = Counter(item_id for _, mine in claimed_by_worker for item_id in mine)
        assert sum(claims.values()) == ITEMS
        assert set(claims) == queued
        assert set(claims.values()) == {1}
        assert queue.waiting() == []
        # The database agrees with what each worker was told.
        for agent_id, mine in claimed_by_worker:
            for item_id in mine:
                stored = queue.item(item_id)
                assert stored is not None and stored.claimed_by == agent_id
        logged = Counter(c.item_id for c in queue.changes_since(limit=5000) if c.kind == "claimed")
        assert logged == claims


@pytest.mark.slow
def test_eight_agents_choosing_the_same_item_one_gets_it(database: QueueDatabase) -> None:
    with database.queue() as queue:
        agent_ids = [queue.add_agent(f"agent{n}", "pw", skills=["orders"]).id for n in range(8)]
        item = queue.enqueue("call-1", "call", "explicit_request", 0, "orders")
        outcomes = dict(
            run_workers(
                claim_one, [(database.url, database.settings, item.id, a) for a in agent_ids]
            )
        )
        winners = [agent_id for agent_id, won in outcomes.items() if won]
        assert len(outcomes) == WORKERS
        assert len(winners) == 1
        stored = queue.item(item.id)
        assert stored is not None and stored.claimed_by == winners[0]


def test_threads_sharing_one_queue_claim_every_item_once(database: QueueDatabase) -> None:
    with database.queue() as queue:
        agent_ids = [queue.add_agent(f"agent{n}", "pw", skills=["orders"]).id for n in range(8)]
        for n in range(100):
            queue.enqueue(f"call-{n}", "call", "explicit_request", 0, "orders")
        start = threading.Barrier(len(agent_ids))
        claimed: list[int] = []

        def claim_all(agent_id: int) -> None:
            start.wait()
            while (item := queue.claim_next(agent_id)) is not None:
                claimed.append(item.id)

        threads = [threading.Thread(target=claim_all, args=(a,)) for a in agent_ids]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        assert len(claimed) == 100
        assert len(set(claimed)) == 100
        assert queue.waiting() == []
