"""Retention: recordings and what callers said are kept ``retention_days``.

``purge_expired`` takes the calls that ended (or, never ended, started) before
the cutoff and are not purged yet, and for each one: deletes its recording
(only files inside the recordings folder), redacts its turns' transcripts again
(a call that crashed was never redacted), drops personal values from its turns'
entities, and scrubs its finished queue items (caller number, handoff details
and transcript, summary, notes). A purged call gets ``purged_at``, so the next
run skips it. Safe to run at any time, again, and on a database whose tables
do not exist yet.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from bot.queue.accounts import audit_log
from bot.queue.schema import FINAL_STATUSES, WRITE_OPTION, create_queue_engine
from bot.queue.schema import items as queue_items
from bot.queue.schema import messages as agent_messages
from bot.store import add_missing_columns, calls, create_db_engine, turns
from bot.training.schema import turn_flags

if TYPE_CHECKING:
    from bot.privacy import Redactor

log = logging.getLogger(__name__)

# Calls handled per database round; keeps transactions (and SQLite's write lock) short.
BATCH_CALLS = 200
# The entities bot.privacy treats as personal (its NORMALISER_KINDS); order ids are not.
PERSONAL_ENTITIES = frozenset({"email", "phone_number"})
# Handoff details that are personal whatever they look like; free text is redacted instead.
PERSONAL_DETAILS = frozenset({"email", "phone_number", "new_address"})
FREE_TEXT_DETAILS = frozenset({"complaint_text"})
# Call ids that can name a file in the recordings folder (bot.session names it <call_id>.wav).
_FILE_SAFE_CALL_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


class RetentionError(Exception):
    """A purge that cannot run as asked; the message says what to change."""


@dataclass(frozen=True)
class PurgeReport:
    """What one purge removed; ``cutoff`` is the moment before which calls expired."""

    recordings_deleted: int
    calls_scrubbed: int
    queue_items_scrubbed: int
    cutoff: datetime
    audit_rows_deleted: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "recordings_deleted": self.recordings_deleted,
            "calls_scrubbed": self.calls_scrubbed,
            "queue_items_scrubbed": self.queue_items_scrubbed,
            "cutoff": self.cutoff.isoformat(),
            "audit_rows_deleted": self.audit_rows_deleted,
        }

    def summary(self) -> str:
        """One line for people."""
        return (
            f"calls older than {self.cutoff.isoformat(timespec='seconds')}: "
            f"{self.calls_scrubbed} scrubbed, {self.recordings_deleted} recordings deleted, "
            f"{self.queue_items_scrubbed} queue items scrubbed, "
            f"{self.audit_rows_deleted} audit log rows deleted"
        )


class LazyRedactor:
    """A ``bot.privacy.Redactor`` built at its first use (it loads spaCy)."""

    def __init__(self) -> None:
        self._redactor: Redactor | None = None

    def __call__(self, text: str) -> str:
        if self._redactor is None:
            from bot.privacy import Redactor

            self._redactor = Redactor()
        return self._redactor.redact(text).text


def scrub_entities(entities: Mapping[str, Any], redact: LazyRedactor) -> dict[str, Any]:
    """Entities without personal values: e-mails, phone numbers, and any value
    the redactor would change. A name left with no value is dropped."""
    kept: dict[str, Any] = {}
    for name, value in entities.items():
        if name in PERSONAL_ENTITIES:
            continue
        if isinstance(value, list):
            values = [v for v in value if not _is_personal(v, redact)]
            if values:
                kept[name] = values
        elif not _is_personal(value, redact):
            kept[name] = value
    return kept


def _is_personal(value: Any, redact: LazyRedactor) -> bool:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return redact(text) != text


def scrub_handoff(handoff: Mapping[str, Any], redact: LazyRedactor) -> dict[str, Any]:
    """A queue item's handoff package with the caller's number, personal
    details and personal data in its texts removed; intents stay."""
    scrubbed = dict(handoff)
    if "caller_number" in scrubbed:
        scrubbed["caller_number"] = None
    for key in ("details", "slots"):  # "slots": packages from older versions
        if isinstance(scrubbed.get(key), Mapping):
            scrubbed[key] = _scrub_details(scrubbed[key], redact)
    if isinstance(scrubbed.get("summary"), str):
        scrubbed["summary"] = redact(scrubbed["summary"])
    transcript = scrubbed.get("transcript")
    if isinstance(transcript, list):
        scrubbed["transcript"] = [_scrub_line(line, redact) for line in transcript]
    return scrubbed


def _scrub_details(details: Mapping[str, Any], redact: LazyRedactor) -> dict[str, Any]:
    kept: dict[str, Any] = {}
    for name, value in details.items():
        if name in PERSONAL_DETAILS or value is None:
            continue
        if name in FREE_TEXT_DETAILS and isinstance(value, str):
            kept[name] = redact(value)
        elif not _is_personal(value, redact):
            kept[name] = value
    return kept


def _scrub_line(line: Any, redact: LazyRedactor) -> Any:
    if isinstance(line, Mapping) and isinstance(line.get("text"), str):
        return {**line, "text": redact(line["text"])}
    if isinstance(line, str):
        return redact(line)
    return line


def purge_expired(
    store_url: str,
    recordings_dir: Path,
    retention_days: int,
    now: datetime | None = None,
    queue_url: str = "",
    audit_days: int = 0,
) -> PurgeReport:
    """Purges the calls that expired ``retention_days`` before ``now`` (default:
    the current time), and audit log rows older than ``audit_days`` (0: none).
    The queue is in ``queue_url``, or in the call store's database when that is
    empty."""
    if retention_days < 0:
        raise RetentionError(f"retention_days must be 0 or more, got {retention_days}")
    if audit_days < 0:
        raise RetentionError(f"audit_days must be 0 or more, got {audit_days}")
    moment = now if now is not None else datetime.now(timezone.utc)
    if moment.tzinfo is None:
        raise RetentionError("now must be a timezone-aware datetime (for example in UTC)")
    moment = moment.astimezone(timezone.utc)
    cutoff = moment - timedelta(days=retention_days)
    calls_engine = create_db_engine(store_url)
    queue_engine = create_queue_engine(queue_url or store_url)
    try:
        purge = _Purge(calls_engine, queue_engine, recordings_dir, cutoff, moment)
        report = purge.run()
        if audit_days:
            deleted = _delete_audit_rows(queue_engine, moment - timedelta(days=audit_days))
            report = replace(report, audit_rows_deleted=deleted)
        return report
    finally:
        queue_engine.dispose()
        calls_engine.dispose()


def _delete_audit_rows(engine: Engine, before: datetime) -> int:
    if not _has_tables(engine, (audit_log.name,)):
        return 0
    writes = engine.execution_options(**{WRITE_OPTION: True})
    with writes.begin() as conn:
        result = conn.execute(audit_log.delete().where(audit_log.c.at < before))
    return int(result.rowcount)


def _has_tables(engine: Engine, names: Iterable[str]) -> bool:
    with engine.connect() as conn:
        inspector = sa.inspect(conn)
        return all(inspector.has_table(name) for name in names)


class _Purge:
    """One run of ``purge_expired``."""

    def __init__(
        self,
        calls_engine: Engine,
        queue_engine: Engine,
        recordings_dir: Path,
        cutoff: datetime,
        moment: datetime,
    ) -> None:
        self._calls = calls_engine
        self._queue = queue_engine
        self._root = recordings_dir.resolve()
        self._cutoff = cutoff
        self._moment = moment
        self._redact = LazyRedactor()

    def run(self) -> PurgeReport:
        recordings = scrubbed = queue_scrubbed = 0
        if _has_tables(self._calls, (calls.name, turns.name)):
            add_missing_columns(self._calls)
            has_queue = _has_tables(self._queue, (queue_items.name,))
            after = ""
            while batch := self._expired_after(after):
                after = batch[-1][0]
                done: list[str] = []
                for call_id, recording_path in batch:
                    try:
                        recordings += self._delete_recordings(call_id, recording_path)
                    except OSError as exc:  # retried by the next run: the call stays unpurged
                        log.error("recording of call %s could not be deleted: %s", call_id, exc)
                        continue
                    done.append(call_id)
                still_open: set[str] = set()
                if has_queue and done:
                    queue_scrubbed += self._scrub_queue_items(done)
                    # A call whose callback or live item is still open is not
                    # marked purged: the next run scrubs that item once it ends.
                    still_open = self._with_open_items(done)
                scrubbed += self._scrub_calls(done, still_open)
        return PurgeReport(recordings, scrubbed, queue_scrubbed, self._cutoff)

    def _expired_after(self, after: str) -> list[tuple[str, str | None]]:
        """The next batch of expired, unpurged calls, by call id after ``after``."""
        last_heard = sa.func.coalesce(calls.c.ended_at, calls.c.started_at)
        query = (
            sa.select(calls.c.call_id, calls.c.recording_path)
            .where(calls.c.purged_at.is_(None), last_heard < self._cutoff)
            .where(calls.c.call_id > after)
            .order_by(calls.c.call_id)
            .limit(BATCH_CALLS)
        )
        with self._calls.connect() as conn:
            return [(row.call_id, row.recording_path) for row in conn.execute(query)]

    def _delete_recordings(self, call_id: str, recording_path: str | None) -> int:
        """Deletes the call's recording (and a partial one a crash left); only
        files inside the recordings folder. Returns how many files went."""
        candidates: list[Path] = []
        if recording_path:
            candidates.append(Path(recording_path))
        if _FILE_SAFE_CALL_ID.fullmatch(call_id):
            candidates += [self._root / f"{call_id}.wav", self._root / f"{call_id}.wav.partial"]
        deleted = 0
        seen: set[Path] = set()
        for candidate in candidates:
            resolved = candidate.resolve()
            if resolved in seen:
                continue
            seen.add(resolved)
            if resolved == self._root or not resolved.is_relative_to(self._root):
                log.warning(
                    "recording %s of call %s is outside %s: left alone",
                    candidate,
                    call_id,
                    self._root,
                )
                continue
            if resolved.is_file():
                resolved.unlink(missing_ok=True)
                deleted += 1
        return deleted

    def _with_open_items(self, call_ids: Sequence[str]) -> set[str]:
        query = sa.select(queue_items.c.call_id).where(
            queue_items.c.call_id.in_(call_ids), queue_items.c.status.notin_(FINAL_STATUSES)
        )
        with self._queue.connect() as conn:
            return {row.call_id for row in conn.execute(query)}

    def _scrub_queue_items(self, call_ids: Sequence[str]) -> int:
        query = sa.select(
            queue_items.c.id,
            queue_items.c.handoff,
            queue_items.c.notes,
            queue_items.c.summary,
        ).where(queue_items.c.call_id.in_(call_ids), queue_items.c.status.in_(FINAL_STATUSES))
        with self._queue.connect() as conn:
            rows = conn.execute(query).all()
        # Redaction (spaCy) happens before the write transaction, which stays short.
        updates = [
            {
                "id": row.id,
                "caller_number": None,
                "handoff": json.dumps(self._scrubbed_handoff(row.handoff), ensure_ascii=False),
                "notes": self._redact(row.notes) if row.notes else row.notes,
                "summary": self._redact(row.summary or ""),
            }
            for row in rows
        ]
        # What agents typed to these callers may repeat their details.
        said = sa.select(agent_messages.c.id, agent_messages.c.text).where(
            agent_messages.c.call_id.in_(call_ids)
        )
        typed = []
        if _has_tables(self._queue, (agent_messages.name,)):
            with self._queue.connect() as conn:
                typed = conn.execute(said).all()
        redacted = []
        for row in typed:
            text = self._redact(row.text)
            if text != row.text:
                redacted.append((row.id, text))
        if updates or redacted:
            writes = self._queue.execution_options(**{WRITE_OPTION: True})
            with writes.begin() as conn:
                for values in updates:
                    item_id = values.pop("id")
                    conn.execute(
                        queue_items.update().where(queue_items.c.id == item_id).values(**values)
                    )
                for message_id, text in redacted:
                    conn.execute(
                        agent_messages.update()
                        .where(agent_messages.c.id == message_id)
                        .values(text=text)
                    )
        return len(updates)

    def _scrubbed_handoff(self, raw: str | None) -> dict[str, Any]:
        try:
            handoff = json.loads(raw or "{}")
        except json.JSONDecodeError:
            handoff = None
        # Anything but a package is unreadable to the console too: nothing of it is kept.
        return scrub_handoff(handoff, self._redact) if isinstance(handoff, dict) else {}

    def _scrub_calls(self, call_ids: Sequence[str], keep_unmarked: set[str]) -> int:
        if not call_ids:
            return 0
        finished = [call_id for call_id in call_ids if call_id not in keep_unmarked]
        query = sa.select(turns.c.id, turns.c.transcript, turns.c.entities).where(
            turns.c.call_id.in_(call_ids)
        )
        with self._calls.connect() as conn:
            rows = conn.execute(query).all()
        changes: list[tuple[int, dict[str, Any]]] = []
        for row in rows:
            values: dict[str, Any] = {}
            transcript = self._redact(row.transcript or "")
            if transcript != row.transcript:
                values["transcript"] = transcript
            entities = json.dumps(self._scrubbed_entities(row.entities), ensure_ascii=False)
            if entities != row.entities:
                values["entities"] = entities
            if values:
                changes.append((row.id, values))
        with self._calls.begin() as conn:
            for turn_id, values in changes:
                conn.execute(turns.update().where(turns.c.id == turn_id).values(**values))
            conn.execute(
                calls.update()
                .where(calls.c.call_id.in_(call_ids))
                .values(recording_path=None, caller_number=None)
            )
            marked = conn.execute(
                calls.update()
                .where(calls.c.call_id.in_(finished), calls.c.purged_at.is_(None))
                .values(purged_at=self._moment)
            )
            if sa.inspect(conn).has_table(turn_flags.name):
                # Agents' notes on flagged turns may quote the caller.
                conn.execute(
                    turn_flags.update().where(turn_flags.c.call_id.in_(call_ids)).values(note="")
                )
        return int(marked.rowcount)

    def _scrubbed_entities(self, raw: str | None) -> dict[str, Any]:
        try:
            entities = json.loads(raw or "{}")
        except json.JSONDecodeError:
            entities = None
        return scrub_entities(entities, self._redact) if isinstance(entities, dict) else {}
