"""Queue item rows: reading one, its position, and why it was refused
(helpers for the queue service, each inside the caller's transaction)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from bot.queue.records import QueueError, QueueItem, WaitingEntry
from bot.queue.schema import items

# The order in which agents get waiting items.
CLAIM_ORDER = (items.c.priority.desc(), items.c.enqueued_at, items.c.id)


def record(cls: Any, row: Mapping[str, Any]) -> Any:
    """A frozen dataclass of the queue's records from a row holding its fields."""
    return cls(**{name: row[name] for name in cls.__dataclass_fields__})


def item_from_row(row: Mapping[str, Any], now: datetime, position: int = 0) -> QueueItem:
    status = row["status"]
    if status == "waiting":
        waited: float | None = (now - row["enqueued_at"]).total_seconds()
    elif row["claimed_at"] is not None:
        waited = (row["claimed_at"] - row["enqueued_at"]).total_seconds()
    else:
        waited = row["abandoned_wait_seconds"]
    return QueueItem(
        id=row["id"],
        call_id=row["call_id"],
        kind=row["kind"],
        reason=row["reason"],
        priority=row["priority"],
        skill=row["skill"],
        status=status,
        enqueued_at=row["enqueued_at"],
        claimed_at=row["claimed_at"],
        claimed_by=row["claimed_by"],
        resolved_at=row["resolved_at"],
        disposition=row["disposition"],
        notes=row["notes"],
        caller_number=row["caller_number"],
        handoff=json.loads(row["handoff"]),
        summary=row["summary"],
        abandoned_wait_seconds=row["abandoned_wait_seconds"],
        position=position,
        waiting_seconds=waited,
    )


# What the queue list shows of a waiting item: never the handoff package,
# the largest column by far.
LISTED_COLUMNS = (
    items.c.id,
    items.c.call_id,
    items.c.kind,
    items.c.reason,
    items.c.priority,
    items.c.skill,
    items.c.enqueued_at,
    items.c.caller_number,
    items.c.summary,
)


def waiting_entries(conn: Connection, now: datetime) -> list[WaitingEntry]:
    """The waiting items in claim order, each with its position in its skill."""
    found = conn.execute(
        sa.select(*LISTED_COLUMNS).where(items.c.status == "waiting").order_by(*CLAIM_ORDER)
    ).all()
    ahead: dict[str, int] = {}
    listed = []
    for id_, call_id, kind, reason, priority, skill, enqueued_at, number, summary in found:
        ahead[skill] = ahead.get(skill, 0) + 1
        waited = (now - enqueued_at).total_seconds()
        listed.append(
            WaitingEntry(
                id_,
                call_id,
                kind,
                reason,
                priority,
                skill,
                enqueued_at,
                number,
                summary,
                ahead[skill],
                waited,
            )
        )
    return listed


def item_row(conn: Connection, item_id: int) -> Mapping[str, Any]:
    row = conn.execute(items.select().where(items.c.id == item_id)).mappings().first()
    if row is None:
        raise QueueError("no_such_item", f"no queue item {item_id}")
    return row


def position(conn: Connection, row: Mapping[str, Any]) -> int:
    """1 + the waiting items of the same skill that come first; 0 when not waiting."""
    if row["status"] != "waiting":
        return 0
    same_priority_earlier = sa.and_(
        items.c.priority == row["priority"],
        sa.or_(
            items.c.enqueued_at < row["enqueued_at"],
            sa.and_(items.c.enqueued_at == row["enqueued_at"], items.c.id < row["id"]),
        ),
    )
    ahead = conn.execute(
        sa.select(sa.func.count())
        .select_from(items)
        .where(
            items.c.status == "waiting",
            items.c.skill == row["skill"],
            sa.or_(items.c.priority > row["priority"], same_priority_earlier),
        )
    ).scalar_one()
    return int(ahead) + 1


def refusal(conn: Connection, item_id: int, agent_id: int) -> QueueError:
    """Why an item is not this agent's to finish."""
    row = item_row(conn, item_id)
    if row["status"] != "claimed":
        return QueueError("not_claimed", f"item {item_id} is {row['status']}, not claimed")
    return QueueError(
        "claimed_by_other", f"item {item_id} is with agent {row['claimed_by']}, not {agent_id}"
    )


def mean_handle_seconds(conn: Connection, sample: int, default_seconds: float) -> float:
    """Mean claim-to-resolve time of the last ``sample`` resolved items."""
    recent = conn.execute(
        sa.select(items.c.claimed_at, items.c.resolved_at)
        .where(items.c.status == "resolved")
        .order_by(items.c.resolved_at.desc(), items.c.id.desc())
        .limit(sample)
    ).all()
    if not recent:
        return default_seconds
    return sum((done - start).total_seconds() for start, done in recent) / len(recent)


def claimed_item_of(conn: Connection, call_id: str, agent_id: int) -> int | None:
    """The item of this call that this agent has claimed, if any."""
    found = conn.execute(
        sa.select(items.c.id)
        .where(
            items.c.call_id == call_id,
            items.c.status == "claimed",
            items.c.claimed_by == agent_id,
        )
        .order_by(items.c.id.desc())
    ).first()
    return None if found is None else int(found[0])


def waiting_or_active_since(conn: Connection, since: datetime) -> list[Mapping[str, Any]]:
    """Items waiting now, or enqueued, claimed or finished since ``since``."""
    found = conn.execute(
        items.select().where(
            sa.or_(
                items.c.status == "waiting",
                items.c.enqueued_at >= since,
                items.c.claimed_at >= since,
                items.c.resolved_at >= since,
            )
        )
    ).mappings()
    return list(found)
