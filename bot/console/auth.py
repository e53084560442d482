"""Console sign-in: server-side sessions, CSRF tokens and role checks.

A session lives in the ``console_sessions`` table of the queue's database. The
browser holds only a random id; the table keeps its SHA-256, so a copy of the
table cannot be replayed as cookies. Each session has its own CSRF token,
which every POST form carries back.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import sqlalchemy as sa
from sqlalchemy.engine import Engine

SESSION_COOKIE = "console_session"
# Sign-in happens before a session exists: its form is protected by a
# double-submit token kept in this short-lived cookie.
LOGIN_CSRF_COOKIE = "console_login_csrf"
CSRF_FIELD = "csrf_token"

ROLES = ("agent", "supervisor", "trainer", "admin")

# Which roles may open each area of the console.
AREA_ROLES: dict[str, frozenset[str]] = {
    "queue": frozenset({"agent", "supervisor", "admin"}),
    "dashboard": frozenset({"supervisor", "admin"}),
    "training": frozenset({"trainer", "supervisor", "admin"}),
}

metadata = sa.MetaData()

console_sessions = sa.Table(
    "console_sessions",
    metadata,
    sa.Column("session_hash", sa.String(64), primary_key=True),
    sa.Column("agent_id", sa.String(64), nullable=False, index=True),
    sa.Column("agent_name", sa.String(128), nullable=False),
    sa.Column("role", sa.String(32), nullable=False),
    sa.Column("csrf_token", sa.String(64), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False, index=True),
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
    """One signed-in person, as the console sees them on each request."""

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
    returns the current UTC time.
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
        """The live session for a cookie value, or None if unknown or expired."""
        if not session_id:
            return None
        with self._engine.connect() as conn:
            row = (
                conn.execute(
                    console_sessions.select().where(
                        console_sessions.c.session_hash == _hash_session_id(session_id)
                    )
                )
                .mappings()
                .first()
            )
        if row is None:
            return None
        expires_at = _as_utc(row["expires_at"])
        if expires_at <= self._clock():
            return None
        return ConsoleSession(
            agent_id=row["agent_id"],
            agent_name=row["agent_name"],
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
        raise ConsoleError(
            "forbidden_role", 403, f"The {session.role} role cannot open the {area} page."
        )


def require_csrf(session_token: str | None, form_token: str | None) -> None:
    """Raises a 403 ``ConsoleError`` unless the form carried the expected token."""
    if not tokens_match(session_token, form_token):
        raise ConsoleError("csrf_failed", 403, "The form's security token is missing or wrong.")
