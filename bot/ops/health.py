"""Readiness: named checks, each saying what is not ready, run with a deadline.

A check is a function that returns None when its part is ready and a short
reason when it is not (an exception counts as not ready, with its message).
Checks run in parallel on daemon threads, so one hung database connection
cannot hold a probe beyond ``timeout_seconds``.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import URL, Engine
from sqlalchemy.pool import NullPool

Check = Callable[[], "str | None"]

# A probe that takes longer than this has its answer: not ready.
CHECK_TIMEOUT_SECONDS = 5.0
# A database connection attempt of a check gives up after this (whole seconds).
CONNECT_TIMEOUT_SECONDS = 3


@dataclass(frozen=True)
class Readiness:
    """The outcome of one probe: every check's reason, None for the ready ones."""

    results: dict[str, str | None]

    @property
    def ready(self) -> bool:
        return all(reason is None for reason in self.results.values())

    @property
    def not_ready(self) -> dict[str, str]:
        return {name: reason for name, reason in self.results.items() if reason is not None}

    def to_dict(self) -> dict[str, Any]:
        return {
            "ready": self.ready,
            "checks": {name: reason or "ok" for name, reason in self.results.items()},
            "not_ready": self.not_ready,
        }


def run_checks(
    checks: Mapping[str, Check], timeout_seconds: float = CHECK_TIMEOUT_SECONDS
) -> Readiness:
    results: dict[str, str | None] = {}
    lock = threading.Lock()

    def run(name: str, check: Check) -> None:
        try:
            reason = check()
        except Exception as exc:  # a failing check is an answer, never a crash
            # A database driver's own message, first line (no SQL, no help links).
            cause = getattr(exc, "orig", None) or exc
            lines = str(cause).strip().splitlines()
            reason = f"{type(exc).__name__}: {lines[0] if lines else 'failed'}"
        with lock:
            results[name] = reason

    threads = [
        threading.Thread(target=run, args=(name, check), name=f"ready-{name}", daemon=True)
        for name, check in checks.items()
    ]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + timeout_seconds
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    with lock:
        final = {name: results.get(name, "no answer in time") for name in checks}
    return Readiness(final)


def database_check(target: Engine | URL | str) -> Check:
    """Ready when the database (at an engine's URL) takes a new connection
    and answers: an SQLite file is opened afresh (a pooled connection would
    go on reading a deleted or moved file); any other database gets one
    connection attempt of its own, with a short timeout, outside the engine's
    pool (whose reconnect waits would outlast a probe)."""
    url = target.url if isinstance(target, Engine) else sa.engine.make_url(target)
    if url.get_backend_name() == "sqlite":
        path = url.database or ""
        if path and path != ":memory:":
            return lambda: _sqlite_file_check(path)
        return lambda: None  # an in-memory database lives as long as the process
    connect_args = (
        {"connect_timeout": CONNECT_TIMEOUT_SECONDS}
        if url.drivername.startswith("postgresql")
        else {}
    )
    probe = sa.create_engine(url, future=True, poolclass=NullPool, connect_args=connect_args)

    def check() -> str | None:
        with probe.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
        return None

    return check


def _sqlite_file_check(path: str) -> str | None:
    try:
        uri = Path(path).absolute().as_uri() + "?mode=rw"  # never creates the file
        conn = sqlite3.connect(uri, uri=True, timeout=2)
    except sqlite3.Error as exc:
        return f"cannot open {path}: {exc}"
    try:
        conn.execute("PRAGMA schema_version").fetchone()
    except sqlite3.Error as exc:
        return f"cannot read {path}: {exc}"
    finally:
        conn.close()
    return None
