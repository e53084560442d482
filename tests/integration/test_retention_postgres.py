"""Retention on the real PostgreSQL server: a call store from an older version
gets ``purged_at``, and an expired call and its queue item are scrubbed once
(each test in a fresh schema, as tests/queue_databases.py sets up)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import sqlalchemy as sa

from bot.handoff import TranscriptLine, build_handoff
from bot.retention import PurgeReport, purge_expired
from bot.store import CallStore, calls, create_db_engine, turns
from tests.queue_databases import postgres_schema

NOW = datetime(2025, 6, 30, 12, 0, tzinfo=timezone.utc)
PHONE = "07700900123"
EMAIL = "pat@example.org"


def _insert_call(engine: sa.engine.Engine, call_id: str, ended: datetime, said: str) -> None:
    with engine.begin() as conn:
        conn.execute(
            calls.insert().values(
                call_id=call_id, channel="voice", started_at=ended, ended_at=ended
            )
        )
        conn.execute(
            turns.insert().values(
                call_id=call_id,
                turn_index=0,
                t_ms=0,
                created_at=ended,
                transcript=said,
                entities=json.dumps({"order_id": "12345", "email": EMAIL}),
            )
        )


def test_an_expired_call_is_scrubbed_once_on_postgresql(tmp_path: Path) -> None:
    with postgres_schema() as database:
        engine = create_db_engine(database.url)
        try:
            # The calls table as versions before purged_at made it.
            with engine.begin() as conn:
                conn.exec_driver_sql(
                    "CREATE TABLE calls (call_id VARCHAR(64) PRIMARY KEY, "
                    "channel VARCHAR(32) NOT NULL, started_at TIMESTAMPTZ NOT NULL, "
                    "ended_at TIMESTAMPTZ, end_reason VARCHAR(64), duration_ms INTEGER, "
                    "escalation_reason VARCHAR(64), recording_path TEXT)"
                )
            CallStore(database.url).close()
            with engine.connect() as conn:
                columns = {c["name"] for c in sa.inspect(conn).get_columns("calls")}
            assert "purged_at" in columns

            said = f"my email is {EMAIL} and my phone is {PHONE}"
            _insert_call(engine, "old", NOW - timedelta(days=31), said)
            _insert_call(engine, "new", NOW - timedelta(days=29), said)
            folder = tmp_path / "recordings"
            folder.mkdir()
            wav = folder / "old.wav"
            wav.write_bytes(b"RIFF")
            with engine.begin() as conn:
                conn.execute(
                    calls.update().where(calls.c.call_id == "old").values(recording_path=str(wav))
                )

            queue = database.queue()
            try:
                agent = queue.add_agent("ann", "ann-secret", "agent", ["general"])
                handoff = build_handoff(
                    "old", "callback_requested", 1, "general", [],
                    [TranscriptLine(0, "caller", said)], {"email": EMAIL, "order_id": "12345"},
                    caller_number=PHONE,
                )  # fmt: skip
                item = queue.enqueue(
                    "old", "callback", "callback_requested", 1, "general",
                    PHONE, handoff.to_dict(), handoff.summary,
                )  # fmt: skip
                assert queue.claim(item.id, agent.id) is not None
                queue.resolve(item.id, agent.id, "callback_scheduled", f"rang {PHONE}")
            finally:
                queue.close()

            report = purge_expired(database.url, folder, 30, now=NOW)
            assert report == PurgeReport(1, 1, 1, NOW - timedelta(days=30))
            assert purge_expired(database.url, folder, 30, now=NOW).calls_scrubbed == 0
            assert not wav.exists()

            store = CallStore(database.url)
            try:
                old, new = store.call("old"), store.call("new")
                old_turns, new_turns = store.turns("old"), store.turns("new")
            finally:
                store.close()
            assert old is not None and new is not None
            assert old["purged_at"] == NOW and old["recording_path"] is None
            assert old_turns[0]["transcript"] == "my email is [email] and my phone is [phone]"
            assert old_turns[0]["entities"] == {"order_id": "12345"}
            assert new["purged_at"] is None and new_turns[0]["transcript"] == said

            queue = database.queue()
            try:
                scrubbed = queue.item(item.id)
            finally:
                queue.close()
            assert scrubbed is not None
            assert scrubbed.caller_number is None and scrubbed.notes == "rang [phone]"
            assert scrubbed.handoff["details"] == {"order_id": "12345"}
            assert EMAIL not in json.dumps(scrubbed.handoff) and PHONE not in scrubbed.summary
        finally:
            engine.dispose()
