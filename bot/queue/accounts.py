"""Agent accounts: rows, skills, states, sign-in checks, roles and disabling,
and the audit log of sign-ins and account changes.

The row helpers work inside the caller's transaction (the queue service uses
them). ``AgentAccounts`` runs its own transactions: sign-in (which moves an
old password hash to the current one), role changes, disabling, lockouts.
The audit log is a table in the queue's database, so every console process
sharing that database shares it; the login throttle counts failures there.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from bot.queue.passwords import check_password as check_hash
from bot.queue.passwords import hash_password, scheme_of, unknown_agent_hash
from bot.queue.records import Agent, QueueError
from bot.queue.schema import AGENT_ROLES, AGENT_STATES, WRITE_OPTION, UtcDateTime, agents

# States in which an agent counts as staffing the queue for wait estimates.
STAFFED_STATES = ("available", "on_call")
# What the audit log records.
AUDIT_EVENTS = (
    "added",
    "login",
    "login_failed",
    "login_disabled",
    "locked_out",
    "unlocked",
    "logout",
    "role_changed",
    "disabled",
    "enabled",
)
# Events after which earlier failed logins of a name no longer count.
_FAILURES_RESET_BY = ("login", "unlocked", "locked_out")
MAX_NAME_CHARS = 128
MAX_ADDRESS_CHARS = 64

account_metadata = sa.MetaData()

audit_log = sa.Table(
    "queue_account_audit",
    account_metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("at", UtcDateTime, nullable=False),
    sa.Column("event", sa.String(32), nullable=False),
    # The account's name, or the name typed at a failed sign-in.
    sa.Column("name", sa.String(MAX_NAME_CHARS), nullable=False),
    # The account, when the name is one (no foreign key: failures name anything).
    sa.Column("agent_id", sa.Integer),
    # The client's address (console), or None (command line).
    sa.Column("address", sa.String(MAX_ADDRESS_CHARS)),
    # Who made a change: a console user, or ``cli:<system user>``.
    sa.Column("actor", sa.String(MAX_NAME_CHARS)),
    sa.Column("detail", sa.Text, nullable=False),
    sa.Index("ix_queue_account_audit_name", "name", "event", "id"),
)

# Accounts that may no longer sign in (kept, not deleted: their calls,
# messages and voice links refer to them).
disabled_agents = sa.Table(
    "queue_disabled_agents",
    account_metadata,
    sa.Column("agent_id", sa.Integer, primary_key=True),
    sa.Column("disabled_at", UtcDateTime, nullable=False),
)

# Any fixed number: serialises creating these tables on PostgreSQL.
_CREATE_LOCK_KEY = 0x766F_6963_6561


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


def _named_row(conn: Connection, name: str) -> Mapping[str, Any]:
    row = conn.execute(agents.select().where(agents.c.name == name)).mappings().first()
    if row is None:
        raise QueueError("no_such_agent", f"no agent named {name!r}")
    return row


def insert_agent(
    conn: Connection, name: str, password: str, role: str, skills: tuple[str, ...], now: datetime
) -> Agent:
    """A new agent, offline; the password stored as an argon2id hash."""
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
    """The agent when the password is theirs (disabled or not), else None."""
    row = conn.execute(agents.select().where(agents.c.name == name)).mappings().first()
    stored = row["password_hash"] if row is not None else unknown_agent_hash()
    matches = check_hash(password, stored).matches
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


def create_account_tables(engine: Engine) -> None:
    """Creates the audit log and the disabled accounts' table if missing; safe
    when several processes start at once."""
    with engine.execution_options(**{WRITE_OPTION: True}).begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_CREATE_LOCK_KEY)))
        account_metadata.create_all(conn)


# -- the audit log


@dataclass(frozen=True)
class AuditEntry:
    id: int
    at: datetime
    event: str
    name: str
    agent_id: int | None
    address: str | None
    actor: str | None
    detail: str


def record_event(
    conn: Connection,
    event: str,
    name: str,
    now: datetime,
    agent_id: int | None = None,
    address: str | None = None,
    actor: str | None = None,
    detail: str = "",
) -> None:
    """One row of the audit log (names and addresses cut to their columns)."""
    if event not in AUDIT_EVENTS:
        raise QueueError("invalid", f"audit event must be one of {AUDIT_EVENTS}, got {event!r}")
    conn.execute(
        audit_log.insert().values(
            at=now,
            event=event,
            name=name[:MAX_NAME_CHARS],
            agent_id=agent_id,
            address=address[:MAX_ADDRESS_CHARS] if address else None,
            actor=actor[:MAX_NAME_CHARS] if actor else None,
            detail=detail,
        )
    )


def locked_until(conn: Connection, name: str, now: datetime, lockout: timedelta) -> datetime | None:
    """When the name's lockout ends, if it is locked out now: its latest
    lockout is younger than ``lockout`` and no unlock came after it."""
    latest = conn.execute(
        sa.select(audit_log.c.event, audit_log.c.at)
        .where(
            audit_log.c.name == name[:MAX_NAME_CHARS],
            audit_log.c.event.in_(("locked_out", "unlocked")),
        )
        .order_by(audit_log.c.id.desc())
        .limit(1)
    ).first()
    if latest is None or latest.event != "locked_out":
        return None
    ends = _as_utc(latest.at) + lockout
    return ends if ends > now else None


def recent_failures(conn: Connection, name: str, now: datetime, window: timedelta) -> int:
    """Failed sign-ins of the name in the last ``window``, since its last
    successful sign-in, unlock or lockout."""
    name = name[:MAX_NAME_CHARS]
    reset = (
        sa.select(sa.func.coalesce(sa.func.max(audit_log.c.id), 0))
        .where(audit_log.c.name == name, audit_log.c.event.in_(_FAILURES_RESET_BY))
        .scalar_subquery()
    )
    query = sa.select(sa.func.count()).where(
        audit_log.c.name == name,
        audit_log.c.event == "login_failed",
        audit_log.c.at > now - window,
        audit_log.c.id > reset,
    )
    return int(conn.execute(query).scalar() or 0)


def _as_utc(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def _utc_now() -> datetime:
    return datetime.now(timezone.utc)


# -- accounts with their own transactions


@dataclass(frozen=True)
class SignIn:
    """What checking a name and password found."""

    # The account, when the password is its own.
    agent: Agent | None
    # The account the name belongs to, right password or not (for the audit log).
    agent_id: int | None = None
    # The password is right, but the account may no longer sign in.
    disabled: bool = False
    # The scheme of the hash that was replaced with a current argon2id one, if any.
    rehashed_from: str = ""


class AgentAccounts:
    """Sign-in checks and account changes in the queue's database, each change
    in the audit log. ``clock`` returns aware UTC datetimes."""

    def __init__(self, engine: Engine, clock: Callable[[], datetime] = _utc_now) -> None:
        self._engine = engine
        self._writes = engine.execution_options(**{WRITE_OPTION: True})
        self._clock = clock

    def create_tables(self) -> None:
        create_account_tables(self._engine)

    def now(self) -> datetime:
        return self._clock()

    def sign_in(self, name: str, password: str) -> SignIn:
        """Checks the password (an unknown name costs the same as a wrong
        password); a right password whose hash is of an old scheme or cost
        gets a new hash. Records nothing: the caller knows the address."""
        found = (
            sa.select(agents, disabled_agents.c.agent_id.is_not(None).label("disabled"))
            .select_from(
                agents.outerjoin(disabled_agents, disabled_agents.c.agent_id == agents.c.id)
            )
            .where(agents.c.name == name)
        )
        with self._engine.connect() as conn:
            row = conn.execute(found).mappings().first()
        stored = row["password_hash"] if row is not None else unknown_agent_hash()
        check = check_hash(password, stored)
        if row is None:
            return SignIn(None)
        if not check.matches:
            return SignIn(None, agent_id=row["id"])
        agent = agent_from_row(row)
        if row["disabled"]:
            return SignIn(agent, agent_id=agent.id, disabled=True)
        rehashed_from = ""
        if check.needs_rehash:
            # Hashed outside the write transaction: it takes a tenth of a second.
            renewed = hash_password(password)
            with self._writes.begin() as conn:
                replaced = conn.execute(
                    agents.update()
                    .where(agents.c.id == agent.id, agents.c.password_hash == stored)
                    .values(password_hash=renewed)
                ).rowcount
            rehashed_from = scheme_of(stored) if replaced == 1 else ""
        return SignIn(agent, agent_id=agent.id, rehashed_from=rehashed_from)

    def record(
        self,
        event: str,
        name: str,
        agent_id: int | None = None,
        address: str | None = None,
        actor: str | None = None,
        detail: str = "",
    ) -> None:
        with self._writes.begin() as conn:
            record_event(conn, event, name, self._clock(), agent_id, address, actor, detail)

    def locked_until(self, name: str, lockout: timedelta) -> datetime | None:
        with self._engine.connect() as conn:
            return locked_until(conn, name, self._clock(), lockout)

    def record_failure(
        self,
        name: str,
        agent_id: int | None,
        address: str | None,
        failures_allowed: int,
        lockout: timedelta,
    ) -> datetime | None:
        """Records a failed sign-in; when it is the name's ``failures_allowed``-th
        within ``lockout``, also a lockout, and returns when that ends."""
        now = self._clock()
        with self._writes.begin() as conn:
            record_event(conn, "login_failed", name, now, agent_id, address)
            failures = recent_failures(conn, name, now, lockout)
            if failures < failures_allowed:
                return None
            ends = now + lockout
            detail = f"{failures} failed logins within {_minutes(lockout)}; until {ends:%H:%M} UTC"
            record_event(conn, "locked_out", name, now, agent_id, address, detail=detail)
            return ends

    def unlock(self, name: str, actor: str, lockout: timedelta) -> bool:
        """Lifts the name's lockout (a name need not be an account: unknown
        names are locked out too). False when it was not locked out; the
        unlock is recorded either way, and clears its failed logins."""
        now = self._clock()
        with self._writes.begin() as conn:
            was_locked = locked_until(conn, name, now, lockout) is not None
            agent_id = conn.execute(sa.select(agents.c.id).where(agents.c.name == name)).scalar()
            detail = "" if was_locked else "was not locked out"
            record_event(conn, "unlocked", name, now, agent_id, actor=actor, detail=detail)
        return was_locked

    def set_role(self, name: str, role: str, actor: str) -> tuple[Agent, str]:
        """Gives the account another role, at once for its open sessions; the
        account and its role before."""
        if role not in AGENT_ROLES:
            raise QueueError("invalid", f"role must be one of {AGENT_ROLES}, got {role!r}")
        now = self._clock()
        with self._writes.begin() as conn:
            row = _named_row(conn, name)
            before = str(row["role"])
            if before != role:
                conn.execute(agents.update().where(agents.c.id == row["id"]).values(role=role))
                detail = f"{before} -> {role}"
                record_event(conn, "role_changed", name, now, row["id"], actor=actor, detail=detail)
            return agent_from_row(agent_row(conn, row["id"])), before

    def set_disabled(self, name: str, disabled: bool, actor: str) -> tuple[Agent, bool]:
        """Disables the account (it may not sign in, its sessions end at their
        next request) or enables it again; the account and whether anything
        changed. A disabled agent who was available goes offline."""
        now = self._clock()
        with self._writes.begin() as conn:
            row = _named_row(conn, name)
            agent_id = int(row["id"])
            was = conn.execute(
                sa.select(disabled_agents.c.agent_id).where(disabled_agents.c.agent_id == agent_id)
            ).first()
            if (was is not None) == disabled:
                return agent_from_row(row), False
            if disabled:
                conn.execute(disabled_agents.insert().values(agent_id=agent_id, disabled_at=now))
                if row["state"] in ("available", "wrap_up"):
                    update_state(conn, agent_id, "offline", now)
            else:
                conn.execute(disabled_agents.delete().where(disabled_agents.c.agent_id == agent_id))
            event = "disabled" if disabled else "enabled"
            record_event(conn, event, name, now, agent_id, actor=actor)
            return agent_from_row(agent_row(conn, agent_id)), True

    def accounts(self) -> list[tuple[Agent, bool]]:
        """Every account by name, each with whether it is disabled."""
        query = (
            sa.select(agents, disabled_agents.c.agent_id.is_not(None).label("disabled"))
            .select_from(
                agents.outerjoin(disabled_agents, disabled_agents.c.agent_id == agents.c.id)
            )
            .order_by(agents.c.name)
        )
        with self._engine.connect() as conn:
            found = conn.execute(query).mappings().all()
        return [(agent_from_row(row), bool(row["disabled"])) for row in found]

    def audit(self, name: str | None = None, limit: int = 100) -> list[AuditEntry]:
        """The newest audit rows first, of one name or all."""
        query = audit_log.select().order_by(audit_log.c.id.desc()).limit(limit)
        if name is not None:
            query = query.where(audit_log.c.name == name[:MAX_NAME_CHARS])
        with self._engine.connect() as conn:
            rows = conn.execute(query).mappings().all()
        return [AuditEntry(**{**row, "at": _as_utc(row["at"])}) for row in rows]


def _minutes(span: timedelta) -> str:
    minutes = span.total_seconds() / 60
    return f"{minutes:g} minute{'' if minutes == 1 else 's'}"
