"""The human-agent queue: escalated calls and callbacks waiting for agents.

Sync API: the bot and the console call it from worker threads (one
AgentQueue may serve many threads). Every change is committed before its
method returns (a queued item outlives the process that queued it) and writes
one row to the change log; on PostgreSQL the same transaction sends
``NOTIFY <notify_channel>, '<change id>'`` so watchers hear of it at once.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from bot.queue import accounts, rows
from bot.queue.metrics import compute_metrics, day_bounds
from bot.queue.records import (
    Agent,
    AgentMessage,
    QueueChange,
    QueueError,
    QueueItem,
    QueueMetrics,
    QueueSettings,
    WaitingEntry,
)
from bot.queue.schema import (
    ITEM_KINDS,
    WRITE_OPTION,
    agents,
    changes,
    create_queue_engine,
    create_tables,
    dial_requests,
    items,
    messages,
)

Clock = Callable[[], datetime]
_CHANNEL_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def notify_channel_name(settings: QueueSettings) -> str:
    """The channel, checked: it is spliced into LISTEN as an identifier."""
    if not _CHANNEL_NAME.fullmatch(settings.notify_channel):
        raise QueueError("invalid", f"bad notify channel name {settings.notify_channel!r}")
    return settings.notify_channel


class AgentQueue:
    """The queue in one database (SQLite file or PostgreSQL, by URL)."""

    def __init__(
        self, url: str, settings: QueueSettings | None = None, clock: Clock = utc_now
    ) -> None:
        self.url = url
        self.settings = settings or QueueSettings()
        self._channel = notify_channel_name(self.settings)
        self._clock = clock
        self.engine = create_queue_engine(url)
        self._writing = self.engine.execution_options(**{WRITE_OPTION: True})
        self._notifies = self.engine.dialect.name == "postgresql"
        create_tables(self.engine)

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> AgentQueue:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # -- plumbing

    def _now(self) -> datetime:
        now = self._clock()
        if now.tzinfo is None:
            raise QueueError("invalid", "the queue's clock must return aware datetimes")
        return now.astimezone(timezone.utc)

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        """One write transaction (``BEGIN IMMEDIATE`` on SQLite), committed on exit."""
        with self._writing.begin() as conn:
            yield conn

    def _changed(
        self, conn: Connection, kind: str, item_id: int | None = None, agent_id: int | None = None
    ) -> int:
        values = {"kind": kind, "item_id": item_id, "agent_id": agent_id, "at": self._now()}
        change_id = int(conn.execute(changes.insert().values(**values)).inserted_primary_key[0])
        if self._notifies:
            conn.execute(sa.select(sa.func.pg_notify(self._channel, str(change_id))))
        return change_id

    def _finish(
        self, item_id: int, agent_id: int, values: dict[str, Any], agent_state: str
    ) -> QueueItem:
        """Moves an item this agent has claimed to a final status."""
        now = self._now()
        with self._write() as conn:
            updated = conn.execute(
                items.update()
                .where(
                    items.c.id == item_id,
                    items.c.status == "claimed",
                    items.c.claimed_by == agent_id,
                )
                .values(resolved_at=now, **values)
            )
            if updated.rowcount != 1:
                raise rows.refusal(conn, item_id, agent_id)
            accounts.update_state(conn, agent_id, agent_state, now)
            self._changed(conn, values["status"], item_id, agent_id)
            return rows.item_from_row(rows.item_row(conn, item_id), now)

    # -- the bot's side

    def enqueue(
        self,
        call_id: str,
        kind: str,
        reason: str,
        priority: int = 0,
        skill: str = "general",
        caller_number: str | None = None,
        handoff: Mapping[str, Any] | None = None,
        summary: str = "",
    ) -> QueueItem:
        """Queues a live call (``kind="call"``) or a callback request.

        ``handoff`` is what the agent sees: intents with confidences, the
        details collected, the timed transcript, the summary (any JSON).
        """
        if kind not in ITEM_KINDS:
            raise QueueError("invalid", f"kind must be one of {ITEM_KINDS}, got {kind!r}")
        if not call_id or not reason or not skill:
            raise QueueError("invalid", "call_id, reason and skill must not be empty")
        now = self._now()
        row = {
            "call_id": call_id,
            "kind": kind,
            "reason": reason,
            "priority": int(priority),
            "skill": skill,
            "status": "waiting",
            "enqueued_at": now,
            "caller_number": caller_number,
            "handoff": json.dumps(dict(handoff or {}), ensure_ascii=False),
            "summary": summary,
        }
        with self._write() as conn:
            item_id = int(conn.execute(items.insert().values(**row)).inserted_primary_key[0])
            self._changed(conn, "enqueued", item_id)
            stored = rows.item_row(conn, item_id)
            return rows.item_from_row(stored, now, rows.position(conn, stored))

    def convert_to_callback(self, item_id: int, caller_number: str) -> QueueItem:
        """A waiting caller chose a call back over waiting: the live call leaves
        the queue (``returned``, disposition ``converted_to_callback``, so it
        counts neither as handled nor as abandoned) and a callback task with
        the same handoff takes its place in line."""
        now = self._now()
        with self._write() as conn:
            updated = conn.execute(
                items.update()
                .where(items.c.id == item_id, items.c.status == "waiting")
                .values(status="returned", resolved_at=now, disposition="converted_to_callback")
            )
            if updated.rowcount != 1:
                raise QueueError("invalid", f"item {item_id} is not waiting")
            self._changed(conn, "returned", item_id)
            live = rows.item_row(conn, item_id)
            row = {
                "call_id": live["call_id"],
                "kind": "callback",
                "reason": live["reason"],
                "priority": live["priority"],
                "skill": live["skill"],
                "status": "waiting",
                "enqueued_at": now,
                "caller_number": caller_number,
                "handoff": live["handoff"],
                "summary": f"{live['summary']} The caller chose a call back instead of waiting.",
            }
            new_id = int(conn.execute(items.insert().values(**row)).inserted_primary_key[0])
            self._changed(conn, "enqueued", new_id)
            stored = rows.item_row(conn, new_id)
            return rows.item_from_row(stored, now, rows.position(conn, stored))

    def abandon(self, call_id: str) -> list[QueueItem]:
        """The caller hung up while waiting: that call's waiting items (live
        calls only; a callback stays queued) end as abandoned, with their wait."""
        now = self._now()
        abandoned = []
        with self._write() as conn:
            waiting = conn.execute(
                items.select().where(
                    items.c.call_id == call_id,
                    items.c.kind == "call",
                    items.c.status == "waiting",
                )
            ).mappings()
            for row in list(waiting):
                waited = (now - row["enqueued_at"]).total_seconds()
                conn.execute(
                    items.update()
                    .where(items.c.id == row["id"])
                    .values(status="abandoned", resolved_at=now, abandoned_wait_seconds=waited)
                )
                self._changed(conn, "abandoned", row["id"])
                abandoned.append(rows.item_from_row(rows.item_row(conn, row["id"]), now))
        return abandoned

    def position(self, item_id: int) -> int:
        """1 = the next item its agents will take: higher priority first, then
        first come, among waiting items of the same skill. 0 when the item is
        no longer waiting."""
        with self.engine.connect() as conn:
            return rows.position(conn, rows.item_row(conn, item_id))

    def estimated_wait_seconds(self, item_id: int) -> float:
        """A coarse estimate of the time until an agent takes the item:

            position x mean handling time / max(1, staffed agents)

        where the mean handling time (claim to resolve) is over the last
        ``handle_time_sample`` resolved items (``default_handle_seconds`` when
        none yet), and staffed agents are those with the item's skill who are
        available or on a call. 0.0 when the item is no longer waiting.
        """
        with self.engine.connect() as conn:
            row = rows.item_row(conn, item_id)
            position = rows.position(conn, row)
            if position == 0:
                return 0.0
            mean_handle_seconds = rows.mean_handle_seconds(
                conn, self.settings.handle_time_sample, self.settings.default_handle_seconds
            )
            staffed = accounts.count_staffed(conn, row["skill"])
        return position * mean_handle_seconds / max(1, staffed)

    def send_to_caller(self, call_id: str, agent_id: int, text: str) -> AgentMessage:
        """Text for the bot to speak to the caller; only from the agent who
        has the call claimed."""
        text = text.strip()
        if not text:
            raise QueueError("invalid", "an empty message")
        now = self._now()
        with self._write() as conn:
            item_id = rows.claimed_item_of(conn, call_id, agent_id)
            if item_id is None:
                raise QueueError("not_claimed", f"agent {agent_id} does not have call {call_id}")
            values = {"call_id": call_id, "agent_id": agent_id, "text": text, "created_at": now}
            message_id = int(
                conn.execute(messages.insert().values(**values)).inserted_primary_key[0]
            )
            self._changed(conn, "message_sent", item_id, agent_id)
        return AgentMessage(message_id, call_id, agent_id, text, now, None)

    def pending_messages(self, call_id: str) -> list[AgentMessage]:
        """Undelivered agent messages for the call, oldest first."""
        with self.engine.connect() as conn:
            found = conn.execute(
                messages.select()
                .where(messages.c.call_id == call_id, messages.c.delivered_at.is_(None))
                .order_by(messages.c.id)
            ).mappings()
            return [AgentMessage(**row) for row in found]

    def mark_delivered(self, message_ids: Iterable[int]) -> int:
        """Marks messages spoken; returns how many were still undelivered."""
        ids = list(message_ids)
        if not ids:
            return 0
        with self._write() as conn:
            updated = conn.execute(
                messages.update()
                .where(messages.c.id.in_(ids), messages.c.delivered_at.is_(None))
                .values(delivered_at=self._now())
            ).rowcount
            if updated:
                self._changed(conn, "message_delivered")
        return int(updated)

    # -- the agents' side

    def claim_next(self, agent_id: int) -> QueueItem | None:
        """Takes the first waiting item in one of the agent's skills, or None.

        Atomic across processes: PostgreSQL locks the chosen row with
        ``FOR UPDATE SKIP LOCKED`` (other claimers pass it by); SQLite runs
        the read and the update in one ``BEGIN IMMEDIATE`` transaction.
        """
        now = self._now()
        with self._write() as conn:
            agent = accounts.agent_row(conn, agent_id)
            skills = json.loads(agent["skills"])
            if not skills:
                return None
            # A callback whose last attempt failed waits out its retry time.
            retrying = sa.exists().where(
                dial_requests.c.item_id == items.c.id, dial_requests.c.retry_after > now
            )
            first = (
                sa.select(items.c.id)
                .where(items.c.status == "waiting", items.c.skill.in_(skills), ~retrying)
                .order_by(*rows.CLAIM_ORDER)
                .limit(1)
            )
            if self._notifies:
                first = first.with_for_update(skip_locked=True)
            item_id = conn.execute(first).scalar()
            if item_id is None:
                return None
            conn.execute(
                items.update()
                .where(items.c.id == item_id)
                .values(status="claimed", claimed_at=now, claimed_by=agent_id)
            )
            accounts.update_state(conn, agent_id, "on_call", now)
            self._changed(conn, "claimed", item_id, agent_id)
            return rows.item_from_row(rows.item_row(conn, item_id), now)

    def claim(self, item_id: int, agent_id: int) -> QueueItem | None:
        """Takes a chosen waiting item (whatever its skill); None when it is
        no longer waiting (another agent got it first, or the caller left)."""
        now = self._now()
        with self._write() as conn:
            accounts.agent_row(conn, agent_id)
            updated = conn.execute(
                items.update()
                .where(items.c.id == item_id, items.c.status == "waiting")
                .values(status="claimed", claimed_at=now, claimed_by=agent_id)
            )
            if updated.rowcount != 1:
                rows.item_row(conn, item_id)  # no_such_item for an unknown id
                return None
            accounts.update_state(conn, agent_id, "on_call", now)
            self._changed(conn, "claimed", item_id, agent_id)
            return rows.item_from_row(rows.item_row(conn, item_id), now)

    def resolve(self, item_id: int, agent_id: int, disposition: str, notes: str = "") -> QueueItem:
        """The agent finished the item; the agent goes to wrap-up."""
        values = {"status": "resolved", "disposition": disposition, "notes": notes}
        return self._finish(item_id, agent_id, values, "wrap_up")

    def return_to_bot(self, item_id: int, agent_id: int) -> QueueItem:
        """The agent hands the call back to the bot; the agent is available again."""
        return self._finish(item_id, agent_id, {"status": "returned"}, "available")

    # -- reading

    def item(self, item_id: int) -> QueueItem | None:
        with self.engine.connect() as conn:
            try:
                row = rows.item_row(conn, item_id)
            except QueueError:
                return None
            return rows.item_from_row(row, self._now(), rows.position(conn, row))

    def waiting(self) -> list[QueueItem]:
        """Waiting items in claim order, each with its position in its skill."""
        now = self._now()
        with self.engine.connect() as conn:
            found = conn.execute(
                items.select().where(items.c.status == "waiting").order_by(*rows.CLAIM_ORDER)
            ).mappings()
            ahead: dict[str, int] = {}
            waiting = []
            for row in found:
                ahead[row["skill"]] = ahead.get(row["skill"], 0) + 1
                waiting.append(rows.item_from_row(row, now, ahead[row["skill"]]))
            return waiting

    def waiting_list(self) -> list[WaitingEntry]:
        """``waiting`` as the queue list shows it: the listed columns only, no
        handoff package read or parsed."""
        now = self._now()
        with self.engine.connect() as conn:
            return rows.waiting_entries(conn, now)

    def changes_since(self, after_id: int = 0, limit: int = 1000) -> list[QueueChange]:
        """Change log rows after ``after_id``, oldest first."""
        with self.engine.connect() as conn:
            found = conn.execute(
                changes.select().where(changes.c.id > after_id).order_by(changes.c.id).limit(limit)
            ).mappings()
            return [QueueChange(**row) for row in found]

    def metrics_today(self, service_level_seconds: float = 20) -> QueueMetrics:
        """Today's figures (see ``QueueMetrics``), the day in ``day_timezone``."""
        now = self._now()
        day_start, to_local = day_bounds(now, self.settings.day_timezone)
        with self.engine.connect() as conn:
            today = rows.waiting_or_active_since(conn, day_start)
        return compute_metrics(today, now, day_start, to_local, service_level_seconds)

    # -- agent accounts

    def add_agent(
        self, name: str, password: str, role: str = "agent", skills: Iterable[str] = ("general",)
    ) -> Agent:
        with self._write() as conn:
            agent = accounts.insert_agent(conn, name, password, role, tuple(skills), self._now())
            self._changed(conn, "agent_added", agent_id=agent.id)
            return agent

    def verify_password(self, name: str, password: str) -> Agent | None:
        """The agent when the password is theirs, else None."""
        with self.engine.connect() as conn:
            return accounts.check_password(conn, name, password)

    def agent(self, agent_id: int) -> Agent | None:
        with self.engine.connect() as conn:
            try:
                return accounts.agent_from_row(accounts.agent_row(conn, agent_id))
            except QueueError:
                return None

    def agents(self) -> list[Agent]:
        with self.engine.connect() as conn:
            found = conn.execute(agents.select().order_by(agents.c.name)).mappings()
            return [accounts.agent_from_row(row) for row in found]

    def set_agent_state(self, agent_id: int, state: str) -> Agent:
        now = self._now()
        with self._write() as conn:
            accounts.agent_row(conn, agent_id)
            accounts.update_state(conn, agent_id, state, now)
            self._changed(conn, "agent_state", agent_id=agent_id)
            return accounts.agent_from_row(accounts.agent_row(conn, agent_id))
