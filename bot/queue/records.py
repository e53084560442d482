"""What the queue hands out: items, agents, messages, changes, metrics; its
settings and its error."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


class QueueError(Exception):
    """A queue operation that was refused; ``code`` says why.

    Codes: ``no_such_item``, ``no_such_agent``, ``not_claimed`` (the item is
    not with an agent), ``claimed_by_other`` (it is with another agent),
    ``agent_exists``, ``invalid`` (a value outside its allowed set).
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class QueueSettings:
    # PostgreSQL NOTIFY channel; the service and its watchers must agree.
    notify_channel: str = "voicebot_queue"
    # How often a watcher reads the change log on SQLite.
    poll_interval_seconds: float = 0.1
    # Wait estimates: mean handling time of this many recently resolved items,
    # or the default when none has been resolved yet.
    handle_time_sample: int = 20
    default_handle_seconds: float = 180.0
    # The day that metrics_today counts: an IANA zone name; "" = this machine's.
    day_timezone: str = ""


@dataclass(frozen=True)
class QueueItem:
    id: int
    call_id: str
    kind: str
    reason: str
    priority: int
    skill: str
    status: str
    enqueued_at: datetime
    claimed_at: datetime | None
    claimed_by: int | None
    resolved_at: datetime | None
    disposition: str | None
    notes: str | None
    caller_number: str | None
    handoff: dict[str, Any]
    summary: str
    abandoned_wait_seconds: float | None
    # 1 = the next one its agents will get; 0 when no longer waiting.
    position: int = 0
    # Time in the queue: until now while waiting, else until claimed or abandoned.
    waiting_seconds: float | None = None


@dataclass(frozen=True)
class WaitingEntry:
    """A waiting item as the queue list shows it: no handoff package (read
    ``AgentQueue.item`` for that)."""

    id: int
    call_id: str
    kind: str
    reason: str
    priority: int
    skill: str
    enqueued_at: datetime
    caller_number: str | None
    summary: str
    # 1 = the next one its agents will get, among the waiting items of its skill.
    position: int
    # Time in the queue until the list was read.
    waiting_seconds: float


@dataclass(frozen=True)
class Agent:
    id: int
    name: str
    role: str
    skills: tuple[str, ...]
    state: str
    state_since: datetime


@dataclass(frozen=True)
class AgentMessage:
    """Text an agent typed for the bot to speak to the caller."""

    id: int
    call_id: str
    agent_id: int
    text: str
    created_at: datetime
    delivered_at: datetime | None


@dataclass(frozen=True)
class QueueChange:
    id: int
    kind: str
    item_id: int | None
    agent_id: int | None
    at: datetime


@dataclass(frozen=True)
class HourlyCount:
    """One hour of today (local to the metrics' time zone)."""

    hour: int
    enqueued: int = 0
    claimed: int = 0
    resolved: int = 0
    abandoned: int = 0


@dataclass(frozen=True)
class QueueMetrics:
    day_start: datetime
    # Items waiting now, live calls and callbacks; callbacks_waiting of them are callbacks.
    queue_length: int
    callbacks_waiting: int
    # The longest current wait of a live caller (callbacks have nobody on the line).
    longest_wait_seconds: float
    # Items resolved today, both kinds; claim to resolve on average.
    calls_handled: int
    average_handle_seconds: float | None
    # Live calls only, of those claimed or abandoned today (None when there were none).
    abandonment_rate: float | None
    service_level: float | None
    service_level_seconds: float
    hourly: tuple[HourlyCount, ...] = field(default_factory=tuple)
