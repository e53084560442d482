"""The queue's tables and its database engine.

SQLite (one file, WAL) or PostgreSQL, chosen by the URL. On SQLite every write
transaction starts with ``BEGIN IMMEDIATE``: it takes the write lock before the
first read, so two processes can never read the same waiting item and then both
claim it, and a transaction never has to upgrade a read lock (which SQLite
refuses with "database is locked" instead of waiting).

On PostgreSQL, once the queue's engine has connected, a database that goes
away is waited for: each new connection is retried with backoff for up to
``RECONNECT_BACKOFF.give_up_seconds`` (an escalated call's handoff reaches the
queue when the database is back), while a database unreachable at start fails
at once with ``UnreachableError``.
"""

from __future__ import annotations

import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from bot.connectivity import UnreachableError, database_address, short_reason
from bot.retry import Backoff, Outage, is_transient
from bot.sqlite_files import BUSY_TIMEOUT_SECONDS, set_wal_mode, tolerate_concurrent_creation

# Execution option that marks a connection whose transactions will write.
WRITE_OPTION = "queue_write"

ITEM_KINDS = ("call", "callback")
ITEM_STATUSES = ("waiting", "claimed", "resolved", "abandoned", "returned")
FINAL_STATUSES = ("resolved", "abandoned", "returned")
AGENT_ROLES = ("agent", "supervisor", "trainer", "admin")
AGENT_STATES = ("available", "on_call", "wrap_up", "offline")


class UtcDateTime(sa.types.TypeDecorator):
    """Aware UTC datetimes in and out, on both backends.

    SQLite keeps datetimes as naive ISO strings (which sort correctly as long
    as every value is UTC); PostgreSQL keeps ``timestamptz``.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Any) -> Any:
        if value is None:
            return None
        if not isinstance(value, datetime) or value.tzinfo is None:
            raise ValueError(f"queue times must be timezone-aware datetimes, got {value!r}")
        utc = value.astimezone(timezone.utc)
        return utc.replace(tzinfo=None) if dialect.name == "sqlite" else utc

    def process_result_value(self, value: Any, dialect: Any) -> Any:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc)


metadata = sa.MetaData()

agents = sa.Table(
    "queue_agents",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(128), nullable=False, unique=True),
    sa.Column("password_hash", sa.String(256), nullable=False),
    sa.Column("role", sa.String(16), nullable=False),
    # JSON list of skill names.
    sa.Column("skills", sa.Text, nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("state_since", UtcDateTime, nullable=False),
)

items = sa.Table(
    "queue_items",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("call_id", sa.String(64), nullable=False, index=True),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("reason", sa.String(64), nullable=False),
    sa.Column("priority", sa.Integer, nullable=False),
    sa.Column("skill", sa.String(64), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("enqueued_at", UtcDateTime, nullable=False),
    sa.Column("claimed_at", UtcDateTime),
    sa.Column("claimed_by", sa.Integer, sa.ForeignKey("queue_agents.id")),
    # When the item reached its final status: resolved, returned or abandoned.
    sa.Column("resolved_at", UtcDateTime),
    sa.Column("disposition", sa.String(64)),
    sa.Column("notes", sa.Text),
    sa.Column("caller_number", sa.String(64)),
    # JSON: intents with confidences, collected details, timed transcript, summary.
    sa.Column("handoff", sa.Text, nullable=False),
    sa.Column("summary", sa.Text, nullable=False),
    sa.Column("abandoned_wait_seconds", sa.Float),
    # The claim query's order, among waiting items of one skill.
    sa.Index("ix_queue_items_waiting", "status", "skill", "priority", "enqueued_at"),
)

changes = sa.Table(
    "queue_changes",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("item_id", sa.Integer),
    sa.Column("agent_id", sa.Integer),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("at", UtcDateTime, nullable=False),
)

messages = sa.Table(
    "queue_agent_messages",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("call_id", sa.String(64), nullable=False),
    sa.Column("agent_id", sa.Integer, sa.ForeignKey("queue_agents.id"), nullable=False),
    sa.Column("text", sa.Text, nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("delivered_at", UtcDateTime),
    sa.Index("ix_queue_agent_messages_pending", "call_id", "delivered_at"),
)

# One browser's audio on a live call: the console writes the browser's offer,
# the bot process holding the call answers it (the SDP travels here; the
# audio flows between the browser and that process).
VOICE_ROLES = ("agent", "monitor", "whisper")
VOICE_STATES = ("offered", "answered", "connected", "failed", "lost", "closed", "replaced")
voice_links = sa.Table(
    "queue_voice_links",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("item_id", sa.Integer, sa.ForeignKey("queue_items.id"), nullable=False),
    sa.Column("call_id", sa.String(64), nullable=False),
    sa.Column("agent_id", sa.Integer, sa.ForeignKey("queue_agents.id"), nullable=False),
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("offer", sa.Text, nullable=False),
    sa.Column("answer", sa.Text),
    sa.Column("error", sa.Text),
    # The agent put the caller on hold (music) while talking off the line.
    sa.Column("on_hold", sa.Boolean, nullable=False, default=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("updated_at", UtcDateTime, nullable=False),
    sa.Index("ix_queue_voice_links_call", "call_id", "state"),
)

# A callback task being dialled: the console asks, a bot process with phone
# lines dials (one attempt per row), the outcome decides the task's fate.
DIAL_STATES = (
    "requested",
    "dialling",
    "answered",
    "no_answer",
    "busy",
    "rejected",
    "failed",
    "voicemail",
    # Not attempts: no process with phone lines took the request, or it came
    # outside the calling hours.
    "unserved",
    "outside_hours",
)
dial_requests = sa.Table(
    "queue_dial_requests",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("item_id", sa.Integer, sa.ForeignKey("queue_items.id"), nullable=False),
    sa.Column("agent_id", sa.Integer, sa.ForeignKey("queue_agents.id"), nullable=False),
    sa.Column("number", sa.String(64), nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("detail", sa.Text),
    # The failed attempt's task may not be dialled again before this.
    sa.Column("retry_after", UtcDateTime),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("updated_at", UtcDateTime, nullable=False),
    sa.Index("ix_queue_dial_requests_state", "state", "id"),
    sa.Index("ix_queue_dial_requests_item", "item_id"),
)

# Any fixed number: the advisory lock that serialises table creation on PostgreSQL.
_CREATE_LOCK_KEY = 0x766F_6963_6571
# How long new connections wait for a database that went away: an escalated
# call's handoff reaches the queue if it is back by then. Short, as hold lines
# and consoles read the queue too and wait as long (once per outage).
RECONNECT_BACKOFF = Backoff(give_up_seconds=5.0)
# Seconds one PostgreSQL connection attempt may take.
CONNECT_TIMEOUT_SECONDS = 10


def create_queue_engine(
    url: str, reconnect_wait: bool | None = None, **engine_options: Any
) -> Engine:
    """An engine for the URL. SQLite: WAL, foreign keys, a busy timeout, and
    our own BEGIN (``BEGIN IMMEDIATE`` on connections with the write option).
    PostgreSQL: a connect timeout and, with ``reconnect_wait`` (the default
    unless the engine keeps no pool, as watchers that reconnect by themselves
    do), waiting for a database that went away."""
    if not url.startswith("sqlite"):
        options = {"pool_pre_ping": True, **engine_options}
        parts = sa.engine.make_url(url)
        if parts.get_driver_name() == "psycopg2" and "connect_timeout" not in parts.query:
            timeout = {"connect_timeout": CONNECT_TIMEOUT_SECONDS}
            options["connect_args"] = {**timeout, **options.get("connect_args", {})}
        engine = sa.create_engine(url, future=True, **options)
        if reconnect_wait or (reconnect_wait is None and "poolclass" not in engine_options):
            _wait_for_reconnects(engine)
        return engine
    database = url.split(":///", 1)[1] if ":///" in url else ""
    if database and database != ":memory:":
        Path(database).parent.mkdir(parents=True, exist_ok=True)
    # A pool of open connections (SQLAlchemy 1.4 would reconnect for every
    # transaction), each used by one thread at a time.
    options = {"poolclass": sa.pool.QueuePool, **engine_options}
    connect_args: dict[str, Any] = {
        "timeout": BUSY_TIMEOUT_SECONDS,
        "check_same_thread": False,
        **options.pop("connect_args", {}),
    }
    engine = sa.create_engine(url, future=True, connect_args=connect_args, **options)
    tolerate_concurrent_creation(engine)

    @sa.event.listens_for(engine, "connect")
    def _sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
        # pysqlite's own transaction handling would start transactions late
        # (at the first write); we emit BEGIN ourselves instead.
        dbapi_connection.isolation_level = None
        set_wal_mode(dbapi_connection)

    @sa.event.listens_for(engine, "begin")
    def _sqlite_begin(conn: Connection) -> None:
        writes = conn.get_execution_options().get(WRITE_OPTION, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if writes else "BEGIN")

    return engine


def _wait_for_reconnects(engine: Engine) -> None:
    """After the engine's first connection, a failed connection attempt is
    retried with backoff (the driver's own error once past the limit)."""
    address = database_address(str(engine.url)).removeprefix("the ")
    outage = Outage(f"the queue's {address}", RECONNECT_BACKOFF)
    connected = threading.Event()

    @sa.event.listens_for(engine, "do_connect")
    def _connect(dialect: Any, _record: Any, cargs: Any, cparams: Any) -> Any:
        attempt = 0
        while True:
            try:
                connection = dialect.connect(*cargs, **cparams)
            except Exception as exc:
                waits = connected.is_set() and is_transient(exc)
                wait = outage.next_wait(exc, attempt) if waits else None
                if wait is None:
                    raise
                time.sleep(wait)
                attempt += 1
            else:
                connected.set()
                outage.recovered()
                return connection


def create_tables(engine: Engine, setting: str = "store.url") -> None:
    """Creates missing tables; safe when several processes start at once. A
    database that cannot be reached raises ``UnreachableError`` naming ``setting``."""
    try:
        with engine.execution_options(**{WRITE_OPTION: True}).begin() as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_CREATE_LOCK_KEY)))
            metadata.create_all(conn)
    except sa.exc.SQLAlchemyError as exc:
        if not is_transient(exc):
            raise
        raise UnreachableError(
            setting, database_address(str(engine.url)), short_reason(exc)
        ) from exc
