"""Signalling for agents' voices: offers and answers through the queue's database.

The console and the bot process that holds a call may run on different
machines; both already share the queue's database and its change feed, so the
browser's WebRTC offer is written here by the console, the bot's hold line
hears of it through the feed (change ``voice_offer``) and writes the answer,
and the console, waiting on the feed too, hands the answer to the browser.
Only the audio goes straight between the browser and the bot process.

Who may connect audio: the agent who has the call claimed (role ``agent``),
or a supervisor or admin listening in (``monitor``) or talking to the agent
alone (``whisper``). A newer link of the same person and role replaces the
older one (a reloaded page, a second tab): the older is closed by the bot and
its page says so.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from bot.queue import accounts, rows
from bot.queue.records import QueueError
from bot.queue.schema import VOICE_ROLES, VOICE_STATES, items, voice_links
from bot.queue.service import AgentQueue

OVERSEEING_ROLES = ("supervisor", "admin")
# Links that still carry (or are about to carry) audio.
OPEN_STATES = ("offered", "answered", "connected")
MAX_SDP_CHARS = 20_000


@dataclass(frozen=True)
class VoiceLink:
    id: int
    item_id: int
    call_id: str
    agent_id: int
    role: str
    state: str
    offer: str
    answer: str | None
    error: str | None
    on_hold: bool
    created_at: datetime
    updated_at: datetime


def _link(row: Any) -> VoiceLink:
    result: VoiceLink = rows.record(VoiceLink, row)
    return result


class VoiceSignals:
    """The voice links of one queue database."""

    def __init__(self, queue: AgentQueue) -> None:
        self.queue = queue

    # -- the console's side

    def offer(self, item_id: int, agent_id: int, role: str, sdp: str) -> VoiceLink:
        """Records a browser's offer for a live call; refuses anyone who may
        not connect audio to it (``QueueError`` with a code the console shows)."""
        if role not in VOICE_ROLES:
            raise QueueError("invalid", f"role must be one of {VOICE_ROLES}, got {role!r}")
        if not sdp.strip() or len(sdp) > MAX_SDP_CHARS or "m=audio" not in sdp:
            raise QueueError("bad_offer", "the browser's offer has no audio")
        queue = self.queue
        now = queue._now()
        with queue._write() as conn:
            item = conn.execute(items.select().where(items.c.id == item_id)).mappings().first()
            if item is None:
                raise QueueError("no_such_item", f"there is no queue item {item_id}")
            agent = accounts.agent_row(conn, agent_id)
            if item["status"] != "claimed":
                raise QueueError("not_live", f"item {item_id} is not a call with an agent")
            if role == "agent" and item["claimed_by"] != agent_id:
                raise QueueError("not_claimed", f"agent {agent_id} does not have item {item_id}")
            if role != "agent" and agent["role"] not in OVERSEEING_ROLES:
                raise QueueError("not_supervisor", "only supervisors may listen in or whisper")
            conn.execute(
                voice_links.update()
                .where(
                    voice_links.c.item_id == item_id,
                    voice_links.c.agent_id == agent_id,
                    voice_links.c.role == role,
                    voice_links.c.state.in_(OPEN_STATES),
                )
                .values(state="replaced", updated_at=now)
            )
            values = {
                "item_id": item_id,
                "call_id": item["call_id"],
                "agent_id": agent_id,
                "role": role,
                "state": "offered",
                "offer": sdp,
                "on_hold": False,
                "created_at": now,
                "updated_at": now,
            }
            inserted = conn.execute(voice_links.insert().values(**values))
            link_id = int(inserted.inserted_primary_key[0])
            queue._changed(conn, "voice_offer", item_id, agent_id)
            return self._read(conn, link_id)

    def set_hold(self, item_id: int, agent_id: int, on_hold: bool) -> VoiceLink:
        """The agent holds the caller (music) or takes them back."""
        queue = self.queue
        with queue._write() as conn:
            row = (
                conn.execute(
                    voice_links.select()
                    .where(
                        voice_links.c.item_id == item_id,
                        voice_links.c.agent_id == agent_id,
                        voice_links.c.role == "agent",
                        voice_links.c.state.in_(OPEN_STATES),
                    )
                    .order_by(voice_links.c.id.desc())
                )
                .mappings()
                .first()
            )
            if row is None:
                raise QueueError("no_voice", "this call has no voice connection of yours")
            conn.execute(
                voice_links.update()
                .where(voice_links.c.id == row["id"])
                .values(on_hold=on_hold, updated_at=queue._now())
            )
            queue._changed(conn, "voice_hold", item_id, agent_id)
            return self._read(conn, int(row["id"]))

    # -- the bot's side

    def pending(self, item_id: int) -> list[VoiceLink]:
        """Links of the queue item's call that the bot has yet to act on or
        still carries (a callback's call has the item's links too)."""
        with self.queue.engine.connect() as conn:
            found = conn.execute(
                voice_links.select()
                .where(voice_links.c.item_id == item_id, voice_links.c.state.in_(OPEN_STATES))
                .order_by(voice_links.c.id)
            ).mappings()
            return [_link(row) for row in found]

    def answer(self, link_id: int, sdp: str) -> VoiceLink:
        return self._update(link_id, "voice_answer", state="answered", answer=sdp)

    def set_state(self, link_id: int, state: str, error: str | None = None) -> VoiceLink:
        if state not in VOICE_STATES:
            raise QueueError("invalid", f"state must be one of {VOICE_STATES}, got {state!r}")
        return self._update(link_id, "voice_state", state=state, error=error)

    def requeue(self, item_id: int, agent_id: int) -> bool:
        """The agent's audio was lost: the caller goes back in line where they
        were (their first place in the queue is kept) and the agent is free.
        False when the item was no longer with that agent."""
        queue = self.queue
        now = queue._now()
        with queue._write() as conn:
            updated = conn.execute(
                items.update()
                .where(
                    items.c.id == item_id,
                    items.c.status == "claimed",
                    items.c.claimed_by == agent_id,
                )
                .values(status="waiting", claimed_at=None, claimed_by=None)
            )
            if updated.rowcount != 1:
                return False
            accounts.update_state(conn, agent_id, "available", now)
            queue._changed(conn, "requeued", item_id, agent_id)
            return True

    # -- both

    def link(self, link_id: int) -> VoiceLink | None:
        with self.queue.engine.connect() as conn:
            row = (
                conn.execute(voice_links.select().where(voice_links.c.id == link_id))
                .mappings()
                .first()
            )
            return None if row is None else _link(row)

    def _update(self, link_id: int, change: str, **values: Any) -> VoiceLink:
        queue = self.queue
        with queue._write() as conn:
            row = (
                conn.execute(voice_links.select().where(voice_links.c.id == link_id))
                .mappings()
                .first()
            )
            if row is None:
                raise QueueError("no_such_link", f"there is no voice link {link_id}")
            conn.execute(
                voice_links.update()
                .where(voice_links.c.id == link_id)
                .values(updated_at=queue._now(), **values)
            )
            queue._changed(conn, change, int(row["item_id"]), int(row["agent_id"]))
            return self._read(conn, link_id)

    @staticmethod
    def _read(conn: sa.engine.Connection, link_id: int) -> VoiceLink:
        row = conn.execute(voice_links.select().where(voice_links.c.id == link_id)).mappings().one()
        return _link(row)
