"""Backoff and outages in plain numbers; which real errors mean "away"; the
start-up checks' one-line messages."""

from __future__ import annotations

import socket
import sqlite3
from pathlib import Path

import pytest
import sqlalchemy as sa

from bot.connectivity import (
    UnreachableError,
    check_database,
    check_redis,
    database_address,
    redis_address,
)
from bot.retry import Backoff, Outage, ServiceUnavailable, is_transient


class Clock:
    """Time in plain numbers: ``sleep`` moves it on."""

    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(round(seconds, 6))
        self.now += seconds


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def refused() -> ConnectionRefusedError:
    """A real refused connection."""
    try:
        socket.create_connection(("127.0.0.1", closed_port()), timeout=2)
    except ConnectionRefusedError as exc:
        return exc
    raise AssertionError("the closed port accepted a connection")


def failing(errors: list[BaseException], result: str = "done"):  # type: ignore[no-untyped-def]
    """An operation that raises each of ``errors`` in turn, then returns."""
    calls = []

    def operation() -> str:
        calls.append(1)
        if errors:
            raise errors.pop(0)
        return result

    operation.calls = calls  # type: ignore[attr-defined]
    return operation


def test_backoff_doubles_up_to_its_ceiling() -> None:
    backoff = Backoff()
    assert [backoff.delay_seconds(n) for n in range(7)] == [0.2, 0.4, 0.8, 1.6, 3.2, 3.2, 3.2]
    with pytest.raises(ValueError):
        Backoff(first_seconds=0)


def test_an_outage_is_waited_out_within_the_limit() -> None:
    clock = Clock()
    outage = Outage("the test database", Backoff(give_up_seconds=5), clock)
    operation = failing([refused(), refused()])
    assert outage.call(operation, sleep=clock.sleep) == "done"
    assert clock.slept == [0.2, 0.4]
    assert outage.away_seconds is None  # back


def test_past_the_limit_every_operation_tries_once() -> None:
    clock = Clock()
    outage = Outage("the test database", Backoff(give_up_seconds=2), clock)
    with pytest.raises(ServiceUnavailable) as raised:
        outage.call(failing([refused()] * 20), sleep=clock.sleep)
    assert sum(clock.slept) == pytest.approx(2.0)
    assert clock.slept == [0.2, 0.4, 0.8, 0.6]  # the last wait ends at the limit
    assert raised.value.service == "the test database"
    assert isinstance(raised.value.__cause__, ConnectionRefusedError)
    # Still away: the next operation does not wait the limit again...
    again = failing([refused()])
    with pytest.raises(ServiceUnavailable):
        outage.call(again, sleep=clock.sleep)
    assert len(again.calls) == 1 and sum(clock.slept) == pytest.approx(2.0)
    # ...and one attempt is enough to notice it is back.
    assert outage.call(failing([]), sleep=clock.sleep) == "done"
    assert outage.away_seconds is None


def test_errors_that_waiting_cannot_mend_are_raised_at_once() -> None:
    clock = Clock()
    outage = Outage("the test database", Backoff(), clock)
    with pytest.raises(ValueError):
        outage.call(failing([ValueError("bad value")]), sleep=clock.sleep)
    no_wait = failing([refused()])
    with pytest.raises(ServiceUnavailable):
        outage.call(no_wait, sleep=clock.sleep, wait=False)
    assert clock.slept == [] and len(no_wait.calls) == 1


def test_real_errors_are_told_apart(tmp_path: Path) -> None:
    path = tmp_path / "locked.sqlite3"
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("CREATE TABLE t (x INTEGER)")
    holder.execute("BEGIN EXCLUSIVE")
    other = sqlite3.connect(path, timeout=0)
    with pytest.raises(sqlite3.OperationalError) as locked:
        other.execute("INSERT INTO t VALUES (1)")
    holder.execute("ROLLBACK")
    with pytest.raises(sqlite3.OperationalError) as missing:
        other.execute("SELECT * FROM no_such_table")
    other.close()
    holder.close()
    assert is_transient(locked.value)
    assert not is_transient(missing.value)

    engine = sa.create_engine(f"postgresql://u:pw@127.0.0.1:{closed_port()}/db", future=True)
    with pytest.raises(sa.exc.OperationalError) as down:
        engine.connect()
    assert is_transient(down.value) and is_transient(down.value.orig)

    import redis  # type: ignore[import-untyped]

    with pytest.raises(redis.exceptions.ConnectionError) as redis_down:
        redis.Redis(port=closed_port(), socket_connect_timeout=2).ping()
    assert is_transient(redis_down.value)
    # Wrapped without "from", as Rasa's lock store does: found through the context.
    try:
        try:
            raise redis_down.value
        except Exception as exc:
            raise RuntimeError(f"Error while acquiring lock. Error:\n{exc}")  # noqa: B904
    except RuntimeError as wrapped:
        assert is_transient(wrapped)
    assert not is_transient(ValueError("no"))


def test_addresses_never_show_the_password() -> None:
    assert database_address("postgresql://bot:pw@db.internal/calls") == (
        "the database at db.internal:5432/calls"
    )
    assert database_address("postgresql+psycopg2://bot:pw@[::1]:6543/x") == (
        "the database at [::1]:6543/x"
    )
    assert database_address("sqlite:////var/lib/voicebot/calls.sqlite3") == (
        "the SQLite file /var/lib/voicebot/calls.sqlite3"
    )
    assert redis_address("redis://:pw@cache:6380/1") == "Redis at cache:6380/1"
    assert redis_address("redis://cache") == "Redis at cache:6379"


def test_start_checks_name_the_setting_and_the_reason(tmp_path: Path) -> None:
    port = closed_port()
    with pytest.raises(UnreachableError) as db:
        check_database("store.url", f"postgresql://bot:s3cret@127.0.0.1:{port}/calls")
    assert str(db.value) == (
        f"store.url: cannot reach the database at 127.0.0.1:{port}/calls: Connection refused"
    )
    with pytest.raises(UnreachableError) as lock:
        check_redis("dialogue.lock_store_url", f"redis://:s3cret@127.0.0.1:{port}/1")
    assert str(lock.value) == (
        f"dialogue.lock_store_url: cannot reach Redis at 127.0.0.1:{port}/1: Connection refused"
    )
    not_a_database = tmp_path / "calls.sqlite3"
    not_a_database.write_bytes(b"not a database at all" * 200)
    with pytest.raises(UnreachableError) as file:
        check_database("store.url", f"sqlite:///{not_a_database}")
    assert str(file.value) == (
        f"store.url: cannot open the SQLite file {not_a_database}: file is not a database"
    )
    with pytest.raises(UnreachableError) as bad:
        check_database("store.url", "postgres//bot:s3cret@db/calls")
    assert "s3cret" not in str(bad.value) and str(bad.value).startswith("store.url: unusable URL")
    check_database("store.url", f"sqlite:///{tmp_path / 'new' / 'calls.sqlite3'}")  # created
