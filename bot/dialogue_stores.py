"""The dialogue's stores, waiting out a database or Redis that went away.

With several bot processes Rasa keeps each call's state in a SQL tracker
store and serialises its turns with a Redis lock store. Here every call to
them goes through an ``Outage`` (``bot/retry.py``): while the store has been
away for less than the backoff's limit the call waits and tries again, past
it the call gives up with ``ServiceUnavailable``.

Rasa wraps the tracker store in a fail-safe that swallows errors (a failed
read becomes a blank conversation, a failed save goes to memory), so the give
ups of the turn in progress are collected (``collecting_outages``) for the
dialogue to act on instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import logging
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any, TypeVar

from bot.connectivity import database_address, redis_address
from bot.retry import Backoff, Outage, ServiceUnavailable

_T = TypeVar("_T")

log = logging.getLogger(__name__)

# How long the dialogue's stores are waited for before the turn is handed over.
STORE_BACKOFF = Backoff(give_up_seconds=10.0)
# How often a turn looks again at a call's lock another process holds.
_LOCK_POLL_SECONDS = 0.2

_outages: contextvars.ContextVar[list[ServiceUnavailable] | None] = contextvars.ContextVar(
    "dialogue_store_outages", default=None
)
_waits: contextvars.ContextVar[bool] = contextvars.ContextVar("dialogue_store_waits", default=True)


@contextlib.contextmanager
def collecting_outages() -> Iterator[list[ServiceUnavailable]]:
    """The tracker store's give-ups while the block runs (in this task)."""
    outages: list[ServiceUnavailable] = []
    token = _outages.set(outages)
    try:
        yield outages
    finally:
        _outages.reset(token)


@contextlib.contextmanager
def without_waiting() -> Iterator[None]:
    """Store calls in the block try once (a guess, or waited enough already)."""
    token = _waits.set(False)
    try:
        yield
    finally:
        _waits.reset(token)


# One outage record per store in the process, shared by every model loaded
# (a deployment loads a second beside the first): (kind, URL) -> its record.
_store_outages: dict[tuple[str, str], Outage] = {}
_store_outages_lock = threading.Lock()


def store_outage(kind: str, url: str, backoff: Backoff) -> Outage:
    """The outage record of the ``tracker store`` or ``lock store`` at ``url``,
    named as the log shows it: ``the tracker store (dialogue.tracker_store_url,
    database at host:port/db)``. The same store gets the same record (its
    backoff is the latest one asked for)."""
    with _store_outages_lock:
        outage = _store_outages.get((kind, url))
        if outage is None:
            outage = _store_outages[(kind, url)] = _new_store_outage(kind, url, backoff)
        outage.backoff = backoff
        return outage


def stores_away_seconds(tracker_store_url: str, lock_store_url: str) -> float | None:
    """How long the longer-away of these dialogue stores has been away in this
    process; None while both answer (or no call has used them yet)."""
    with _store_outages_lock:
        outages = [
            _store_outages.get(key)
            for key in (("tracker store", tracker_store_url), ("lock store", lock_store_url))
        ]
    away = [seconds for o in outages if o is not None and (seconds := o.away_seconds) is not None]
    return max(away) if away else None


def _new_store_outage(kind: str, url: str, backoff: Backoff) -> Outage:
    if not url:
        return Outage(f"the {kind} (in memory)", backoff)
    address = database_address if kind == "tracker store" else redis_address
    try:
        where = address(url).removeprefix("the ")
    except Exception:  # a bad URL fails later, with its own message
        where = "its URL"
    return Outage(f"the {kind} (dialogue.{kind.replace(' ', '_')}_url, {where})", backoff)


@functools.cache
def _waiting_sql_tracker_store() -> type:
    """Rasa's SQL tracker store, waiting out a database that went away (a
    class made on first use: Rasa takes seconds to import)."""
    from rasa.core.tracker_store import SQLTrackerStore

    class WaitingSQLTrackerStore(SQLTrackerStore):
        outage: Outage

        async def _waited(self, operation: Callable[[], Awaitable[_T]]) -> _T:
            try:
                return await self.outage.call_async(operation, wait=_waits.get())
            except ServiceUnavailable as exc:
                outages = _outages.get()
                if outages is not None:
                    outages.append(exc)
                raise

        async def retrieve(self, sender_id: str) -> Any:
            return await self._waited(lambda: SQLTrackerStore.retrieve(self, sender_id))

        async def retrieve_full_tracker(self, conversation_id: str) -> Any:
            return await self._waited(
                lambda: SQLTrackerStore.retrieve_full_tracker(self, conversation_id)
            )

        async def save(self, tracker: Any) -> None:
            await self._waited(lambda: SQLTrackerStore.save(self, tracker))

        async def keys(self) -> Any:
            return await self._waited(lambda: SQLTrackerStore.keys(self))

    return WaitingSQLTrackerStore


def sql_tracker_store(url: str, outage: Outage | None = None) -> Any:
    """Rasa's SQL tracker store for a SQLAlchemy URL, waiting out outages
    as ``outage`` says; None keeps Rasa's in-memory one."""
    if not url:
        return None
    from sqlalchemy.engine import make_url

    parts = make_url(url)
    query = dict(parts.query)
    if parts.get_backend_name() == "postgresql":
        # A host that does not answer at all fails in seconds, not minutes.
        query.setdefault("connect_timeout", "10")
    store = _waiting_sql_tracker_store()(
        dialect=parts.get_backend_name(),
        host=parts.host,
        port=parts.port,
        db=parts.database or "rasa.db",
        username=parts.username,
        password=parts.password,
        query=query or None,
    )
    store.outage = outage or store_outage("tracker store", url, STORE_BACKOFF)
    return store


class TurnLock:
    """A call's turn lock: Rasa's ticket lock (one turn of a call at a time,
    whichever process takes it), waiting out a lock store that went away."""

    def __init__(self, lock_store: Any, outage: Outage) -> None:
        self._store = lock_store
        self.outage = outage
        # Call id -> its tickets an outage kept us from releasing.
        self._unreleased: dict[str, list[int]] = {}

    @contextlib.asynccontextmanager
    async def held(self, call_id: str) -> AsyncIterator[None]:
        """Holds the call's lock while the block runs; raises
        ``ServiceUnavailable`` when the lock store stays away."""
        from rasa.core.lock_store import LOCK_LIFETIME

        store, outage = self._store, self.outage

        async def release_unreleased() -> None:
            # This process's own earlier turn: no other turn of the call runs.
            while unreleased := self._unreleased.get(call_id):
                store.cleanup(call_id, unreleased[-1])
                unreleased.pop()
            self._unreleased.pop(call_id, None)

        async def issue() -> int:
            return int(store.issue_ticket(call_id, LOCK_LIFETIME))

        await outage.call_async(release_unreleased)
        ticket = await outage.call_async(issue)

        async def acquire() -> None:
            while (lock := store.get_lock(call_id)) is not None and lock.is_locked(ticket):
                await asyncio.sleep(_LOCK_POLL_SECONDS)
                store.update_lock(call_id)  # drops expired tickets

        async def release() -> None:
            store.cleanup(call_id, ticket)

        try:
            await outage.call_async(acquire)
            yield
        finally:
            try:
                await outage.call_async(release)
            except Exception as exc:
                # Released before the call's next turn (which would otherwise
                # wait for the ticket to expire), or by itself when it expires.
                self._unreleased.setdefault(call_id, []).append(ticket)
                log.warning("call %s: the turn lock could not be released: %s", call_id, exc)
