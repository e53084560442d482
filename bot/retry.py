"""Waiting out a database or Redis that went away.

``Backoff`` says how long to wait between attempts (0.2 s, doubling, at most
3.2 s) and how long an outage may last before callers stop waiting for it.
``Outage`` is one service's availability, shared by every operation on it:
while the service has been away for less than the limit an operation waits
and tries again; once it has been away longer, every operation tries once and
gives up at once (so a long outage does not make every caller wait the whole
limit again, and the service's return is still noticed by the next attempt).
``is_transient`` tells an error that means "the service is away" (refused or
dropped connections, timeouts, SQLite's "database is locked") from one that
waiting cannot mend (a bad query, a constraint).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

_T = TypeVar("_T")

log = logging.getLogger(__name__)

# psycopg2 and SQLAlchemy class names that mean the connection, not the query, failed.
_CONNECTION_ERROR_NAMES = frozenset({"OperationalError", "InterfaceError"})
_REDIS_ERROR_NAMES = frozenset({"ConnectionError", "TimeoutError", "BusyLoadingError"})
# SQLite reports a lock held by another process (past its busy timeout) this way.
_SQLITE_BUSY_WORDS = ("database is locked", "database table is locked", "database is busy")


@dataclass(frozen=True)
class Backoff:
    """Waits between attempts, and how long an outage is waited out."""

    first_seconds: float = 0.2
    factor: float = 2.0
    max_seconds: float = 3.2
    # Once a service has been away this long, operations stop waiting for it.
    give_up_seconds: float = 15.0

    def __post_init__(self) -> None:
        if self.first_seconds <= 0 or self.factor < 1 or self.max_seconds < self.first_seconds:
            raise ValueError(f"backoff: bad waits {self}")
        if self.give_up_seconds < 0:
            raise ValueError(f"backoff: give_up_seconds must not be negative, got {self}")

    def delay_seconds(self, attempt: int) -> float:
        """The wait after the ``attempt``-th failure (0 for the first)."""
        return min(self.first_seconds * self.factor ** min(attempt, 64), self.max_seconds)


class ServiceUnavailable(RuntimeError):
    """A service stayed away longer than its backoff waits for."""

    def __init__(self, service: str, away_seconds: float, reason: str) -> None:
        super().__init__(f"{service} unreachable for {away_seconds:.1f} s: {reason}")
        self.service = service
        self.away_seconds = away_seconds
        self.reason = reason


def error_reason(exc: BaseException) -> str:
    """The first line of an error's message (drivers add hints and URLs below it)."""
    text = str(getattr(exc, "orig", None) or exc).strip()
    return text.splitlines()[0].strip() if text else type(exc).__name__


def _transient_one(exc: BaseException) -> bool:
    if isinstance(exc, ConnectionError | TimeoutError):  # refused, reset, aborted
        return True
    mro = type(exc).__mro__
    module = type(exc).__module__
    if module.startswith("sqlite3"):
        message = str(exc).lower()
        return any(words in message for words in _SQLITE_BUSY_WORDS)
    if module.startswith("redis"):
        return any(c.__name__ in _REDIS_ERROR_NAMES for c in mro)
    if module.startswith("psycopg2"):
        return any(
            c.__name__ in _CONNECTION_ERROR_NAMES and c.__module__.startswith("psycopg2")
            for c in mro
        )
    if module.startswith("sqlalchemy"):
        if getattr(exc, "connection_invalidated", False):
            return True
        # The pool's own timeout and disconnects; DBAPI errors are judged by
        # their driver's error (the chain's next link).
        return type(exc).__name__ in {"DisconnectionError", "TimeoutError"}
    return False


def is_transient(exc: BaseException | None) -> bool:
    """Whether the error, or one it was raised from, means the service is away."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if _transient_one(exc):
            return True
        orig = getattr(exc, "orig", None)  # SQLAlchemy's wrapped driver error
        if isinstance(orig, BaseException) and _transient_one(orig):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


class Outage:
    """One service's availability, shared by every operation on it (thread-safe)."""

    def __init__(
        self,
        service: str,
        backoff: Backoff | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.service = service
        self.backoff = backoff or Backoff()
        self._clock = clock
        self._lock = threading.Lock()
        self._down_since: float | None = None
        self._gave_up = False

    @property
    def away_seconds(self) -> float | None:
        """How long the service has been away; None while it answers."""
        with self._lock:
            return None if self._down_since is None else self._clock() - self._down_since

    def failed(self, exc: BaseException) -> float:
        """Records a failed attempt; returns how long the service has been away."""
        with self._lock:
            now = self._clock()
            if self._down_since is None:
                self._down_since = now
                log.warning("%s unreachable (%s); waiting for it", self.service, error_reason(exc))
            return now - self._down_since

    def recovered(self) -> None:
        """Records a successful attempt."""
        with self._lock:
            if self._down_since is None:
                return
            away = self._clock() - self._down_since
            self._down_since = None
            self._gave_up = False
        log.warning("%s is back after %.1f s", self.service, away)

    def next_wait(self, exc: BaseException, attempt: int) -> float | None:
        """After the ``attempt``-th failed attempt of one operation: seconds to
        wait before the next, or None when the outage is past the limit."""
        away = self.failed(exc)
        left = self.backoff.give_up_seconds - away
        if left <= 0:
            with self._lock:
                first, self._gave_up = not self._gave_up, True
            if first:
                log.error(
                    "%s still unreachable after %.1f s (%s): not waiting any longer",
                    self.service, away, error_reason(exc),
                )  # fmt: skip
            return None
        return min(self.backoff.delay_seconds(attempt), left)

    def _give_up(self, exc: BaseException) -> ServiceUnavailable:
        return ServiceUnavailable(self.service, self.away_seconds or 0.0, error_reason(exc))

    def _after_failure(self, exc: Exception, attempt: int, wait: bool) -> float:
        """The wait before the next attempt; raises when there is none."""
        if not is_transient(exc):
            raise exc
        if not wait:
            self.failed(exc)
            raise self._give_up(exc) from exc
        seconds = self.next_wait(exc, attempt)
        if seconds is None:
            raise self._give_up(exc) from exc
        return seconds

    def call(
        self,
        operation: Callable[[], _T],
        sleep: Callable[[float], None] = time.sleep,
        wait: bool = True,
    ) -> _T:
        """Runs ``operation``, waiting out transient failures within the limit;
        raises ``ServiceUnavailable`` (from the last error) past it, or at the
        first transient failure when ``wait`` is false."""
        attempt = 0
        while True:
            try:
                result = operation()
            except Exception as exc:
                sleep(self._after_failure(exc, attempt, wait))
                attempt += 1
            else:
                self.recovered()
                return result

    async def call_async(self, operation: Callable[[], Awaitable[_T]], wait: bool = True) -> _T:
        """``call`` for coroutines: the waits are ``asyncio.sleep``."""
        attempt = 0
        while True:
            try:
                result = await operation()
            except Exception as exc:
                await asyncio.sleep(self._after_failure(exc, attempt, wait))
                attempt += 1
            else:
                self.recovered()
                return result
