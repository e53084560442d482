"""The queue on SQLite and on the real PostgreSQL server: a whole escalation,
live change notification, and items that outlive a killed process."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from bot.queue import AgentQueue, QueueSettings, QueueWatcher
from tests.queue_databases import BACKENDS, QueueDatabase, queue_database

PROJECT_DIR = Path(__file__).resolve().parents[2]
# The console promises live updates within this long.
CONSOLE_UPDATE_SECONDS = 1.0


@pytest.fixture(params=BACKENDS)
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[QueueDatabase]:
    with queue_database(request.param, tmp_path) as database:
        yield database


@pytest.fixture
def queue(database: QueueDatabase) -> Iterator[AgentQueue]:
    with database.queue() as queue:
        yield queue


def test_an_escalation_from_queue_to_resolution(queue: AgentQueue) -> None:
    ann = queue.add_agent("ann", "pw", skills=["orders"])
    queue.set_agent_state(ann.id, "available")
    handoff = {
        "intents": [{"name": "order_status", "confidence": 0.38}],
        "details": {"order_id": "12345", "name": "Ünal"},
        "transcript": [{"t_ms": 900, "speaker": "caller", "text": "I want a person"}],
        "summary": "wants a person about order 12345",
    }
    urgent = queue.enqueue("c1", "call", "angry_caller", 5, "orders", "+1555", handoff, "angry")
    calm = queue.enqueue("c2", "call", "explicit_request", 0, "orders")
    assert [item.id for item in queue.waiting()] == [urgent.id, calm.id]
    assert queue.position(calm.id) == 2
    assert queue.estimated_wait_seconds(calm.id) == 360.0

    claimed = queue.claim_next(ann.id)
    assert claimed is not None and claimed.id == urgent.id
    assert claimed.handoff == handoff
    message = queue.send_to_caller("c1", ann.id, "Hello, I'm Ann.")
    assert queue.pending_messages("c1") == [message]
    assert queue.mark_delivered([message.id]) == 1
    resolved = queue.resolve(urgent.id, ann.id, "refund_issued", "refunded 12345")
    assert resolved.status == "resolved"
    assert queue.claim(calm.id, ann.id) is not None
    assert queue.return_to_bot(calm.id, ann.id).status == "returned"

    metrics = queue.metrics_today()
    assert (metrics.queue_length, metrics.calls_handled) == (0, 1)
    assert metrics.service_level == 1.0
    assert queue.verify_password("ann", "pw") == queue.agent(ann.id)
    assert [c.kind for c in queue.changes_since()][-3:] == ["resolved", "claimed", "returned"]


def test_the_watcher_sees_a_change_within_a_second(database: QueueDatabase) -> None:
    with database.queue() as queue, QueueWatcher(database.url, database.settings) as watcher:
        assert watcher.wait(timeout_seconds=0.3) == []
        item = queue.enqueue("c1", "call", "explicit_request")
        seen = watcher.wait(timeout_seconds=CONSOLE_UPDATE_SECONDS)
        change = queue.changes_since()[-1]
        assert (change.kind, change.item_id) == ("enqueued", item.id)
        assert seen == [change.id]


def test_a_waiting_watcher_wakes_for_a_change_from_another_process(
    database: QueueDatabase,
) -> None:
    with QueueWatcher(database.url, database.settings) as watcher:
        seen: list[int] = []
        waiting = threading.Thread(target=lambda: seen.extend(watcher.wait(timeout_seconds=30)))
        waiting.start()
        item_id = enqueue_in_child(database, "from-child", die=False)
        waiting.join(timeout=CONSOLE_UPDATE_SECONDS + 30)
    with database.queue() as queue:
        logged = [c for c in queue.changes_since() if c.item_id == item_id]
    assert seen == [change.id for change in logged]


def test_closing_a_watcher_wakes_its_waiting_thread(database: QueueDatabase) -> None:
    watcher = QueueWatcher(database.url, database.settings)
    returned: list[list[int]] = []
    waiting = threading.Thread(target=lambda: returned.append(watcher.wait(timeout_seconds=None)))
    waiting.start()
    watcher.close()
    waiting.join(timeout=10)
    assert not waiting.is_alive()
    assert returned == [[]]
    assert watcher.wait(timeout_seconds=None) == []


def test_watchers_of_other_channels_hear_nothing(tmp_path: Path) -> None:
    # Channels exist on PostgreSQL only; SQLite watchers read their own file.
    with queue_database("postgresql", tmp_path) as database:
        other = QueueSettings(notify_channel=database.settings.notify_channel + "_other")
        with QueueWatcher(database.url, other) as watcher, database.queue() as queue:
            queue.enqueue("c1", "call", "explicit_request")
            assert watcher.wait(timeout_seconds=0.5) == []


def test_an_item_outlives_the_process_that_queued_it(database: QueueDatabase) -> None:
    item_id = enqueue_in_child(database, "crash-1", die=True)
    with database.queue() as queue:
        item = queue.item(item_id)
        assert item is not None
        assert (item.call_id, item.status, item.priority, item.skill) == (
            "crash-1", "waiting", 2, "orders"
        )  # fmt: skip
        assert [i.id for i in queue.waiting()] == [item_id]
        with queue.engine.connect() as conn:
            kinds = conn.execute(sa.text("SELECT kind FROM queue_changes")).scalars().all()
        assert kinds == ["enqueued"]


def enqueue_in_child(database: QueueDatabase, call_id: str, die: bool) -> int:
    """Enqueues in a new Python process; with ``die`` it SIGKILLs itself right
    after enqueue returns. The item id it printed."""
    if die:
        code = "from tests.queue_databases import enqueue_then_die as run; run(*sys.argv[1:])"
    else:
        code = (
            "from bot.queue import AgentQueue, QueueSettings\n"
            "url, channel, call_id = sys.argv[1:]\n"
            "with AgentQueue(url, QueueSettings(notify_channel=channel)) as queue:\n"
            "    print(queue.enqueue(call_id, 'call', 'explicit_request').id)\n"
        )
    proc = subprocess.run(
        [sys.executable, "-c", "import sys\n" + code, database.url]
        + [database.settings.notify_channel, call_id],
        cwd=PROJECT_DIR,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == (-9 if die else 0), proc.stderr
    return int(proc.stdout.strip())


def test_a_watcher_recovers_from_a_lost_connection(tmp_path: Path) -> None:
    """PostgreSQL ends the listening connection; the watcher reconnects and
    reports what happened in between from the change log."""
    with queue_database("postgresql", tmp_path) as database:
        channel = database.settings.notify_channel
        with QueueWatcher(database.url, database.settings) as watcher, database.queue() as queue:
            queue.enqueue("c1", "call", "explicit_request")
            assert len(watcher.wait(timeout_seconds=CONSOLE_UPDATE_SECONDS)) == 1
            with queue.engine.begin() as conn:
                ended = (
                    conn.execute(
                        sa.text(
                            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                            " WHERE application_name = :name"
                        ),
                        {"name": f"voicebot queue watcher {channel}"},
                    )
                    .scalars()
                    .all()
                )
            assert ended == [True]
            missed = queue.enqueue("c2", "call", "explicit_request")
            seen = watcher.wait(timeout_seconds=30)
            change = queue.changes_since()[-1]
            assert (change.kind, change.item_id) == ("enqueued", missed.id)
            assert seen == [change.id]
