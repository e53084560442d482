"""The call store's writer on a real SQLite file that another connection
locks (SQLite's "database is locked" is the database being away): order kept,
writes waited for, spilled to a file and written back later, refused writes
kept aside. And table creation that tolerates processes starting together."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

import sqlalchemy as sa

from bot.retry import Backoff
from bot.sqlite_files import if_not_exists
from bot.store import create_db_engine, metadata
from bot.store_writer import INSERT, REJECTED_PREFIX, SPILL_PREFIX, UPDATE_CALL, StoreWriter, Write

FAST = Backoff(first_seconds=0.01, max_seconds=0.05)


def sqlite_rows(path: Path) -> Callable[[Write], None]:
    """Applies writes as rows of a real SQLite file, failing at once (no busy
    wait) while another connection holds the file."""
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS rows (call_id TEXT, op TEXT, n INTEGER UNIQUE)")

    def apply(write: Write) -> None:
        conn = sqlite3.connect(path, timeout=0)
        try:
            with conn:
                conn.execute(
                    "INSERT INTO rows VALUES (?, ?, ?)",
                    (write.call_id, write.op, write.values.get("n")),
                )
        finally:
            conn.close()

    return apply


def rows(path: Path) -> list[tuple[str, str, int]]:
    with sqlite3.connect(path) as conn:
        return list(conn.execute("SELECT call_id, op, n FROM rows ORDER BY rowid"))


@contextmanager
def locked(path: Path) -> Iterator[None]:
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        yield
    finally:
        holder.execute("ROLLBACK")
        holder.close()


def submit(writer: StoreWriter, *writes: Write) -> None:
    def job() -> None:
        for write in writes:
            writer.record(write)

    writer.submit(job)


def turn(call_id: str, n: int) -> Write:
    return Write(INSERT, "turns", call_id, {"n": n})


def end(call_id: str, n: int) -> Write:
    return Write(UPDATE_CALL, "calls", call_id, {"n": n, "ended_at": datetime.now(timezone.utc)})


def test_a_write_survives_its_file_line() -> None:
    write = Write(INSERT, "calls", "c1", {"started_at": datetime(2025, 3, 14, tzinfo=timezone.utc)})
    assert Write.from_json(write.to_json()) == write


def test_writes_wait_in_order_while_the_database_is_away(tmp_path: Path) -> None:
    database = tmp_path / "calls.sqlite3"
    writer = StoreWriter(sqlite_rows(database), tmp_path, "the test store", backoff=FAST)
    try:
        submit(writer, turn("a", 1))
        assert writer.flush(10)
        with locked(database):
            submit(writer, turn("a", 2), turn("b", 3))
            submit(writer, turn("a", 4))
            assert not writer.flush(0.3)  # waiting, not dropped
        assert writer.flush(10)
    finally:
        writer.close()
    assert rows(database) == [
        ("a", INSERT, 1),
        ("a", INSERT, 2),
        ("b", INSERT, 3),
        ("a", INSERT, 4),
    ]
    assert not list(tmp_path.glob("call-store-*.jsonl"))


def test_an_ended_call_is_spilled_and_written_back_later(tmp_path: Path) -> None:
    database = tmp_path / "calls.sqlite3"
    spill = tmp_path / "var"
    apply = sqlite_rows(database)
    with locked(database):
        writer = StoreWriter(
            apply, spill, "the test store", backoff=FAST, spill_after_end_seconds=0.1
        )
        submit(writer, turn("ended", 1), end("ended", 2))
        assert writer.flush(10)  # kept in the file once the call is over
        (kept,) = spill.glob(f"{SPILL_PREFIX}*.jsonl")
        lines = [json.loads(line) for line in kept.read_text().splitlines()]
        assert [(w["call_id"], w["values"]["n"]) for w in lines] == [("ended", 1), ("ended", 2)]
        submit(writer, turn("ended", 3))  # a spilled call's later writes follow it
        submit(writer, turn("live", 4))  # a call in progress waits in memory...
        assert not writer.flush(0.2)
        writer.close()  # ...until the store closes with the database still away
    lines = [json.loads(line) for line in kept.read_text().splitlines()]
    assert [(w["call_id"], w["values"]["n"]) for w in lines] == [
        ("ended", 1), ("ended", 2), ("ended", 3), ("live", 4),
    ]  # fmt: skip
    assert rows(database) == []

    again = StoreWriter(apply, spill, "the test store", backoff=FAST)
    again.submit(again.replay_spills)
    try:
        assert again.flush(10)
    finally:
        again.close()
    assert [(c, n) for c, _op, n in rows(database)] == [
        ("ended", 1), ("ended", 2), ("ended", 3), ("live", 4),
    ]  # fmt: skip
    assert not list(spill.glob(f"{SPILL_PREFIX}*"))


def test_a_refused_write_is_kept_aside_and_the_rest_go_on(tmp_path: Path) -> None:
    database = tmp_path / "calls.sqlite3"
    writer = StoreWriter(sqlite_rows(database), tmp_path, "the test store", backoff=FAST)
    try:
        submit(writer, turn("a", 1), turn("a", 1), turn("a", 2))  # n is unique
        assert writer.flush(10)
    finally:
        writer.close()
    assert rows(database) == [("a", INSERT, 1), ("a", INSERT, 2)]
    (rejected,) = tmp_path.glob(f"{REJECTED_PREFIX}*.jsonl")
    assert Write.from_json(rejected.read_text()) == turn("a", 1)


def test_table_creation_tolerates_another_process_creating_them_first(tmp_path: Path) -> None:
    assert if_not_exists("CREATE TABLE calls (x)") == "CREATE TABLE IF NOT EXISTS calls (x)"
    assert if_not_exists("\nCREATE UNIQUE INDEX ix ON t (x)") == (
        "CREATE UNIQUE INDEX IF NOT EXISTS ix ON t (x)"
    )
    assert if_not_exists("CREATE TABLE IF NOT EXISTS t (x)") == "CREATE TABLE IF NOT EXISTS t (x)"
    assert if_not_exists("INSERT INTO t VALUES ('CREATE TABLE x')").startswith("INSERT")
    engine = create_db_engine(f"sqlite:///{tmp_path / 'calls.sqlite3'}")
    try:
        metadata.create_all(engine)
        # What a process that looked before another created the tables then does:
        metadata.create_all(engine, checkfirst=False)
        with engine.connect() as conn:
            mode = conn.exec_driver_sql("PRAGMA journal_mode").scalar()
            names = set(sa.inspect(conn).get_table_names())
    finally:
        engine.dispose()
    assert mode == "wal"
    assert {"calls", "turns"} <= names
