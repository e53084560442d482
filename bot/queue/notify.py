"""Live queue changes for consoles: the change log's new ids, as they happen.

PostgreSQL: ``LISTEN`` on the queue's channel, waiting with ``select()`` on
the connection's socket; each notification's payload is a change id (sent in
the transaction that made the change, so it arrives only once committed).
SQLite has no notifications: the change log is read every
``poll_interval_seconds`` for ids above the last one seen (SQLite commits one
writer at a time, so ids appear in order and none is skipped).

A watcher reports changes made after it was created: a console creates its
watcher first, then reads the queue, then follows the changes. A watcher is
used by one thread (``wait`` or iteration); ``close`` may come from any thread
and wakes a waiting one at once.
"""

from __future__ import annotations

import asyncio
import logging
import os
import select
import threading
import time
from collections.abc import Iterator
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.pool import NullPool

from bot.queue.records import QueueSettings
from bot.queue.schema import changes, create_queue_engine, create_tables
from bot.queue.service import notify_channel_name

log = logging.getLogger(__name__)

# After losing the PostgreSQL connection, wait this long before reconnecting.
RECONNECT_DELAY_SECONDS = 1.0


class QueueWatcher:
    """Yields queue change ids (``AgentQueue.changes_since`` has their details)."""

    def __init__(self, url: str, settings: QueueSettings | None = None) -> None:
        self.settings = settings or QueueSettings()
        self._channel = notify_channel_name(self.settings)
        self._engine = create_queue_engine(url, poolclass=NullPool)
        create_tables(self._engine)
        self._listens = self._engine.dialect.name == "postgresql"
        self._driver_error: type[Exception] = self._engine.dialect.dbapi.Error
        self._closed = threading.Event()
        self._lock = threading.Lock()
        self._wake_read, self._wake_write = os.pipe()
        self._listener: Any = None  # the psycopg2 connection that LISTENs
        self._reader: Connection | None = None  # SQLite: kept open between polls
        self._caught_up: set[int] = set()  # PostgreSQL: read from the log after a reconnect
        if self._listens:
            self._listen()
        else:
            # Polls may come from different threads, one at a time (the lock).
            self._reader = self._engine.connect()
        self._last_id = self._latest_id()

    # -- public

    def wait(self, timeout_seconds: float | None = None) -> list[int]:
        """Ids of changes since the previous call, oldest first; waits up to
        ``timeout_seconds`` (None: until one) for at least one. [] on timeout
        or once closed."""
        deadline = None if timeout_seconds is None else time.monotonic() + timeout_seconds
        with self._lock:
            while not self._closed.is_set():
                found = self._collect()
                if found:
                    return found
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return []
                self._sleep(remaining)
            return []

    async def wait_async(self, timeout_seconds: float) -> list[int]:
        """``wait`` in the loop's default executor, for async consoles."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, self.wait, timeout_seconds)

    def __iter__(self) -> Iterator[int]:
        """Change ids until ``close``."""
        while not self._closed.is_set():
            yield from self.wait(timeout_seconds=1.0)

    def close(self) -> None:
        if self._closed.is_set():
            return
        self._closed.set()
        os.write(self._wake_write, b"x")
        with self._lock:  # a waiting thread returns first
            self._drop_listener()
            if self._reader is not None:
                self._reader.close()
            self._engine.dispose()
            os.close(self._wake_read)
            os.close(self._wake_write)

    def __enter__(self) -> QueueWatcher:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # -- both backends

    def _latest_id(self) -> int:
        query = sa.select(sa.func.coalesce(sa.func.max(changes.c.id), 0))
        if self._reader is not None:
            with self._reader.begin():
                return int(self._reader.execute(query).scalar_one())
        with self._engine.connect() as conn:
            return int(conn.execute(query).scalar_one())

    def _since_last(self) -> list[int]:
        query = sa.select(changes.c.id).where(changes.c.id > self._last_id).order_by(changes.c.id)
        if self._reader is not None:
            # A short transaction per poll, so each poll sees the latest commits.
            with self._reader.begin():
                found = list(self._reader.execute(query).scalars())
        else:
            with self._engine.connect() as conn:
                found = list(conn.execute(query).scalars())
        if found:
            self._last_id = found[-1]
        return found

    def _collect(self) -> list[int]:
        if not self._listens:
            return self._since_last()
        if self._listener is None:
            if not self._reconnect():
                return []
            # What happened while we were away; some of it may be notified as well.
            self._caught_up = set(self._since_last())
            return sorted(self._caught_up)
        try:
            self._listener.poll()
        except self._driver_error as exc:
            log.warning("queue watcher lost its PostgreSQL connection: %s", exc)
            self._drop_listener()
            return []
        found = []
        while self._listener.notifies:
            payload = self._listener.notifies.pop(0).payload
            if payload.isdigit() and int(payload) not in self._caught_up:
                found.append(int(payload))
        if found:
            self._last_id = max(self._last_id, *found)
        return found

    def _sleep(self, remaining: float | None) -> None:
        """Until a notification, close(), or the time runs out (on SQLite: the
        next poll)."""
        readable = [self._wake_read]
        if self._listener is not None:
            readable.append(self._listener.fileno())
            limit = remaining
        else:
            delay = self.settings.poll_interval_seconds
            if self._listens:
                delay = RECONNECT_DELAY_SECONDS
            limit = delay if remaining is None else min(delay, remaining)
        select.select(readable, [], [], limit)

    # -- PostgreSQL

    def _listen(self) -> None:
        # A plain driver connection, outside any pool: it only ever listens.
        dialect = self._engine.dialect
        cargs, cparams = dialect.create_connect_args(self._engine.url)
        # Names the listener in pg_stat_activity.
        cparams.setdefault("application_name", f"voicebot queue watcher {self._channel}"[:63])
        listener = dialect.connect(*cargs, **cparams)
        listener.autocommit = True
        with listener.cursor() as cursor:
            cursor.execute(f'LISTEN "{self._channel}"')
        self._listener = listener

    def _reconnect(self) -> bool:
        try:
            self._listen()
        except self._driver_error as exc:
            log.warning("queue watcher cannot reconnect to PostgreSQL: %s", exc)
            return False
        return True

    def _drop_listener(self) -> None:
        if self._listener is not None:
            try:
                self._listener.close()
            except self._driver_error:  # already broken
                log.debug("closing a broken listener", exc_info=True)
            self._listener = None
