"""Today's queue figures for the supervisors' wallboard, from item rows."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timezone
from typing import Any
from zoneinfo import ZoneInfo

from bot.queue.records import HourlyCount, QueueMetrics


def day_bounds(now: datetime, day_timezone: str) -> tuple[datetime, Callable[[datetime], datetime]]:
    """Today's start (UTC) and the conversion to local time, in the named
    IANA zone or ("") this machine's."""
    zone = ZoneInfo(day_timezone) if day_timezone else None

    def to_local(moment: datetime) -> datetime:
        return moment.astimezone(zone) if zone else moment.astimezone()

    midnight = to_local(now).replace(hour=0, minute=0, second=0, microsecond=0)
    if zone is None:  # the machine's offset at midnight, which DST may make differ from now's
        midnight = midnight.replace(tzinfo=None).astimezone()
    return midnight.astimezone(timezone.utc), to_local


def _seconds(start: datetime, end: datetime) -> float:
    return (end - start).total_seconds()


def _share(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def compute_metrics(
    rows: Iterable[Mapping[str, Any]],
    now: datetime,
    day_start: datetime,
    to_local: Callable[[datetime], datetime],
    service_level_seconds: float,
) -> QueueMetrics:
    """Figures for the day from ``day_start`` to ``now``.

    ``rows`` must hold every item waiting now and every item enqueued,
    claimed or finished since ``day_start`` (others are ignored). An event
    counts on the day (and in the local hour) it happened: an item enqueued
    yesterday and claimed today counts as claimed today.
    """
    hourly: dict[str, list[int]] = {
        name: [0] * 24 for name in ("enqueued", "claimed", "resolved", "abandoned")
    }

    def today(moment: datetime | None) -> bool:
        return moment is not None and day_start <= moment <= now

    def count(name: str, moment: datetime) -> None:
        hourly[name][to_local(moment).hour] += 1

    waiting_calls: list[float] = []
    queue_length = callbacks_waiting = 0
    handle_seconds: list[float] = []
    calls_answered = calls_answered_in_time = calls_abandoned = 0
    for row in rows:
        enqueued_at: datetime = row["enqueued_at"]
        claimed_at: datetime | None = row["claimed_at"]
        resolved_at: datetime | None = row["resolved_at"]
        status = row["status"]
        live_call = row["kind"] == "call"
        if status == "waiting":
            queue_length += 1
            if live_call:
                waiting_calls.append(_seconds(enqueued_at, now))
            else:
                callbacks_waiting += 1
        if today(enqueued_at):
            count("enqueued", enqueued_at)
        if claimed_at is not None and today(claimed_at):
            count("claimed", claimed_at)
            if live_call:
                calls_answered += 1
                if _seconds(enqueued_at, claimed_at) <= service_level_seconds:
                    calls_answered_in_time += 1
        if resolved_at is not None and today(resolved_at):
            if status == "resolved":
                count("resolved", resolved_at)
                if claimed_at is not None:
                    handle_seconds.append(_seconds(claimed_at, resolved_at))
            elif status == "abandoned":
                count("abandoned", resolved_at)
                calls_abandoned += int(live_call)
    offered = calls_answered + calls_abandoned
    return QueueMetrics(
        day_start=day_start,
        queue_length=queue_length,
        callbacks_waiting=callbacks_waiting,
        longest_wait_seconds=max(waiting_calls, default=0.0),
        calls_handled=len(handle_seconds),
        average_handle_seconds=(
            sum(handle_seconds) / len(handle_seconds) if handle_seconds else None
        ),
        abandonment_rate=_share(calls_abandoned, offered),
        service_level=_share(calls_answered_in_time, offered),
        service_level_seconds=service_level_seconds,
        hourly=tuple(
            HourlyCount(
                hour=hour,
                enqueued=hourly["enqueued"][hour],
                claimed=hourly["claimed"][hour],
                resolved=hourly["resolved"][hour],
                abandoned=hourly["abandoned"][hour],
            )
            for hour in range(24)
        ),
    )
