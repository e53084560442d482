"""The call store: every call and its turns, through SQLAlchemy.

SQLite (one file) by default; PostgreSQL when the URL says so, shared by many
bot processes. Writes are queued to one writer thread so a call's event loop
never waits on the database. A database that goes away never ends a call and
loses nothing: the writer keeps the writes in order and waits for it
(``bot/store_writer.py``: backoff, then a spill file under the var folder).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from bot.connectivity import UnreachableError, database_address, short_reason
from bot.events import (
    AGENT_SPEECH_INTENT,
    AgentSpeech,
    BotTurn,
    CallEnded,
    CallEvent,
    CallStarted,
    EndReason,
    Escalated,
    SurveyAnswered,
    TranscriptFinal,
)
from bot.retry import is_transient
from bot.sqlite_files import BUSY_TIMEOUT_SECONDS, set_wal_mode, tolerate_concurrent_creation
from bot.store_writer import INSERT, REDACT, UPDATE_CALL, StoreWriter, Write

log = logging.getLogger(__name__)

metadata = sa.MetaData()

calls = sa.Table(
    "calls",
    metadata,
    sa.Column("call_id", sa.String(64), primary_key=True),
    sa.Column("channel", sa.String(32), nullable=False),
    sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("ended_at", sa.DateTime(timezone=True)),
    sa.Column("end_reason", sa.String(64)),
    sa.Column("duration_ms", sa.Integer),
    sa.Column("escalation_reason", sa.String(64)),
    sa.Column("recording_path", sa.Text),
    # When retention removed the call's recording and personal details
    # (bot.retention); NULL until then.
    sa.Column("purged_at", sa.DateTime(timezone=True)),
    # Phone calls: the caller's number (caller ID; NULL when withheld or not
    # a phone call), the number they dialled, and the line that carried it.
    sa.Column("caller_number", sa.String(64)),
    sa.Column("dialled_number", sa.String(64)),
    sa.Column("line", sa.Integer),
    # The post-call survey: the caller's rating from 1 to 5, how it was given
    # ("voice", "keypad" or "text") and when; NULL when not asked or not answered.
    sa.Column("csat_score", sa.Integer),
    sa.Column("csat_via", sa.String(16)),
    sa.Column("csat_at", sa.DateTime(timezone=True)),
)

# Columns added after the first release: older call stores get them at start.
_ADDED_COLUMNS = (
    "purged_at",
    "caller_number",
    "dialled_number",
    "line",
    "csat_score",
    "csat_via",
    "csat_at",
)

turns = sa.Table(
    "turns",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("call_id", sa.String(64), sa.ForeignKey("calls.call_id"), nullable=False, index=True),
    sa.Column("turn_index", sa.Integer, nullable=False),
    sa.Column("t_ms", sa.Integer, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("transcript", sa.Text, nullable=False),
    sa.Column("asr_confidence", sa.Float),
    sa.Column("intent", sa.String(64)),
    sa.Column("intent_confidence", sa.Float),
    sa.Column("entities", sa.Text),
    sa.Column("bot_text", sa.Text),
    sa.Column("timings", sa.Text),
    sa.UniqueConstraint("call_id", "turn_index"),
)


# Seconds a PostgreSQL connection attempt may take (a host that does not
# answer at all would otherwise hold a writer for minutes).
CONNECT_TIMEOUT_SECONDS = 10


def create_db_engine(url: str) -> Engine:
    """An engine for the URL; SQLite files get their folder, WAL mode, a busy
    timeout and race-free table creation (``bot/sqlite_files.py``)."""
    if url.startswith("sqlite:///"):
        path = Path(url.removeprefix("sqlite:///"))
        path.parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(url, future=True, connect_args={"timeout": BUSY_TIMEOUT_SECONDS})

        @sa.event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
            set_wal_mode(dbapi_connection)

        tolerate_concurrent_creation(engine)
        return engine
    return sa.create_engine(url, future=True, pool_pre_ping=True, **postgres_connect_args(url))


def postgres_connect_args(url: str) -> dict[str, Any]:
    """A connect timeout for PostgreSQL URLs that set none."""
    parts = sa.engine.make_url(url)
    if parts.get_driver_name() != "psycopg2" or "connect_timeout" in parts.query:
        return {}
    return {"connect_args": {"connect_timeout": CONNECT_TIMEOUT_SECONDS}}


def add_missing_columns(engine: Engine) -> None:
    """Adds the columns that call stores made by older versions lack."""
    with engine.connect() as conn:
        inspector = sa.inspect(conn)
        if not inspector.has_table(calls.name):
            return
        present = {column["name"] for column in inspector.get_columns(calls.name)}
    for name in _ADDED_COLUMNS:
        if name not in present:
            _add_column(engine, name)


def _add_column(engine: Engine, name: str) -> None:
    column_type = calls.c[name].type.compile(dialect=engine.dialect)
    exists_clause = "IF NOT EXISTS " if engine.dialect.name == "postgresql" else ""
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql(
                f"ALTER TABLE {calls.name} ADD COLUMN {exists_clause}{name} {column_type}"
            )
    except sa.exc.OperationalError:
        # Another process added it first (SQLite has no ADD COLUMN IF NOT EXISTS).
        with engine.connect() as conn:
            columns = sa.inspect(conn).get_columns(calls.name)
        if name not in {column["name"] for column in columns}:
            raise


def _now() -> datetime:
    return datetime.now(timezone.utc)


def create_schema(engine: Engine, setting: str = "store.url") -> None:
    """Creates the call store's tables and adds missing columns; a database
    that cannot be reached raises ``UnreachableError`` naming ``setting``."""
    try:
        metadata.create_all(engine)
        add_missing_columns(engine)
    except sa.exc.SQLAlchemyError as exc:
        if not is_transient(exc):
            raise
        raise UnreachableError(
            setting, database_address(str(engine.url)), short_reason(exc)
        ) from exc


def database_key(url: str) -> str:
    """A short name for the database (not the password) in spill files' names."""
    parts = sa.engine.make_url(url).set(password=None)
    return hashlib.sha256(parts.render_as_string().encode()).hexdigest()[:12]


def default_spill_dir(url: str) -> Path:
    """Where writes wait while the database is away, when the store is not
    told: beside an SQLite file (the var folder, by default), else the var
    folder of the settings."""
    if url.startswith("sqlite:///") and url != "sqlite:///:memory:":
        return Path(url.removeprefix("sqlite:///")).resolve().parent
    from bot.settings import SettingsError, load_settings

    try:
        return load_settings().var_dir
    except SettingsError:
        return Path("var").resolve()


class CallStore:
    """Calls and turns; ``listener`` turns call events into rows.

    ``spill_dir``: where writes are kept when the database stays away
    (default: ``default_spill_dir``); ``setting`` names the URL in errors.
    """

    def __init__(
        self,
        url: str,
        redact_after_call: bool = True,
        spill_dir: Path | None = None,
        setting: str = "store.url",
    ) -> None:
        self.url = url
        # What callers said is personal data: once a call is over, card
        # numbers, e-mails, phone numbers and addresses in its transcript are
        # replaced by typed placeholders (the call's structured fields keep
        # what an agent needs).
        self._redact_after_call = redact_after_call
        self._redactor: Any = None
        self.engine = create_db_engine(url)
        create_schema(self.engine, setting)
        # What was heard in a turn, until the turn's bot_turn: by (call, turn id).
        self._pending: dict[tuple[str, int], dict[str, Any]] = {}
        self._turn_index: dict[str, int] = {}
        self._writer = StoreWriter(
            self._apply,
            spill_dir or default_spill_dir(url),
            f"the call store ({setting}, {database_address(url).removeprefix('the ')})",
            redact=self._redact_text,
            database_key=database_key(url),
        )
        self._writer.submit(self._writer.replay_spills)

    # -- event side (called on the call's loop; never blocks on the database)

    def listener(self, event: CallEvent) -> None:
        if isinstance(event, CallStarted):
            row = {
                "call_id": event.call_id,
                "channel": event.channel,
                "started_at": _now(),
                "caller_number": event.caller_number,
                "dialled_number": event.dialled_number,
                "line": event.line,
            }
            self._turn_index[event.call_id] = 0
            self._submit(lambda: self._insert(calls, row))
        elif isinstance(event, TranscriptFinal):
            self._pending[(event.call_id, event.turn_id)] = {
                "transcript": event.text,
                "asr_confidence": event.confidence,
            }
        elif isinstance(event, BotTurn):
            heard = self._pending.pop((event.call_id, event.turn_id), {"transcript": event.user})
            index = self._turn_index.get(event.call_id, 0)
            self._turn_index[event.call_id] = index + 1
            row = {
                "call_id": event.call_id,
                "turn_index": index,
                "t_ms": event.t_ms,
                "created_at": _now(),
                "transcript": heard.get("transcript", event.user),
                "asr_confidence": heard.get("asr_confidence"),
                "intent": event.intent,
                "intent_confidence": event.confidence,
                "entities": json.dumps(event.entities),
                "bot_text": json.dumps(list(event.bot)),
                "timings": json.dumps(event.timings),
            }
            self._submit(lambda: self._insert(turns, row))
        elif isinstance(event, AgentSpeech):
            index = self._turn_index.get(event.call_id, 0)
            self._turn_index[event.call_id] = index + 1
            row = {
                "call_id": event.call_id,
                "turn_index": index,
                "t_ms": event.t_ms,
                "created_at": _now(),
                "transcript": event.text,
                "intent": AGENT_SPEECH_INTENT,
                "entities": "{}",
                "bot_text": "[]",
                "timings": "{}",
            }
            self._submit(lambda: self._insert(turns, row))
        elif isinstance(event, Escalated):
            reason = {"escalation_reason": event.reason}
            self._submit(lambda: self._update_call(event.call_id, reason))
        elif isinstance(event, SurveyAnswered):
            survey = {"csat_score": event.score, "csat_via": event.via, "csat_at": _now()}
            self._submit(lambda: self._update_call(event.call_id, survey))
        elif isinstance(event, CallEnded):
            if self._redact_after_call:
                call_id = event.call_id
                self._submit(lambda: self._redact_call(call_id))
            values: dict[str, Any] = {
                "ended_at": _now(),
                "end_reason": _end_reason(event),
                "duration_ms": event.t_ms,
                "recording_path": event.recording_path,
            }
            self._turn_index.pop(event.call_id, None)
            self._submit(lambda: self._update_call(event.call_id, values))

    # -- writer thread (bot/store_writer.py): jobs describe writes, the writer applies them

    def _submit(self, job: Callable[[], None]) -> None:
        self._writer.submit(job)

    def _insert(self, table: sa.Table, row: dict[str, Any]) -> None:
        self._writer.record(Write(INSERT, table.name, str(row["call_id"]), row))

    def _redact_call(self, call_id: str) -> None:
        self._writer.record(Write(REDACT, turns.name, call_id))

    def _update_call(self, call_id: str, values: dict[str, Any]) -> None:
        self._writer.record(Write(UPDATE_CALL, calls.name, call_id, values))

    def _apply(self, write: Write) -> None:
        """Writes one change to the database (on the writer thread)."""
        if write.op == REDACT:
            self._apply_redaction(write.call_id)
        elif write.op == UPDATE_CALL:
            with self.engine.begin() as conn:
                conn.execute(
                    calls.update().where(calls.c.call_id == write.call_id).values(**write.values)
                )
        elif write.op == INSERT:
            table = _TABLES[write.table]
            try:
                with self.engine.begin() as conn:
                    conn.execute(table.insert().values(**write.values))
            except sa.exc.IntegrityError:
                # Written before: a commit whose answer was lost with the
                # connection, or a spill file written twice.
                if not self._row_exists(table, write.values):
                    raise
        else:
            raise ValueError(f"unknown call store write {write.op!r}")

    def _row_exists(self, table: sa.Table, row: dict[str, Any]) -> bool:
        keys = ("call_id", "turn_index") if table is turns else ("call_id",)
        with self.engine.connect() as conn:
            found = conn.execute(
                sa.select(sa.literal(1)).where(*(table.c[k] == row.get(k) for k in keys))
            ).first()
        return found is not None

    def _redact_text(self, text: str) -> str:
        if self._redactor is None:
            from bot.privacy import Redactor  # spaCy: loaded on the writer thread, once

            self._redactor = Redactor()
        return str(self._redactor.redact(text).text)

    def _apply_redaction(self, call_id: str) -> None:
        with self.engine.begin() as conn:
            rows = conn.execute(
                sa.select(turns.c.id, turns.c.transcript).where(turns.c.call_id == call_id)
            ).all()
            for turn_id, transcript in rows:
                redacted = self._redact_text(transcript or "")
                if redacted != transcript:
                    conn.execute(
                        turns.update().where(turns.c.id == turn_id).values(transcript=redacted)
                    )

    @property
    def spill_dir(self) -> Path:
        """Where writes go when the database stays away."""
        return self._writer.spill_dir

    def flush(self, timeout_seconds: float | None = None) -> bool:
        """Waits until every queued write is written (or, the database being
        away, kept in a spill file); False on timeout."""
        return self._writer.flush(timeout_seconds)

    def close(self) -> None:
        self._writer.close()
        self.engine.dispose()

    # -- reading

    def call(self, call_id: str) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            row = conn.execute(calls.select().where(calls.c.call_id == call_id)).mappings().first()
            return dict(row) if row else None

    def turns(self, call_id: str) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                turns.select().where(turns.c.call_id == call_id).order_by(turns.c.turn_index)
            ).mappings()
            return [
                {
                    **dict(row),
                    "entities": json.loads(row["entities"] or "{}"),
                    "bot_text": json.loads(row["bot_text"] or "[]"),
                    "timings": json.loads(row["timings"] or "{}"),
                }
                for row in rows
            ]

    def recent_calls(self, limit: int = 50) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                calls.select().order_by(calls.c.started_at.desc()).limit(limit)
            ).mappings()
            return [dict(row) for row in rows]


_TABLES = {calls.name: calls, turns.name: turns}


def _end_reason(event: CallEnded) -> str:
    reason = EndReason(event.reason).value
    return f"{reason}:{event.error}" if event.error else reason
