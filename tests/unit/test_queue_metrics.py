"""Today's queue figures from a day built with hand-set times (SQLite)."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

from bot.queue import AgentQueue, HourlyCount, QueueSettings
from tests.queue_databases import ManualClock


def at(day: int, hour: int, minute: int, second: int = 0) -> datetime:
    return datetime(2025, 3, day, hour, minute, second, tzinfo=timezone.utc)


def test_a_day_of_queue_figures(tmp_path: Path) -> None:
    clock = ManualClock(at(13, 22, 0))
    settings = QueueSettings(day_timezone="UTC")
    queue = AgentQueue(f"sqlite:///{tmp_path / 'queue.sqlite3'}", settings, clock=clock)
    ann = queue.add_agent("ann", "pw", skills=["orders"]).id

    def step(when: datetime) -> None:
        clock.now = when

    # Yesterday, all done yesterday: not counted.
    step(at(13, 22, 0))
    old = queue.enqueue("z", "call", "explicit_request", 0, "orders").id
    step(at(13, 22, 0, 5))
    queue.claim(old, ann)
    step(at(13, 22, 3))
    queue.resolve(old, ann, "done")
    # Enqueued yesterday, answered after a 15-minute wait just after midnight.
    step(at(13, 23, 50))
    late = queue.enqueue("y", "call", "explicit_request", 0, "orders").id
    step(at(14, 0, 5))
    queue.claim(late, ann)
    step(at(14, 0, 10))
    queue.resolve(late, ann, "done")  # handled in 300 s
    # Answered in 10 s; another caller gives up after 60 s.
    step(at(14, 9, 0))
    quick = queue.enqueue("a", "call", "explicit_request", 0, "orders").id
    step(at(14, 9, 0, 10))
    queue.claim(quick, ann)
    step(at(14, 9, 1))
    queue.enqueue("b", "call", "explicit_request", 0, "orders")
    step(at(14, 9, 2))
    assert len(queue.abandon("b")) == 1
    step(at(14, 9, 5, 10))
    queue.resolve(quick, ann, "done")  # 300 s
    # Answered in 30 s: outside the 20 s service level.
    step(at(14, 10, 0))
    slow = queue.enqueue("c", "call", "explicit_request", 0, "orders").id
    step(at(14, 10, 0, 30))
    queue.claim(slow, ann)
    step(at(14, 10, 2, 30))
    queue.resolve(slow, ann, "done")  # 120 s
    # Callbacks: one made, one still waiting (they count in neither rate).
    step(at(14, 10, 30))
    made = queue.enqueue("d", "callback", "after_hours", 0, "orders").id
    step(at(14, 10, 45))
    queue.enqueue("f", "callback", "after_hours", 0, "orders")
    step(at(14, 11, 0))
    queue.claim(made, ann)
    step(at(14, 11, 1))
    queue.resolve(made, ann, "called_back")  # 60 s
    # A caller waiting now.
    step(at(14, 11, 30))
    queue.enqueue("e", "call", "explicit_request", 0, "orders")
    step(at(14, 11, 32))

    metrics = queue.metrics_today(service_level_seconds=20)
    queue.close()
    assert metrics.day_start == at(14, 0, 0)
    assert (metrics.queue_length, metrics.callbacks_waiting) == (2, 1)
    assert metrics.longest_wait_seconds == 120.0  # the caller, not the 47-minute callback
    assert metrics.calls_handled == 4
    assert metrics.average_handle_seconds == (300 + 300 + 120 + 60) / 4
    # Live calls answered or abandoned today: y (late), a (quick), c (slow), b (abandoned).
    assert metrics.service_level == 1 / 4
    assert metrics.abandonment_rate == 1 / 4
    busy = {count.hour: count for count in metrics.hourly if count != HourlyCount(count.hour)}
    assert busy == {
        0: HourlyCount(0, enqueued=0, claimed=1, resolved=1, abandoned=0),
        9: HourlyCount(9, enqueued=2, claimed=1, resolved=1, abandoned=1),
        10: HourlyCount(10, enqueued=3, claimed=1, resolved=1, abandoned=0),
        11: HourlyCount(11, enqueued=1, claimed=1, resolved=1, abandoned=0),
    }
    assert [count.hour for count in metrics.hourly] == list(range(24))


def test_a_wider_service_level_counts_slower_answers(tmp_path: Path) -> None:
    clock = ManualClock(at(14, 9, 0))
    settings = QueueSettings(day_timezone="UTC")
    with AgentQueue(f"sqlite:///{tmp_path / 'q.sqlite3'}", settings, clock=clock) as queue:
        ann = queue.add_agent("ann", "pw", skills=["orders"]).id
        item = queue.enqueue("a", "call", "explicit_request", 0, "orders").id
        clock.advance(30)
        queue.claim(item, ann)
        assert queue.metrics_today(service_level_seconds=20).service_level == 0.0
        assert queue.metrics_today(service_level_seconds=30).service_level == 1.0


def test_the_day_follows_the_configured_time_zone(tmp_path: Path) -> None:
    # 03:00 UTC on 14 March is 23:00 on 13 March in New York (UTC-4 since 9 March).
    clock = ManualClock(at(13, 3, 0))
    settings = QueueSettings(day_timezone="America/New_York")
    with AgentQueue(f"sqlite:///{tmp_path / 'q.sqlite3'}", settings, clock=clock) as queue:
        queue.enqueue("before", "call", "explicit_request")  # 23:00 on the 12th, local
        clock.now = at(13, 5, 0)
        queue.enqueue("after", "call", "explicit_request")  # 01:00 on the 13th, local
        clock.now = at(14, 3, 0)
        metrics = queue.metrics_today()
    assert metrics.day_start == at(13, 4, 0)
    enqueued = {count.hour: count.enqueued for count in metrics.hourly if count.enqueued}
    assert enqueued == {1: 1}
    assert metrics.queue_length == 2  # waiting counts whenever it started


def test_an_empty_day_has_no_rates(tmp_path: Path) -> None:
    with AgentQueue(f"sqlite:///{tmp_path / 'q.sqlite3'}") as queue:
        metrics = queue.metrics_today()
    assert (metrics.queue_length, metrics.longest_wait_seconds, metrics.calls_handled) == (0, 0, 0)
    assert metrics.average_handle_seconds is None
    assert metrics.abandonment_rate is None
    assert metrics.service_level is None
    assert metrics.hourly == tuple(HourlyCount(hour) for hour in range(24))
