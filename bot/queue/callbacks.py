"""Callback tasks dialled for the agent: requests, attempts, and their outcome.

An agent who takes a callback task asks for it to be dialled; the request is
written here, a bot process with phone lines takes it (``take``: one process
per request, even with several machines), dials, and reports the outcome
(``finish``). An answered call goes on with the agent. A failed attempt
(no answer, busy, rejected, failed, an answering machine) sends the task back to the queue with its
attempt count and a time before which it is not offered again; after
``max_attempts`` the task is closed as unreachable. A request nobody took
(no phone lines) or made outside the calling hours is not an attempt.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from bot.queue import accounts, rows
from bot.queue.records import QueueError
from bot.queue.schema import dial_requests, items
from bot.queue.service import AgentQueue

FAILED = ("no_answer", "busy", "rejected", "failed", "voicemail")
OPEN = ("requested", "dialling")


@dataclass(frozen=True)
class DialRequest:
    id: int
    item_id: int
    agent_id: int
    number: str
    state: str
    detail: str | None
    retry_after: datetime | None
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class DialOutcome:
    request: DialRequest
    attempts: int
    # What became of the task: "connected", "retry" (back in the queue),
    # "unreachable" (closed), "waiting" (not an attempt: back in the queue).
    task: str


def _request(row: Any) -> DialRequest:
    result: DialRequest = rows.record(DialRequest, row)
    return result


class CallbackDialling:
    def __init__(self, queue: AgentQueue) -> None:
        self.queue = queue

    # -- the console's side

    def request(self, item_id: int, agent_id: int) -> DialRequest:
        """Asks for the agent's callback task to be dialled."""
        queue = self.queue
        now = queue._now()
        with queue._write() as conn:
            item = conn.execute(items.select().where(items.c.id == item_id)).mappings().first()
            if item is None:
                raise QueueError("no_such_item", f"there is no queue item {item_id}")
            if item["kind"] != "callback":
                raise QueueError("not_callback", f"item {item_id} is not a callback task")
            if item["status"] != "claimed" or item["claimed_by"] != agent_id:
                raise QueueError("not_claimed", f"agent {agent_id} does not have item {item_id}")
            if not item["caller_number"]:
                raise QueueError("no_number", f"item {item_id} has no number to call")
            busy = conn.execute(
                sa.select(dial_requests.c.id).where(
                    dial_requests.c.item_id == item_id, dial_requests.c.state.in_(OPEN)
                )
            ).first()
            if busy is not None:
                raise QueueError("already_dialling", f"item {item_id} is being dialled")
            values = {
                "item_id": item_id,
                "agent_id": agent_id,
                "number": item["caller_number"],
                "state": "requested",
                "created_at": now,
                "updated_at": now,
            }
            request_id = int(
                conn.execute(dial_requests.insert().values(**values)).inserted_primary_key[0]
            )
            queue._changed(conn, "dial_requested", item_id, agent_id)
            return self._read(conn, request_id)

    def unserved(self, request_id: int) -> DialRequest | None:
        """A request nobody took (no bot with phone lines): withdrawn, and
        not an attempt. None if a dialler took it meanwhile."""
        queue = self.queue
        with queue._write() as conn:
            updated = conn.execute(
                dial_requests.update()
                .where(dial_requests.c.id == request_id, dial_requests.c.state == "requested")
                .values(state="unserved", updated_at=queue._now())
            )
            if updated.rowcount != 1:
                return None
            row = self._read(conn, request_id)
            queue._changed(conn, "dial_unserved", row.item_id, row.agent_id)
            return row

    # -- the dialler's side

    def take(self) -> DialRequest | None:
        """The oldest request nobody has taken, now this process's to dial."""
        queue = self.queue
        with queue._write() as conn:
            oldest = (
                sa.select(dial_requests.c.id)
                .where(dial_requests.c.state == "requested")
                .order_by(dial_requests.c.id)
                .limit(1)
            )
            if queue._notifies:
                oldest = oldest.with_for_update(skip_locked=True)
            request_id = conn.execute(oldest).scalar()
            if request_id is None:
                return None
            conn.execute(
                dial_requests.update()
                .where(dial_requests.c.id == request_id)
                .values(state="dialling", updated_at=queue._now())
            )
            row = self._read(conn, int(request_id))
            queue._changed(conn, "dial_started", row.item_id, row.agent_id)
            return row

    def finish(
        self,
        request_id: int,
        outcome: str,
        detail: str = "",
        max_attempts: int = 3,
        retry_after: timedelta = timedelta(minutes=15),
    ) -> DialOutcome:
        """Records how the attempt went and settles the task (see the module)."""
        if outcome not in ("answered", "outside_hours", *FAILED):
            raise QueueError("invalid", f"unknown dial outcome {outcome!r}")
        queue = self.queue
        now = queue._now()
        with queue._write() as conn:
            row = self._read(conn, request_id)
            values: dict[str, Any] = {"state": outcome, "detail": detail, "updated_at": now}
            if outcome == "outside_hours":
                values["retry_after"] = now + retry_after
            attempts = self._attempts(conn, row.item_id) + (outcome in FAILED)
            task = "connected"
            if outcome in FAILED and attempts >= max_attempts:
                task = "unreachable"
                conn.execute(
                    items.update()
                    .where(items.c.id == row.item_id)
                    .values(
                        status="resolved",
                        resolved_at=now,
                        disposition="unreachable",
                        notes=f"{attempts} attempt(s); last: {outcome} {detail}".strip(),
                    )
                )
                accounts.update_state(conn, row.agent_id, "available", now)
            elif outcome != "answered":
                task = "retry" if outcome in FAILED else "waiting"
                if outcome in FAILED:
                    values["retry_after"] = now + retry_after
                conn.execute(
                    items.update()
                    .where(items.c.id == row.item_id, items.c.status == "claimed")
                    .values(status="waiting", claimed_at=None, claimed_by=None)
                )
                accounts.update_state(conn, row.agent_id, "available", now)
            conn.execute(
                dial_requests.update().where(dial_requests.c.id == request_id).values(**values)
            )
            queue._changed(conn, f"dial_{outcome}", row.item_id, row.agent_id)
            return DialOutcome(self._read(conn, request_id), attempts, task)

    # -- reading

    def get(self, request_id: int) -> DialRequest | None:
        with self.queue.engine.connect() as conn:
            found = (
                conn.execute(dial_requests.select().where(dial_requests.c.id == request_id))
                .mappings()
                .first()
            )
            return None if found is None else _request(found)

    def attempts(self, item_id: int) -> int:
        with self.queue.engine.connect() as conn:
            return self._attempts(conn, item_id)

    @staticmethod
    def _attempts(conn: sa.engine.Connection, item_id: int) -> int:
        return int(
            conn.execute(
                sa.select(sa.func.count())
                .select_from(dial_requests)
                .where(dial_requests.c.item_id == item_id, dial_requests.c.state.in_(FAILED))
            ).scalar()
            or 0
        )

    @staticmethod
    def _read(conn: sa.engine.Connection, request_id: int) -> DialRequest:
        row = (
            conn.execute(dial_requests.select().where(dial_requests.c.id == request_id))
            .mappings()
            .first()
        )
        if row is None:
            raise QueueError("no_such_request", f"there is no dial request {request_id}")
        return _request(row)
