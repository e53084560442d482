"""Live updates for the console's pages, sent as Server-Sent Events.

Queue changes: one ``QueueWatcher`` per console process, waiting in its own
thread, hands each batch of change ids to the event loop, which passes the
latest id to every open queue stream. Call transcripts: the call store has no
notifications, so each open call stream reads the new turns of its call every
``transcript_poll_seconds``, in a worker thread. Every stream runs inside
``while_allowed``, which ends it soon after its reader loses the right to it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Generic, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from starlette.concurrency import run_in_threadpool

from bot.console.views import turn_view
from bot.queue import QueueWatcher
from bot.queue.schema import WRITE_OPTION
from bot.store import turns
from bot.training.inbox import flag_turn
from bot.training.schema import create_training_tables, turn_flags

log = logging.getLogger(__name__)

# A comment line now and then keeps idle streams open through proxies, and
# lets the server notice a browser that went away.
KEEPALIVE_SECONDS = 15.0
# A subscriber that falls this far behind loses old ids: it only needs to know
# that something changed, and will read the whole queue anyway.
SUBSCRIBER_BACKLOG = 16
# A value shared between requests is rebuilt at least this often, whatever
# the change feed says.
SHARED_MAX_AGE_SECONDS = 10.0

T = TypeVar("T")


def sse_message(event: str, data: Any, event_id: int | None = None) -> str:
    """One Server-Sent Event: a name, one line of JSON data, an optional id."""
    lines = [f"event: {event}"]
    if event_id is not None:
        lines.append(f"id: {event_id}")
    lines.append(f"data: {json.dumps(data, separators=(',', ':'), ensure_ascii=False)}")
    return "\n".join(lines) + "\n\n"


SSE_HEADERS = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}


async def _next_message(messages: AsyncIterator[str]) -> str:
    return await messages.__anext__()


async def while_allowed(
    body: AsyncIterator[str],
    allowed: Callable[[], bool],
    check_seconds: float,
    clock: Callable[[], float] = time.monotonic,
) -> AsyncIterator[str]:
    """``body``'s messages, for as long as ``allowed()`` (asked on a worker
    thread every ``check_seconds``, also while the body waits for its next
    message) says yes; then an ``end`` event, and the stream ends. A check
    that fails counts as a no."""
    pending: asyncio.Task[str] | None = None
    checked_at = clock()
    try:
        while True:
            if pending is None:
                pending = asyncio.ensure_future(_next_message(body))
            wait = max(0.0, checked_at + check_seconds - clock())
            done, _ = await asyncio.wait({pending}, timeout=wait)
            if done:
                finished, pending = pending, None
                try:
                    message = finished.result()
                except StopAsyncIteration:
                    return
                yield message
            if clock() - checked_at < check_seconds:
                continue
            checked_at = clock()
            try:
                still = await run_in_threadpool(allowed)
            except Exception:  # fail closed: the reader reconnects and is checked afresh
                log.exception("checking a live stream's reader failed; ending the stream")
                still = False
            if not still:
                yield sse_message("end", {"reason": "access_ended"})
                return
    finally:
        if pending is not None:
            pending.cancel()
            with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
                await pending
        aclose = getattr(body, "aclose", None)
        if aclose is not None:
            await aclose()


@dataclass(frozen=True)
class Shared(Generic[T]):
    """A value built from the queue, and its age in seconds when handed out."""

    value: T
    age_seconds: float


@dataclass(frozen=True)
class _Built(Generic[T]):
    value: T
    version: int
    built_at: float


class QueueChangeFeed:
    """Fans a queue watcher's change ids out to asyncio subscribers, and keeps
    values built from the queue (``shared``) until the next change."""

    def __init__(self, watcher_factory: Callable[[], QueueWatcher]) -> None:
        self._watcher_factory = watcher_factory
        self._watcher: QueueWatcher | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._subscribers: set[asyncio.Queue[int]] = set()
        self._stopping = threading.Event()
        # Moves on with each batch of changes heard (before any subscriber
        # hears of it) and whenever the feed starts or stops following them;
        # nothing is kept while it does not follow them (not started, stopped,
        # or its watcher failing).
        self._version = 0
        self._following = False
        self._version_lock = threading.Lock()
        self._built: dict[str, _Built[Any]] = {}
        self._building: dict[str, threading.Lock] = {}
        self._building_lock = threading.Lock()

    def shared(
        self, name: str, build: Callable[[], T], max_age_seconds: float = SHARED_MAX_AGE_SECONDS
    ) -> Shared[T]:
        """``build()``'s value, built once per queue change for all callers
        (from worker threads): one builds while the others wait for it.

        A value is kept only while the feed follows every change, and for at
        most ``max_age_seconds`` in any case. It is labelled with the version
        read before it is built, so a change that lands during the build
        makes the next caller build again."""
        with self._building_lock:
            lock = self._building.setdefault(name, threading.Lock())
        with lock:
            with self._version_lock:
                following, version = self._following, self._version
            now = time.monotonic()
            kept = self._built.get(name)
            if (
                following
                and kept is not None
                and kept.version == version
                and now - kept.built_at <= max_age_seconds
            ):
                return Shared(kept.value, now - kept.built_at)
            value = build()
            if following:
                self._built[name] = _Built(value, version, now)
            return Shared(value, time.monotonic() - now)

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._watcher = await run_in_threadpool(self._watcher_factory)
        self._thread = threading.Thread(
            target=self._watch, args=(self._watcher,), name="console-queue-watch", daemon=True
        )
        self._thread.start()

    async def stop(self) -> None:
        self._stopping.set()
        self._moved_on(following=False)
        if self._watcher is not None:
            self._watcher.close()
        if self._thread is not None:
            await run_in_threadpool(self._thread.join, 5.0)
        self._watcher = None
        self._thread = None

    def subscribe(self) -> asyncio.Queue[int]:
        subscriber: asyncio.Queue[int] = asyncio.Queue(maxsize=SUBSCRIBER_BACKLOG)
        self._subscribers.add(subscriber)
        return subscriber

    def unsubscribe(self, subscriber: asyncio.Queue[int]) -> None:
        self._subscribers.discard(subscriber)

    def _moved_on(self, following: bool) -> None:
        """What was built so far is out of date."""
        with self._version_lock:
            self._version += 1
            self._following = following

    def _watch(self, watcher: QueueWatcher) -> None:
        loop = self._loop
        assert loop is not None
        # The watcher reports every change made after it was created.
        self._moved_on(following=True)
        while True:
            try:
                found = watcher.wait(timeout_seconds=1.0)
            except Exception:  # a database hiccup must not end live updates for good
                log.exception("queue watcher failed; retrying")
                self._moved_on(following=False)
                if self._stopping.wait(1.0):
                    return
                continue
            if self._stopping.is_set():
                return
            if found or not self._following:
                # After a failure the watcher has caught up from the change log.
                self._moved_on(following=True)
            if found:
                try:
                    loop.call_soon_threadsafe(self._publish, found[-1])
                except RuntimeError:  # the loop closed under us: the console is stopping
                    return

    def _publish(self, change_id: int) -> None:
        for subscriber in list(self._subscribers):
            # A full backlog has plenty to wake its reader up for already.
            with contextlib.suppress(asyncio.QueueFull):
                subscriber.put_nowait(change_id)


async def queue_stream(
    feed: QueueChangeFeed, keepalive_seconds: float = KEEPALIVE_SECONDS
) -> AsyncIterator[str]:
    """A queue page's stream: an event after each queue change, or one for
    all the changes that came while the stream was busy sending."""
    subscriber = feed.subscribe()
    try:
        yield "retry: 1000\n\n"
        while True:
            try:
                change_id = await asyncio.wait_for(subscriber.get(), keepalive_seconds)
            except asyncio.TimeoutError:
                yield ": keepalive\n\n"
                continue
            # Under load ids pile up; sent one by one, the latest would wait
            # behind stale ones, and the page reads the whole queue anyway.
            while not subscriber.empty():
                change_id = max(change_id, subscriber.get_nowait())
            yield sse_message("queue", {"change": change_id}, change_id)
    finally:
        feed.unsubscribe(subscriber)


def _as_utc(moment: datetime) -> datetime:
    # SQLite hands DateTime values back without a zone; the call store writes UTC.
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


class TurnReader:
    """Reads a call's turns from the call store's ``turns`` table, and keeps the
    agents' flags on them (``training_turn_flags``, beside the turns)."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._redactor: Any = None
        self._flags_ready = False
        self._flags_lock = threading.Lock()

    def _has_turns_table(self) -> bool:
        with self._engine.connect() as conn:
            return bool(sa.inspect(conn).has_table(turns.name))

    def _ensure_flags_table(self) -> None:
        if self._flags_ready:
            return
        with self._flags_lock:
            if self._flags_ready:
                return
            # Takes the write lock before looking (SQLite's BEGIN IMMEDIATE on the
            # queue's engine): a read lock upgraded to write fails at once when
            # another writer is busy.
            writes = self._engine.execution_options(**{WRITE_OPTION: True})
            try:
                create_training_tables(writes)
            except (sa.exc.OperationalError, sa.exc.ProgrammingError):
                # Another process created them between our check and our CREATE.
                create_training_tables(writes)
            self._flags_ready = True

    def turns(self, call_id: str, after_index: int = -1) -> list[dict[str, Any]]:
        """The call's turns after ``after_index``, in order, as the pages show them,
        each with its ``created_at`` and whether an agent flagged it."""
        self._ensure_flags_table()
        flagged = sa.exists().where(turn_flags.c.turn_id == turns.c.id)
        query = (
            sa.select(
                turns.c.turn_index,
                turns.c.t_ms,
                turns.c.created_at,
                turns.c.transcript,
                turns.c.intent,
                turns.c.bot_text,
                flagged.label("flagged"),
            )
            .where(turns.c.call_id == call_id, turns.c.turn_index > after_index)
            .order_by(turns.c.turn_index)
        )
        try:
            with self._engine.connect() as conn:
                rows = conn.execute(query).mappings().all()
        except (sa.exc.OperationalError, sa.exc.ProgrammingError):
            # No call store in this database yet: no bot has stored a call.
            if not self._has_turns_table():
                return []
            raise
        return [
            {
                **turn_view(row),
                "flagged": bool(row["flagged"]),
                "created_at": _as_utc(row["created_at"]),
            }
            for row in rows
        ]

    def _redacted(self, note: str) -> str:
        """An agent's note may quote the caller: it is kept redacted."""
        if not note.strip():
            return ""
        if self._redactor is None:
            from bot.privacy import Redactor  # spaCy: only once a note is written

            self._redactor = Redactor()
        return str(self._redactor.redact(note).text)

    def flag(self, call_id: str, turn_index: int, flagged_by: str, note: str = "") -> bool | None:
        """Records that ``flagged_by`` says the bot misunderstood this turn.
        False when they had said so already; None when the call has no such turn."""
        self._ensure_flags_table()
        query = sa.select(turns.c.id).where(
            turns.c.call_id == call_id, turns.c.turn_index == turn_index
        )
        try:
            with self._engine.connect() as conn:
                turn_id = conn.execute(query).scalar()
        except (sa.exc.OperationalError, sa.exc.ProgrammingError):
            if not self._has_turns_table():
                return None
            raise
        if turn_id is None:
            return None
        writes = self._engine.execution_options(**{WRITE_OPTION: True})
        return flag_turn(writes, turn_id, call_id, flagged_by, self._redacted(note))


async def turn_stream(
    reader: TurnReader,
    call_id: str,
    after_index: int,
    poll_seconds: float,
    keepalive_seconds: float = KEEPALIVE_SECONDS,
) -> AsyncIterator[str]:
    """A call page's stream: each new turn of the call, once."""
    yield "retry: 1000\n\n"
    quiet_seconds = 0.0
    while True:
        found = await run_in_threadpool(reader.turns, call_id, after_index)
        for turn in found:
            after_index = turn["turn_index"]
            shown = {key: value for key, value in turn.items() if key != "created_at"}
            yield sse_message("turn", shown, after_index)
        if found:
            quiet_seconds = 0.0
        elif quiet_seconds >= keepalive_seconds:
            quiet_seconds = 0.0
            yield ": keepalive\n\n"
        await asyncio.sleep(poll_seconds)
        quiet_seconds += poll_seconds
