"""The call store's writer thread: writes in order, waits out outages, and
never loses a row.

The store hands over jobs (small functions that describe row changes as
``Write`` values); the writer applies them in the order they came. When the
database is away the writes stay in memory, in order, and the writer tries
again with backoff (0.2 s doubling to 3.2 s). Once a call has ended and the
database is still away ``spill_after_end_seconds`` later (or when the store
closes), that call's writes go to a JSON-lines spill file in the spill folder
(the log says which); spill files are written to the database when it is back
and at the next start. A write the database refuses for good (a constraint,
a bad value) is logged and kept in a ``call-store-rejected-*.jsonl`` file.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from bot.retry import Backoff, Outage, error_reason, is_transient

log = logging.getLogger(__name__)

SPILL_PREFIX = "call-store-spill-"
REJECTED_PREFIX = "call-store-rejected-"
_CLAIMED = ".replaying-"
# Writes come in this shape: a call's end is the update that sets ``ended_at``.
INSERT, UPDATE_CALL, REDACT = "insert", "update_call", "redact"
_ENDED_COLUMN = "ended_at"
_DATETIME_TAG = "$datetime"


@dataclass(frozen=True)
class Write:
    """One change to the call store: a row inserted, a call updated, or a
    call's transcripts redacted."""

    op: str
    table: str
    call_id: str
    values: dict[str, Any] = field(default_factory=dict)

    @property
    def ends_call(self) -> bool:
        return self.op == UPDATE_CALL and _ENDED_COLUMN in self.values

    def to_json(self) -> str:
        values = {
            k: {_DATETIME_TAG: v.isoformat()} if isinstance(v, datetime) else v
            for k, v in self.values.items()
        }
        row = {"op": self.op, "table": self.table, "call_id": self.call_id, "values": values}
        return json.dumps(row, ensure_ascii=False)

    @classmethod
    def from_json(cls, line: str) -> Write:
        row = json.loads(line)
        values = {
            k: datetime.fromisoformat(v[_DATETIME_TAG])
            if isinstance(v, dict) and _DATETIME_TAG in v
            else v
            for k, v in dict(row["values"]).items()
        }
        return cls(str(row["op"]), str(row["table"]), str(row["call_id"]), values)


Job = Callable[[], None]


@dataclass
class _Pending:
    seq: int
    work: Write | Job

    @property
    def call_id(self) -> str | None:
        return self.work.call_id if isinstance(self.work, Write) else None


class StoreWriter:
    """One thread applying the store's jobs; see the module's docstring.

    ``apply`` writes one ``Write`` to the database (raising on failure);
    ``redact`` turns a transcript into its redacted form, for spilled turns
    of calls that are over (spill files hold no more than the database would).
    ``database_key`` names the database in the spill files' names, so that a
    folder shared by stores of several databases gives each back its own.
    """

    def __init__(
        self,
        apply: Callable[[Write], None],
        spill_dir: Path,
        service: str,
        redact: Callable[[str], str] | None = None,
        backoff: Backoff | None = None,
        spill_after_end_seconds: float = 10.0,
        database_key: str = "",
    ) -> None:
        self._apply = apply
        self._redact = redact
        self.spill_dir = spill_dir
        self._spill_after_end = spill_after_end_seconds
        self._outage = Outage(service, backoff)
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
        key = f"{database_key}-" if database_key else ""
        self._spill_prefix = f"{SPILL_PREFIX}{key}"
        self._name = f"{key}{socket.gethostname()}-{os.getpid()}-{stamp}"
        self._jobs: queue.Queue[tuple[int, Job] | None] = queue.Queue()
        self._backlog: list[_Pending] = []
        self._capture = threading.local()
        self._ended: dict[str, float] = {}
        self._spilled_calls: set[str] = set()
        self._attempts = 0
        self._next_attempt = 0.0
        # Spill files wait to be written (at start, and after an outage).
        self._replay_due = True
        # Flush accounting: job number -> writes of it not yet settled.
        self._cond = threading.Condition()
        self._last_seq = 0
        self._unsettled: dict[int, int] = {}
        self._thread = threading.Thread(target=self._run, name="call-store", daemon=True)
        self._thread.start()

    # -- any thread

    def submit(self, job: Job) -> None:
        with self._cond:
            self._last_seq += 1
            seq = self._last_seq
            self._unsettled[seq] = 1
        self._jobs.put((seq, job))

    def record(self, write: Write) -> None:
        """Called by jobs: the write joins the job's list (on the writer
        thread); anywhere else it becomes a job of its own."""
        captured: list[Write] | None = getattr(self._capture, "writes", None)
        if captured is not None:
            captured.append(write)
        else:
            self.submit(lambda: self.record(write))

    def flush(self, timeout_seconds: float | None = None) -> bool:
        """Waits until every job submitted so far is written, spilled or
        rejected; False on timeout."""
        with self._cond:
            target = self._last_seq
            return self._cond.wait_for(
                lambda: not any(seq <= target for seq in self._unsettled), timeout_seconds
            )

    def close(self, timeout_seconds: float = 30.0) -> None:
        """Writes what it can, spills the rest, and stops."""
        self._jobs.put(None)
        self._thread.join(timeout=timeout_seconds)

    # -- the writer thread

    def _run(self) -> None:
        closing = False
        while True:
            if not closing:
                wait = max(0.0, self._next_attempt - time.monotonic()) if self._backlog else None
                closing = self._take_jobs(wait)
            if self._backlog and (closing or time.monotonic() >= self._next_attempt):
                self._write_backlog()
            if closing:
                self._spill([p for p in self._backlog], "the call store is closing")
                self._backlog.clear()
                return
            self._spill_ended_calls()

    def _take_jobs(self, wait: float | None) -> bool:
        """Captures queued jobs into the backlog; True once the store closes."""
        try:
            item = self._jobs.get(timeout=wait) if wait != 0 else self._jobs.get_nowait()
        except queue.Empty:
            return False
        while True:
            if item is None:
                return True
            self._take(*item)
            try:
                item = self._jobs.get_nowait()
            except queue.Empty:
                return False

    def _take(self, seq: int, job: Job) -> None:
        try:
            writes = self._captured(job)
        except Exception as exc:
            if is_transient(exc):
                # A job that writes by itself: tried again as a whole.
                self._backlog.append(_Pending(seq, job))
                return
            log.exception("call store job failed")
            self._settle(seq, 1)
            return
        if not writes:
            self._settle(seq, 1)
            return
        with self._cond:
            self._unsettled[seq] = len(writes)
        for write in writes:
            if write.ends_call:
                self._ended.setdefault(write.call_id, time.monotonic())
            if write.call_id in self._spilled_calls:
                self._spill([_Pending(seq, write)], f"call {write.call_id}'s writes are there")
            else:
                self._backlog.append(_Pending(seq, write))

    def _captured(self, job: Job) -> list[Write]:
        self._capture.writes = []
        try:
            job()
            return list(self._capture.writes)
        finally:
            self._capture.writes = None

    def _settle(self, seq: int, count: int = 1) -> None:
        with self._cond:
            left = self._unsettled.get(seq, 0) - count
            if left > 0:
                self._unsettled[seq] = left
            else:
                self._unsettled.pop(seq, None)
            self._cond.notify_all()

    def _write_backlog(self) -> None:
        while self._backlog:
            pending = self._backlog[0]
            try:
                if isinstance(pending.work, Write):
                    self._apply(pending.work)
                else:
                    writes = self._captured(pending.work)
                    # What the job describes now replaces it, in its place.
                    self._backlog[0:1] = [_Pending(pending.seq, w) for w in writes]
                    with self._cond:
                        self._unsettled[pending.seq] = len(writes)
                    if not writes:
                        self._settle(pending.seq, 0)
                    continue
            except Exception as exc:
                if is_transient(exc):
                    self._outage.failed(exc)
                    self._next_attempt = time.monotonic() + self._outage.backoff.delay_seconds(
                        self._attempts
                    )
                    self._attempts += 1
                    return
                self._reject(pending, exc)
            self._backlog.pop(0)
            self._written(pending)

    def _written(self, pending: _Pending) -> None:
        self._settle(pending.seq)
        if isinstance(pending.work, Write) and pending.work.ends_call:
            self._ended.pop(pending.work.call_id, None)
        if self._attempts:
            self._attempts = 0
            self._outage.recovered()
            self._replay_due = True
        if self._replay_due:
            self.replay_spills()

    def _spill_ended_calls(self) -> None:
        if self._outage.away_seconds is None:
            return
        now = time.monotonic()
        for call_id, ended in list(self._ended.items()):
            if now - ended < self._spill_after_end:
                continue
            del self._ended[call_id]
            mine = [p for p in self._backlog if p.call_id == call_id]
            self._backlog = [p for p in self._backlog if p.call_id != call_id]
            self._spill(mine, f"the database stayed away after call {call_id} ended")

    # -- spill files

    def _spill(self, pending: list[_Pending], why: str) -> None:
        if not pending:
            return
        writes = [p.work for p in pending if isinstance(p.work, Write)]
        lost = len(pending) - len(writes)
        if lost:
            log.error("call store: %d write(s) that cannot be kept in a file were lost", lost)
        path = self.spill_dir / f"{SPILL_PREFIX}{self._name}.jsonl"
        try:
            self._append(path, self._redacted(writes))
        except OSError as exc:
            log.error("call store: %d write(s) lost: cannot write %s (%s)", len(writes), path, exc)
        else:
            self._spilled_calls.update(w.call_id for w in writes)
            calls = sorted({w.call_id for w in writes})
            log.warning(
                "call store: %s; %d write(s) of call(s) %s kept in %s, to be written to the "
                "database when it is back or at the next start",
                why, len(writes), ", ".join(calls), path,
            )  # fmt: skip
        for p in pending:
            self._settle(p.seq)

    def _redacted(self, writes: list[Write]) -> list[Write]:
        """Turns of calls whose redaction is among the writes, redacted now."""
        redact = self._redact
        to_redact = {w.call_id for w in writes if w.op == REDACT}
        if redact is None or not to_redact:
            return writes
        out = []
        for w in writes:
            if w.op == INSERT and w.table == "turns" and w.call_id in to_redact:
                text = str(w.values.get("transcript") or "")
                w = Write(w.op, w.table, w.call_id, {**w.values, "transcript": redact(text)})
            out.append(w)
        return out

    @staticmethod
    def _append(path: Path, writes: list[Write]) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a", encoding="utf-8") as out:
            out.writelines(w.to_json() + "\n" for w in writes)
            out.flush()
            os.fsync(out.fileno())

    def _reject(self, pending: _Pending, exc: BaseException) -> None:
        where = self.spill_dir / f"{REJECTED_PREFIX}{self._name}.jsonl"
        work = pending.work
        if not isinstance(work, Write):
            log.error("call store: a write was refused and lost: %s", error_reason(exc))
            return
        try:
            self._append(where, [work])
        except OSError as file_error:
            where = Path(f"nowhere ({file_error})")
        log.error(
            "call store: the database refused a write of call %s (%s); kept in %s",
            work.call_id, error_reason(exc), where,
        )  # fmt: skip

    def replay_spills(self) -> None:
        """Writes every spill file in the folder to the database (on the writer
        thread: at start, and when the database is back)."""
        self._replay_due = False
        for path in self._spill_files():
            claimed = path.with_name(f"{path.name}{_CLAIMED}{os.getpid()}")
            try:
                path.rename(claimed)  # another process may take it first
            except OSError:
                continue
            if not self._replay(claimed):
                claimed.rename(path)
                self._replay_due = True
                return
        # Their earlier writes are in the database now: later ones go there too.
        self._spilled_calls.clear()

    def _spill_files(self) -> Iterator[Path]:
        if not self.spill_dir.is_dir():
            return
        for path in sorted(self.spill_dir.glob(f"{self._spill_prefix}*")):
            if path.name.endswith(".jsonl"):
                yield path
            elif _CLAIMED in path.name and not _alive(path.name.rsplit(_CLAIMED, 1)[1]):
                # Taken by a process that died while writing it: free again.
                original = path.with_name(path.name.rsplit(_CLAIMED, 1)[0])
                try:
                    path.rename(original)
                except OSError:
                    continue
                yield original

    def _replay(self, path: Path) -> bool:
        """Writes one claimed spill file; False when the database went away."""
        done = 0
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                write = Write.from_json(line)
            except (ValueError, KeyError, TypeError) as exc:
                log.error("call store: %s line %d is not a write (%s): skipped", path, number, exc)
                continue
            try:
                self._apply(write)
            except Exception as exc:
                if is_transient(exc):
                    self._outage.failed(exc)
                    return False
                self._reject(_Pending(0, write), exc)
            done += 1
        path.unlink()
        log.warning("call store: %d spilled write(s) from %s are now in the database", done, path)
        return True


def _alive(pid_text: str) -> bool:
    try:
        os.kill(int(pid_text), 0)
    except (ValueError, ProcessLookupError):
        return False
    except PermissionError:
        return True
    return True
