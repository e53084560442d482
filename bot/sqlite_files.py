"""SQLite files shared by several processes (bots, consoles, the tests).

Every engine on an SQLite file gets a busy timeout (a writer waits up to
``BUSY_TIMEOUT_SECONDS`` for another's lock instead of failing with
"database is locked"), WAL mode (readers never wait for the writer), and
table creation that tolerates processes starting together: ``CREATE TABLE``
and ``CREATE INDEX`` become ``... IF NOT EXISTS``, so a process that checked
for a table just before another created it does not fail on "table already
exists". Switching a new file to WAL needs a moment alone with it; a busy
file is waited for.
"""

from __future__ import annotations

import re
import sqlite3
import time
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

BUSY_TIMEOUT_SECONDS = 30.0
_CREATE = re.compile(r"^\s*CREATE\s+(UNIQUE\s+)?(TABLE|INDEX)\s+(?!IF\s+NOT\s+EXISTS\b)", re.I)


def if_not_exists(statement: str) -> str:
    """``CREATE TABLE x`` as ``CREATE TABLE IF NOT EXISTS x`` (indexes too)."""
    return _CREATE.sub(
        lambda m: f"CREATE {m.group(1) or ''}{m.group(2)} IF NOT EXISTS ", statement, count=1
    )


def set_wal_mode(dbapi_connection: Any, timeout_seconds: float = BUSY_TIMEOUT_SECONDS) -> None:
    """Turns WAL on (a no-op once the file has it), waiting while another
    process holds the file; then foreign keys."""
    deadline = time.monotonic() + timeout_seconds
    delay = 0.01
    cursor = dbapi_connection.cursor()
    try:
        while True:
            try:
                cursor.execute("PRAGMA journal_mode=WAL")
                break
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() >= deadline:
                    raise
                time.sleep(delay)
                delay = min(delay * 2, 0.5)
        cursor.execute("PRAGMA foreign_keys=ON")
    finally:
        cursor.close()


def tolerate_concurrent_creation(engine: Engine) -> None:
    """Makes the engine's CREATE TABLE / INDEX statements IF NOT EXISTS."""

    @sa.event.listens_for(engine, "before_cursor_execute", retval=True)
    def _create_if_missing(
        _conn: Any, _cursor: Any, statement: str, parameters: Any, _context: Any, _many: bool
    ) -> tuple[str, Any]:
        return if_not_exists(statement), parameters
