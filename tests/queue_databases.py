"""Queue databases for tests: a fresh SQLite file, or a fresh schema on the
real PostgreSQL server; plus the code that runs in the tests' child processes.

PostgreSQL comes from ``VOICEBOT_TEST_POSTGRES_URL`` (default: the local
server's ``test`` database). Each database gets its own schema (through the
connection's ``search_path``) and its own NOTIFY channel, so parallel runs
never see each other's rows or notifications. Unreachable server: the test
is skipped, except in CI (``CI`` set), where it fails.
"""

from __future__ import annotations

import os
import signal
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from bot.queue import AgentQueue, QueueSettings

POSTGRES_URL_VARIABLE = "VOICEBOT_TEST_POSTGRES_URL"
DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"
BACKENDS = ("sqlite", "postgresql")


@dataclass(frozen=True)
class QueueDatabase:
    backend: str
    url: str
    settings: QueueSettings

    def queue(self, **kwargs: Any) -> AgentQueue:
        return AgentQueue(self.url, self.settings, **kwargs)


class ManualClock:
    """A clock the test moves by hand (the queue takes any clock)."""

    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or datetime(2025, 3, 14, 9, 0, tzinfo=timezone.utc)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> datetime:
        self.now += timedelta(seconds=seconds)
        return self.now


def postgres_base_url() -> str:
    return os.environ.get(POSTGRES_URL_VARIABLE, DEFAULT_POSTGRES_URL)


def _unreachable(reason: str) -> None:
    message = f"PostgreSQL at {postgres_base_url()} is unreachable: {reason}"
    if os.environ.get("CI"):
        pytest.fail(message + " (CI is set: PostgreSQL tests must run)")
    pytest.skip(message)


@contextmanager
def postgres_schema() -> Iterator[QueueDatabase]:
    engine = sa.create_engine(postgres_base_url(), future=True)
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except sa.exc.OperationalError as exc:
        engine.dispose()
        _unreachable(str(exc.orig).strip())
    schema = f"queue_test_{uuid.uuid4().hex[:12]}"
    with engine.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    url = sa.engine.make_url(postgres_base_url()).update_query_dict(
        {"options": f"-csearch_path={schema}"}
    )
    try:
        yield QueueDatabase(
            "postgresql",
            url.render_as_string(hide_password=False),
            QueueSettings(notify_channel=schema),
        )
    finally:
        with engine.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        engine.dispose()


@contextmanager
def queue_database(backend: str, folder: Path) -> Iterator[QueueDatabase]:
    if backend == "postgresql":
        with postgres_schema() as database:
            yield database
    else:
        yield QueueDatabase("sqlite", f"sqlite:///{folder / 'queue.sqlite3'}", QueueSettings())


# -- run in child processes (spawned: everything they need comes as arguments)


def claim_until_empty(
    url: str, settings: QueueSettings, agent_id: int, start: Any, claimed: Any
) -> None:
    """Claims until the queue is empty; puts (agent id, claimed item ids) on ``claimed``."""
    queue = AgentQueue(url, settings)
    mine: list[int] = []
    try:
        start.wait()
        while (item := queue.claim_next(agent_id)) is not None:
            mine.append(item.id)
    finally:
        claimed.put((agent_id, mine))
        queue.close()


def claim_one(
    url: str, settings: QueueSettings, item_id: int, agent_id: int, start: Any, won: Any
) -> None:
    """Tries to claim one chosen item; puts (agent id, whether it got it) on ``won``."""
    queue = AgentQueue(url, settings)
    try:
        start.wait()
        won.put((agent_id, queue.claim(item_id, agent_id) is not None))
    finally:
        queue.close()


def enqueue_then_die(url: str, notify_channel: str, call_id: str) -> None:
    """Enqueues, prints the item id, and is killed (SIGKILL: no cleanup at all)."""
    queue = AgentQueue(url, QueueSettings(notify_channel=notify_channel))
    item = queue.enqueue(call_id, "call", "explicit_request", 2, "orders", "+15550100")
    print(item.id, flush=True)
    os.kill(os.getpid(), signal.SIGKILL)
