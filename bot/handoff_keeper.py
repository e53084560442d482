"""Handoffs the queue could not take when the call escalated.

When the queue's database is away at the moment a call goes to a person, the
handoff is kept: ``HandoffKeeper.keep`` tries it again with backoff for as
long as the caller is on the line (the caller waits on hold meanwhile). A call
that ends first leaves its handoff in a JSON-lines spill file in the var
folder (the log says which); the next start of any bot process or console
writes it to the queue (``replay_handoff_spills``):

- a live call whose caller hung up becomes a callback task when their number
  is known (they waited and got nowhere: a call centre calls them back),
  otherwise an abandoned item with the time they waited, so reports count it;
- a callback request stays a callback request.

Each handoff carries an id (in its package's ``extra``), so a write whose
answer was lost with the connection is never queued twice.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import threading
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from bot.queue import AgentQueue, QueueItem
from bot.queue.records import QueueSettings
from bot.queue.schema import items
from bot.retry import Backoff, error_reason, is_transient

log = logging.getLogger(__name__)

SPILL_PREFIX = "handoff-spill-"
REJECTED_PREFIX = "handoff-rejected-"
_CLAIMED = ".replaying-"
HANDOFF_ID_KEY = "handoff_id"
HUNG_UP_NOTE = "The caller hung up while our queue was unavailable: call them back."


@dataclass(frozen=True)
class QueuedHandoff:
    """One escalation as the queue takes it, with when it happened."""

    handoff_id: str
    call_id: str
    kind: str
    reason: str
    priority: int
    skill: str
    caller_number: str | None
    package: dict[str, Any]
    summary: str
    escalated_at: str  # ISO 8601, UTC
    # When the caller hung up before the queue took it (None: still on the line).
    hung_up_at: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def new(
        cls,
        call_id: str,
        kind: str,
        reason: str,
        priority: int,
        skill: str,
        caller_number: str | None,
        package: dict[str, Any],
        summary: str,
    ) -> QueuedHandoff:
        handoff_id = uuid.uuid4().hex
        extra = {**dict(package.get("extra") or {}), HANDOFF_ID_KEY: handoff_id}
        return cls(
            handoff_id, call_id, kind, reason, priority, skill, caller_number,
            {**package, "extra": extra}, summary, _now().isoformat(),
        )  # fmt: skip

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False)

    @classmethod
    def from_json(cls, line: str) -> QueuedHandoff:
        row = json.loads(line)
        if not isinstance(row, dict):
            raise ValueError("not a JSON object")
        handoff = cls(**row)
        datetime.fromisoformat(handoff.escalated_at)  # checked now, not at replay's end
        if handoff.hung_up_at is not None:
            datetime.fromisoformat(handoff.hung_up_at)
        return handoff


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _fixed(at: str) -> Callable[[], datetime]:
    moment = datetime.fromisoformat(at)
    return lambda: moment


def find_queued(queue: AgentQueue, handoff: QueuedHandoff) -> int | None:
    """The id of the item an earlier attempt already queued for this handoff."""
    marker = f'"{HANDOFF_ID_KEY}": "{handoff.handoff_id}"'
    with queue.engine.connect() as conn:
        row = conn.execute(
            sa.select(items.c.id)
            .where(items.c.call_id == handoff.call_id, items.c.handoff.contains(marker))
            .order_by(items.c.id)
        ).first()
    return None if row is None else int(row[0])


def enqueue_once(queue: AgentQueue, handoff: QueuedHandoff, retry: bool) -> QueueItem:
    """Queues the handoff; on a ``retry`` first looks whether an earlier
    attempt's write went through (its answer lost with the connection)."""
    if retry:
        existing = find_queued(queue, handoff)
        if existing is not None:
            item = queue.item(existing)
            if item is not None:
                return item
    return queue.enqueue(
        handoff.call_id, handoff.kind, handoff.reason, handoff.priority, handoff.skill,
        handoff.caller_number, handoff.package, handoff.summary,
    )  # fmt: skip


class HandoffKeeper:
    """Keeps handoffs the queue could not take; see the module's docstring."""

    def __init__(
        self, queue: AgentQueue, spill_dir: Path, database_key: str, backoff: Backoff
    ) -> None:
        self._queue = queue
        self.spill_dir = spill_dir
        self._backoff = backoff
        stamp = _now().strftime("%Y%m%dT%H%M%S")
        self._name = f"{database_key}-{socket.gethostname()}-{os.getpid()}-{stamp}"

    @property
    def spill_path(self) -> Path:
        return self.spill_dir / f"{SPILL_PREFIX}{self._name}.jsonl"

    async def keep(self, handoff: QueuedHandoff) -> QueueItem | None:
        """Tries the handoff again until the queue takes it (its item) or the
        queue refuses it for good (None: kept in a rejected file). Cancel it
        when the call ends, then ``spill`` the handoff."""
        loop = asyncio.get_running_loop()
        attempt = 0
        while True:
            await asyncio.sleep(self._backoff.delay_seconds(attempt))
            attempt += 1
            try:
                item = await loop.run_in_executor(None, enqueue_once, self._queue, handoff, True)
            except Exception as exc:
                if is_transient(exc):
                    continue
                self.reject(handoff, exc)
                return None
            log.warning(
                "call %s: the queue is back; its handoff is queued (item %d) after %d attempt(s)",
                handoff.call_id, item.id, attempt,
            )  # fmt: skip
            return item

    def spill(self, handoff: QueuedHandoff) -> Path | None:
        """Keeps the handoff of a call that ended before the queue took it."""
        kept = replace(handoff, hung_up_at=handoff.hung_up_at or _now().isoformat())
        path = self.spill_path
        try:
            _append(path, kept)
        except OSError as exc:
            log.error(
                "call %s: its handoff is LOST: cannot write %s (%s): %s",
                handoff.call_id, path, exc, kept.to_json(),
            )  # fmt: skip
            return None
        log.warning(
            "call %s ended while the queue was unreachable: its handoff is kept in %s, "
            "to be queued at the next start of the bot or the console",
            handoff.call_id, path,
        )  # fmt: skip
        return path

    def reject(self, handoff: QueuedHandoff, exc: BaseException) -> None:
        where = self.spill_dir / f"{REJECTED_PREFIX}{self._name}.jsonl"
        try:
            _append(where, handoff)
        except OSError as file_error:
            where = Path(f"nowhere ({file_error})")
        log.error(
            "call %s: the queue refused its handoff (%s); kept in %s",
            handoff.call_id, error_reason(exc), where,
        )  # fmt: skip


def _append(path: Path, handoff: QueuedHandoff) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as out:
        out.write(handoff.to_json() + "\n")
        out.flush()
        os.fsync(out.fileno())


def replay_handoff_spills(
    url: str, spill_dir: Path, database_key: str, settings: QueueSettings | None = None
) -> int:
    """Queues every spilled handoff for the database at ``url``; returns how
    many were queued. A file whose database is still away stays for the next
    start; one another process is replaying is left to it."""
    if not spill_dir.is_dir():
        return 0
    queued = 0
    prefix = f"{SPILL_PREFIX}{database_key}-"
    for path in sorted(spill_dir.glob(f"{prefix}*")):
        if _CLAIMED in path.name:
            original = path.with_name(path.name.rsplit(_CLAIMED, 1)[0])
            if _alive(path.name.rsplit(_CLAIMED, 1)[1]):
                continue
            try:  # taken by a process that died while replaying it: free again
                path.rename(original)
            except OSError:
                continue
            path = original
        if not path.name.endswith(".jsonl"):
            continue
        claimed = path.with_name(f"{path.name}{_CLAIMED}{os.getpid()}")
        try:
            path.rename(claimed)
        except OSError:
            continue
        done, left = _replay_file(url, claimed, settings)
        queued += done
        if left:
            with path.open("a", encoding="utf-8") as out:
                out.writelines(h.to_json() + "\n" for h in left)
            log.warning(
                "%d handoff(s) in %s wait for the queue's database: kept for the next start",
                len(left), path,
            )  # fmt: skip
        claimed.unlink()
    return queued


def start_handoff_replay(
    url: str, spill_dir: Path, settings: QueueSettings | None = None
) -> threading.Thread:
    """``replay_handoff_spills`` once, in a daemon thread (a start never waits
    for it; a database still away keeps the files for the next start)."""
    from bot.store import database_key

    def replay() -> None:
        try:
            replay_handoff_spills(url, spill_dir, database_key(url), settings)
        except Exception:
            log.exception("queueing spilled handoffs failed; they stay for the next start")

    thread = threading.Thread(target=replay, name="handoff-replay", daemon=True)
    thread.start()
    return thread


def _replay_file(
    url: str, path: Path, settings: QueueSettings | None
) -> tuple[int, list[QueuedHandoff]]:
    """Queues one claimed file's handoffs: (how many, those still waiting)."""
    handoffs = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            handoffs.append(QueuedHandoff.from_json(line))
        except (ValueError, TypeError) as exc:
            bad = path.with_name(f"{REJECTED_PREFIX}{path.name.split(_CLAIMED)[0]}")
            with bad.open("a", encoding="utf-8") as out:
                out.write(line + "\n")
            log.error("%s line %d is not a handoff (%s): moved to %s", path, number, exc, bad)
    done = 0
    for index, handoff in enumerate(handoffs):
        try:
            if _replay_one(url, handoff, settings):
                done += 1
        except Exception as exc:
            if is_transient(exc):
                return done, handoffs[index:]
            where = path.with_name(f"{REJECTED_PREFIX}{path.name.split(_CLAIMED)[0]}")
            _append(where, handoff)
            log.error(
                "call %s: the queue refused its spilled handoff (%s); kept in %s",
                handoff.call_id, error_reason(exc), where,
            )  # fmt: skip
    return done, []


def _replay_one(url: str, handoff: QueuedHandoff, settings: QueueSettings | None) -> bool:
    """Queues one spilled handoff as the module's docstring says; False when
    an earlier replay already did."""
    hung_up_at = handoff.hung_up_at or handoff.escalated_at
    # Each write dated as it would have been: the wait counts from the escalation.
    at_escalation = AgentQueue(url, settings, clock=_fixed(handoff.escalated_at))
    try:
        if find_queued(at_escalation, handoff) is not None:
            # A last attempt went through as the call ended: nobody waits on it now.
            if handoff.kind == "call":
                _abandon(url, handoff.call_id, hung_up_at, settings)
            log.warning("call %s: its spilled handoff is already queued", handoff.call_id)
            return False
        if handoff.kind == "call" and handoff.caller_number:
            callback = replace(
                handoff, kind="callback", summary=f"{handoff.summary} {HUNG_UP_NOTE}".strip()
            )
            item = enqueue_once(at_escalation, callback, retry=False)
            outcome = f"a callback task to {handoff.caller_number}"
        else:
            item = enqueue_once(at_escalation, handoff, retry=False)
            outcome = "a callback request" if handoff.kind == "callback" else ""
            if handoff.kind == "call":
                _abandon(url, handoff.call_id, hung_up_at, settings)
                outcome = "an abandoned call (no number to call back)"
    finally:
        at_escalation.close()
    log.warning(
        "call %s: its spilled handoff is queued as %s (item %d)", handoff.call_id, outcome, item.id
    )
    return True


def _abandon(url: str, call_id: str, at: str, settings: QueueSettings | None) -> None:
    """The call's waiting live items end as abandoned, as of when it hung up."""
    at_hang_up = AgentQueue(url, settings, clock=_fixed(at))
    try:
        at_hang_up.abandon(call_id)
    finally:
        at_hang_up.close()


def _alive(pid_text: str) -> bool:
    try:
        os.kill(int(pid_text), 0)
    except (ValueError, ProcessLookupError):
        return False
    except PermissionError:
        return True
    return True
