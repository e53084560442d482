"""Queue benchmark: claim throughput and console update latency, on SQLite and
on PostgreSQL. Writes benchmarks/results/queue.json.

Claims: 8 agent processes (spawned) are released together on a queue of
600 waiting items and claim until it is empty; claims per second is the
number of items over the time from the first worker's start to the last
worker's finish (median of 3 rounds). Every claim is counted per item (from what the workers were
given and from the change log): an item claimed twice is a double claim.

Console updates: one process enqueues 60 items at irregular intervals while
a QueueWatcher in this process waits for changes; each latency runs from just
before enqueue() is called to the moment the watcher hands over the change id
(both stamped with the system-wide monotonic clock).

PostgreSQL comes from VOICEBOT_BENCH_POSTGRES_URL (default: the local
server's ``test`` database); each run works in a schema of its own, dropped
afterwards.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import platform
import random
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from bot.queue import AgentQueue, QueueSettings, QueueWatcher

PROJECT_DIR = Path(__file__).resolve().parent.parent
RESULTS = PROJECT_DIR / "benchmarks" / "results" / "queue.json"
POSTGRES_URL = os.environ.get(
    "VOICEBOT_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
WORKERS = 8
ITEMS = 600
CLAIM_ROUNDS = 3  # on a fresh database each; the median is reported
UPDATES = 60
UPDATE_GAP_SECONDS = (0.03, 0.09)  # random, so enqueues do not keep step with the polling


@contextmanager
def sqlite_database() -> Iterator[tuple[str, QueueSettings]]:
    with tempfile.TemporaryDirectory(prefix="queue-bench-") as folder:
        yield f"sqlite:///{Path(folder) / 'queue.sqlite3'}", QueueSettings()


@contextmanager
def postgres_database() -> Iterator[tuple[str, QueueSettings]]:
    schema = f"queue_bench_{uuid.uuid4().hex[:12]}"
    engine = sa.create_engine(POSTGRES_URL, future=True)
    with engine.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    url = sa.engine.make_url(POSTGRES_URL).update_query_dict({"options": f"-csearch_path={schema}"})
    try:
        yield url.render_as_string(hide_password=False), QueueSettings(notify_channel=schema)
    finally:
        with engine.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        engine.dispose()


def percentiles_ms(seconds: list[float]) -> dict[str, float]:
    ordered = sorted(value * 1000 for value in seconds)

    def rank(share: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(share * len(ordered)))], 1)

    return {
        "count": len(ordered),
        "p50": rank(0.50),
        "p95": rank(0.95),
        "max": round(ordered[-1], 1),
        "mean": round(sum(ordered) / len(ordered), 1),
    }


# -- claims


def claim_worker(url: str, settings: QueueSettings, agent_id: int, start: Any, out: Any) -> None:
    queue = AgentQueue(url, settings)
    queue.agent(agent_id)  # connect before the clock starts
    start.wait()
    began = time.monotonic()
    mine = []
    while (item := queue.claim_next(agent_id)) is not None:
        mine.append(item.id)
    out.put((agent_id, mine, began, time.monotonic()))
    queue.close()


def measure_claims(url: str, settings: QueueSettings) -> dict[str, Any]:
    context = multiprocessing.get_context("spawn")
    with AgentQueue(url, settings) as queue:
        agent_ids = [queue.add_agent(f"bench{n}", "pw", skills=["orders"]).id for n in range(8)]
        for n in range(ITEMS):
            queue.enqueue(f"call-{n}", "call", "explicit_request", n % 3, "orders")
        first_change = queue.changes_since(limit=100_000)[-1].id
        start = context.Barrier(WORKERS)
        out = context.Queue()
        workers = [
            context.Process(target=claim_worker, args=(url, settings, agent_id, start, out))
            for agent_id in agent_ids
        ]
        for worker in workers:
            worker.start()
        reports = [out.get(timeout=600) for _ in workers]
        for worker in workers:
            worker.join()
        given = Counter(item_id for _, mine, _, _ in reports for item_id in mine)
        logged = Counter(
            change.item_id
            for change in queue.changes_since(first_change, limit=100_000)
            if change.kind == "claimed"
        )
        unclaimed = len(queue.waiting())
    seconds = max(end for *_, end in reports) - min(began for _, _, began, _ in reports)
    double_claims = sum(n - 1 for n in given.values() if n > 1) + sum(
        n - 1 for n in logged.values() if n > 1
    )
    return {
        "items": ITEMS,
        "workers": WORKERS,
        "seconds": round(seconds, 3),
        "claims_per_second": round(sum(given.values()) / seconds, 1),
        "double_claims": double_claims,
        "unclaimed": unclaimed,
        "claims_per_worker": sorted(len(mine) for _, mine, _, _ in reports),
    }


# -- console updates


def enqueue_worker(url: str, settings: QueueSettings, out: Any) -> None:
    queue = AgentQueue(url, settings)
    queue.waiting()  # connect before the first measured enqueue
    pace = random.Random(7)
    stamps = []
    for n in range(UPDATES):
        time.sleep(pace.uniform(*UPDATE_GAP_SECONDS))
        before = time.monotonic()
        item = queue.enqueue(f"update-{n}", "call", "explicit_request", 0, "billing")
        stamps.append((item.id, before, time.monotonic()))
    out.put(stamps)
    queue.close()


def measure_updates(url: str, settings: QueueSettings) -> dict[str, Any]:
    context = multiprocessing.get_context("spawn")
    seen_at: dict[int, float] = {}
    # A fresh database: the enqueuer's are the only changes.
    with QueueWatcher(url, settings) as watcher, AgentQueue(url, settings) as queue:
        out = context.Queue()
        enqueuer = context.Process(target=enqueue_worker, args=(url, settings, out))
        enqueuer.start()
        deadline = time.monotonic() + 120
        while len(seen_at) < UPDATES and time.monotonic() < deadline:
            for change_id in watcher.wait(timeout_seconds=1.0):
                seen_at[change_id] = time.monotonic()
        stamps = out.get(timeout=60)
        enqueuer.join()
        change_of_item = {
            change.item_id: change.id
            for change in queue.changes_since(limit=100_000)
            if change.kind == "enqueued"
        }
    latencies = [seen_at[change_of_item[item_id]] - before for item_id, before, _ in stamps]
    return {
        "console_update_ms": percentiles_ms(latencies),
        "enqueue_ms": percentiles_ms([after - before for _, before, after in stamps]),
        "watcher": "LISTEN/NOTIFY" if url.startswith("postgresql") else "polling",
        "poll_interval_ms": settings.poll_interval_seconds * 1000,
    }


def main() -> int:
    backends = {"sqlite": sqlite_database, "postgresql": postgres_database}
    measured: dict[str, dict[str, Any]] = {}
    for name, database in backends.items():
        try:
            rounds = []
            for _ in range(CLAIM_ROUNDS):
                with database() as (url, settings):
                    rounds.append(measure_claims(url, settings))
            with database() as (url, settings):
                updates = measure_updates(url, settings)
        except sa.exc.OperationalError as exc:
            print(f"{name}: unavailable: {exc.orig}", file=sys.stderr)
            measured[name] = {"error": str(exc.orig).strip()}
            continue
        rates = sorted(r["claims_per_second"] for r in rounds)
        measured[name] = {
            "claims": {
                "claims_per_second": rates[len(rates) // 2],
                "double_claims": sum(r["double_claims"] for r in rounds),
                "unclaimed": sum(r["unclaimed"] for r in rounds),
                "rounds": rounds,
            },
            **updates,
        }
        print(f"{name}: {json.dumps(measured[name])}", file=sys.stderr)
    done = {name: m for name, m in measured.items() if "claims" in m}
    results: dict[str, Any] = {
        "benchmark": "queue",
        "measured_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "workers": WORKERS,
        "items": ITEMS,
        "claims_per_second": {n: m["claims"]["claims_per_second"] for n, m in done.items()},
        "double_claims": {n: m["claims"]["double_claims"] for n, m in done.items()},
        "console_update_ms": {
            n: {k: m["console_update_ms"][k] for k in ("p50", "p95")} for n, m in done.items()
        },
        "backends": measured,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))
    wrong = any(m["claims"]["double_claims"] or m["claims"]["unclaimed"] for m in done.values())
    return 1 if wrong or len(done) < len(backends) else 0


if __name__ == "__main__":
    sys.exit(main())
