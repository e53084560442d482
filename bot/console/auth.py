"""Console sign-in: server-side sessions, CSRF tokens, role checks and the
login throttle.

A session lives in the ``console_sessions`` table of the queue's database. The
browser holds only a random id; the table keeps its SHA-256, so a copy of the
table cannot be replayed as cookies. Each session has its own CSRF token,
which every POST form carries back. A session keeps the agent's id only: each
request reads the account's current role, and a disabled account has no
session (one query: the session joined to its account).

Sign-in (``LoginDesk``): after ``failures_allowed`` failed logins for one name
within ``lockout_minutes``, that name is locked out for ``lockout_minutes``,
right password or not, until it runs out or ``voicebot agents unlock`` lifts
it. Failures, lockouts, sign-ins and sign-outs go into the accounts' audit log
with the client's address.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
import secrets
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from bot.queue import Agent
from bot.queue.accounts import AgentAccounts, disabled_agents
from bot.queue.schema import agents

log = logging.getLogger(__name__)

SESSION_COOKIE = "console_session"
# Sign-in happens before a session exists: its form is protected by a
# double-submit token kept in this short-lived cookie.
LOGIN_CSRF_COOKIE = "console_login_csrf"
CSRF_FIELD = "csrf_token"

ROLES = ("agent", "supervisor", "trainer", "admin")

# Which roles may open each area of the console, or do what it names.
AREA_ROLES: dict[str, frozenset[str]] = {
    "queue": frozenset({"agent", "supervisor", "admin"}),
    "dashboard": frozenset({"supervisor", "admin"}),
    "training": frozenset({"trainer", "supervisor", "admin"}),
    # Retraining, evaluating, deploying and rolling back models.
    "deploy": frozenset({"trainer", "admin"}),
}
# What a refused role is told it cannot do (default: open the area's page).
AREA_ACTIONS = {"deploy": "retrain, evaluate, deploy or roll back models"}

# Password checks at once per console: each holds 64 MiB (argon2id) for a
# tenth of a second, so a flood of logins queues here instead.
MAX_CONCURRENT_PASSWORD_CHECKS = 4

metadata = sa.MetaData()

console_sessions = sa.Table(
    "console_sessions",
    metadata,
    sa.Column("session_hash", sa.String(64), primary_key=True),
    sa.Column("agent_id", sa.String(64), nullable=False, index=True),
    sa.Column("agent_name", sa.String(128), nullable=False),
    # The role at sign-in, for the record: rights come from the account's
    # current role on every request.
    sa.Column("role", sa.String(32), nullable=False),
    sa.Column("csrf_token", sa.String(64), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False, index=True),
)


# A session with its account's name and current role, unless the account is
# gone or disabled: read on every request (built once: it is the hot path).
_FIND_SESSION = (
    sa.select(
        console_sessions.c.agent_id,
        agents.c.name,
        agents.c.role,
        console_sessions.c.csrf_token,
        console_sessions.c.expires_at,
    )
    .select_from(
        console_sessions.join(
            agents, agents.c.id == sa.cast(console_sessions.c.agent_id, sa.Integer)
        ).outerjoin(disabled_agents, disabled_agents.c.agent_id == agents.c.id)
    )
    .where(
        console_sessions.c.session_hash == sa.bindparam("session_hash"),
        disabled_agents.c.agent_id.is_(None),
    )
)


class ConsoleError(Exception):
    """A request the console refuses; ``code`` says why, ``status`` is the HTTP answer.

    Codes: ``not_signed_in`` (no live session: sent to the login page),
    ``forbidden_role``, ``csrf_failed``, ``not_your_call``, ``no_such_item``,
    ``invalid``.
    """

    def __init__(self, code: str, status: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.status = status


@dataclass(frozen=True)
class ConsoleSession:
    """One signed-in person, as the console sees them on this request (the
    role is the account's current one)."""

    agent_id: str
    agent_name: str
    role: str
    csrf_token: str
    expires_at: datetime

    def may_open(self, area: str) -> bool:
        return self.role in AREA_ROLES.get(area, frozenset())


def _utc_now() -> datetime:
    return datetime.now(timezone.utc)


def _as_utc(moment: datetime) -> datetime:
    # SQLite hands DateTime values back without a zone; they were written as UTC.
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def _hash_session_id(session_id: str) -> str:
    return hashlib.sha256(session_id.encode("ascii", "replace")).hexdigest()


def new_token() -> str:
    """A random URL-safe token (256 bits)."""
    return secrets.token_urlsafe(32)


def tokens_match(expected: str | None, given: str | None) -> bool:
    """Constant-time comparison; a missing or empty value never matches."""
    if not expected or not given:
        return False
    return hmac.compare_digest(expected.encode(), given.encode())


class SessionStore:
    """Creates, finds and ends console sessions.

    Reads go through ``engine``, writes through ``write_engine`` (the queue's
    SQLite engine takes the write lock at BEGIN only when told to); ``clock``
    returns the current UTC time. The queue's tables must exist in the
    database (sessions are read with their accounts).
    """

    def __init__(
        self,
        engine: Engine,
        session_minutes: float,
        write_engine: Engine | None = None,
        clock: Callable[[], datetime] = _utc_now,
    ) -> None:
        self._engine = engine
        self._write_engine = write_engine or engine
        self._lifetime = timedelta(minutes=session_minutes)
        self._clock = clock

    @property
    def lifetime_seconds(self) -> int:
        return max(1, int(self._lifetime.total_seconds()))

    def create_table(self) -> None:
        with self._write_engine.begin() as conn:
            metadata.create_all(conn)

    def start(self, agent_id: str, agent_name: str, role: str) -> tuple[str, ConsoleSession]:
        """A new session; returns the cookie value (never stored) and the session."""
        now = self._clock()
        session_id = new_token()
        session = ConsoleSession(
            agent_id=agent_id,
            agent_name=agent_name,
            role=role,
            csrf_token=new_token(),
            expires_at=now + self._lifetime,
        )
        with self._write_engine.begin() as conn:
            # Sign-in is a good moment to forget sessions that ran out.
            conn.execute(console_sessions.delete().where(console_sessions.c.expires_at < now))
            conn.execute(
                console_sessions.insert().values(
                    session_hash=_hash_session_id(session_id),
                    agent_id=agent_id,
                    agent_name=agent_name,
                    role=role,
                    csrf_token=session.csrf_token,
                    created_at=now,
                    expires_at=session.expires_at,
                )
            )
        return session_id, session

    def find(self, session_id: str | None) -> ConsoleSession | None:
        """The live session for a cookie value with its account's current name
        and role; None if unknown or expired, or the account is gone or
        disabled. One query, by primary keys."""
        if not session_id:
            return None
        with self._engine.connect() as conn:
            found = conn.execute(_FIND_SESSION, {"session_hash": _hash_session_id(session_id)})
            row = found.mappings().first()
        if row is None:
            return None
        expires_at = _as_utc(row["expires_at"])
        if expires_at <= self._clock():
            return None
        return ConsoleSession(
            agent_id=row["agent_id"],
            agent_name=row["name"],
            role=row["role"],
            csrf_token=row["csrf_token"],
            expires_at=expires_at,
        )

    def end(self, session_id: str | None) -> None:
        if not session_id:
            return
        with self._write_engine.begin() as conn:
            conn.execute(
                console_sessions.delete().where(
                    console_sessions.c.session_hash == _hash_session_id(session_id)
                )
            )


def require_area(session: ConsoleSession, area: str) -> None:
    """Raises a 403 ``ConsoleError`` unless the session's role may open ``area``."""
    if not session.may_open(area):
        action = AREA_ACTIONS.get(area, f"open the {area} page")
        raise ConsoleError("forbidden_role", 403, f"The {session.role} role cannot {action}.")


def require_csrf(session_token: str | None, form_token: str | None) -> None:
    """Raises a 403 ``ConsoleError`` unless the form carried the expected token."""
    if not tokens_match(session_token, form_token):
        raise ConsoleError("csrf_failed", 403, "The form's security token is missing or wrong.")


# -- who is asking


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(text: str) -> tuple[Network, ...]:
    """Comma-separated addresses or networks (``10.0.0.5, 192.168.0.0/24, ::1``);
    ValueError names the first one that is neither."""
    networks = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        try:
            networks.append(ipaddress.ip_network(part, strict=False))
        except ValueError:
            raise ValueError(f"{part!r} is not an IP address or network") from None
    return tuple(networks)


def is_loopback_host(host: str) -> bool:
    """Whether a listening host is loopback only: 127.0.0.0/8, ::1 or localhost
    (0.0.0.0, ::, a LAN address or any other name are not)."""
    host = host.strip().strip("[]").lower()
    if host in ("localhost", "localhost.") or host.endswith(".localhost"):
        return True
    parsed = _address(host)
    return parsed is not None and parsed.is_loopback


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text.strip().strip("[]"))
    except ValueError:
        return None


def client_address(
    peer: str | None, forwarded_for: Sequence[str], trusted_proxies: Sequence[Network]
) -> str:
    """The client's address: the socket peer, unless the peer is a trusted
    proxy; then the nearest ``X-Forwarded-For`` hop that is not one (hops are
    read from the right: only those added by trusted proxies are believed)."""
    found = peer or "unknown"
    if not trusted_proxies:
        return found

    def trusted(address: str) -> bool:
        parsed = _address(address)
        return parsed is not None and any(parsed in network for network in trusted_proxies)

    if not trusted(found):
        return found
    hops = [hop.strip() for header in forwarded_for for hop in header.split(",") if hop.strip()]
    for hop in reversed(hops):
        if _address(hop) is None:
            return found  # garbage from the client: the last trusted hop is all we know
        found = hop
        if not trusted(hop):
            return hop
    return found


# -- signing in


@dataclass(frozen=True)
class LoginPolicy:
    # Failed logins for one name within ``lockout_minutes`` that lock it out...
    failures_allowed: int = 5
    # ...for this long.
    lockout_minutes: float = 15.0

    @property
    def lockout(self) -> timedelta:
        return timedelta(minutes=self.lockout_minutes)


@dataclass(frozen=True)
class LoginOutcome:
    """A login attempt's result: the agent, or why not (``missing``: no name
    or password; ``wrong``; ``locked``; ``disabled``)."""

    agent: Agent | None
    refusal: str = ""
    # When the name's lockout ends (``locked``, or the failure that locked it).
    locked_until: datetime | None = None


class LoginDesk:
    """Checks logins against the accounts, the throttle and the audit log."""

    def __init__(self, accounts: AgentAccounts, policy: LoginPolicy) -> None:
        self._accounts = accounts
        self._policy = policy
        self._checks = threading.BoundedSemaphore(MAX_CONCURRENT_PASSWORD_CHECKS)

    @property
    def policy(self) -> LoginPolicy:
        return self._policy

    def attempt(self, name: str, password: str, address: str) -> LoginOutcome:
        name = name.strip()
        if not name or not password:
            return LoginOutcome(None, "missing")
        lockout = self._policy.lockout
        # Checked under the semaphore, so concurrent guesses cannot all slip
        # in before a lockout is written.
        with self._checks:
            until = self._accounts.locked_until(name, lockout)
            if until is not None:
                log.warning("login for %r from %s refused: locked out", name, address)
                return LoginOutcome(None, "locked", until)
            found = self._accounts.sign_in(name, password)
            if found.agent is None:
                allowed = self._policy.failures_allowed
                until = self._accounts.record_failure(
                    name, found.agent_id, address, allowed, lockout
                )
                return LoginOutcome(None, "wrong", until)
        agent = found.agent
        if found.disabled:
            self._accounts.record("login_disabled", agent.name, agent.id, address)
            return LoginOutcome(None, "disabled")
        rehashed = found.rehashed_from
        detail = f"password rehashed: {rehashed} to current argon2id" if rehashed else ""
        self._accounts.record("login", agent.name, agent.id, address, detail=detail)
        return LoginOutcome(agent)

    def logged_out(self, session: ConsoleSession, address: str) -> None:
        agent_id = int(session.agent_id)
        self._accounts.record("logout", session.agent_name, agent_id, address)
