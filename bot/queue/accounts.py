"""Agent rows: accounts, skills, states (helpers for the queue service,
each working inside the caller's transaction)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from bot.queue.passwords import UNKNOWN_AGENT_HASH, hash_password, password_matches
from bot.queue.records import Agent, QueueError
from bot.queue.schema import AGENT_ROLES, AGENT_STATES, agents

# States in which an agent counts as staffing the queue for wait estimates.
STAFFED_STATES = ("available", "on_call")


def agent_from_row(row: Mapping[str, Any]) -> Agent:
    return Agent(
        id=row["id"],
        name=row["name"],
        role=row["role"],
        skills=tuple(json.loads(row["skills"])),
        state=row["state"],
        state_since=row["state_since"],
    )


def agent_row(conn: Connection, agent_id: int) -> Mapping[str, Any]:
    row = conn.execute(agents.select().where(agents.c.id == agent_id)).mappings().first()
    if row is None:
        raise QueueError("no_such_agent", f"no agent {agent_id}")
    return row


def insert_agent(
    conn: Connection, name: str, password: str, role: str, skills: tuple[str, ...], now: datetime
) -> Agent:
    """A new agent, offline; the password stored as a salted scrypt hash."""
    if role not in AGENT_ROLES:
        raise QueueError("invalid", f"role must be one of {AGENT_ROLES}, got {role!r}")
    if not name.strip() or not password:
        raise QueueError("invalid", "an agent needs a name and a password")
    if any(not skill.strip() or "," in skill for skill in skills):
        raise QueueError("invalid", f"skills must be non-empty names, got {skills!r}")
    taken = conn.execute(sa.select(agents.c.id).where(agents.c.name == name)).first()
    if taken is not None:
        raise QueueError("agent_exists", f"an agent named {name!r} exists")
    row = {
        "name": name,
        "password_hash": hash_password(password),
        "role": role,
        "skills": json.dumps(list(skills)),
        "state": "offline",
        "state_since": now,
    }
    agent_id = int(conn.execute(agents.insert().values(**row)).inserted_primary_key[0])
    return agent_from_row({"id": agent_id, **row})


def check_password(conn: Connection, name: str, password: str) -> Agent | None:
    row = conn.execute(agents.select().where(agents.c.name == name)).mappings().first()
    stored = row["password_hash"] if row is not None else UNKNOWN_AGENT_HASH
    matches = password_matches(password, stored)
    return agent_from_row(row) if row is not None and matches else None


def update_state(conn: Connection, agent_id: int, state: str, now: datetime) -> None:
    if state not in AGENT_STATES:
        raise QueueError("invalid", f"state must be one of {AGENT_STATES}, got {state!r}")
    conn.execute(
        agents.update().where(agents.c.id == agent_id).values(state=state, state_since=now)
    )


def count_staffed(conn: Connection, skill: str) -> int:
    """Agents with the skill who are available or on a call."""
    rows = conn.execute(sa.select(agents.c.skills).where(agents.c.state.in_(STAFFED_STATES)))
    return sum(skill in json.loads(skills) for (skills,) in rows)
