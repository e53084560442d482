"""Retention on a SQLite call store and queue: recordings deleted, caller
details scrubbed, each expired call purged once."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from bot.call import start_retention_purge
from bot.handoff import TranscriptLine, build_handoff
from bot.privacy import NORMALISER_KINDS
from bot.queue import AgentQueue
from bot.queue.accounts import audit_log, create_account_tables, record_event
from bot.queue.schema import items as queue_items
from bot.queue.schema import messages as agent_messages
from bot.retention import (
    PERSONAL_ENTITIES,
    LazyRedactor,
    PurgeReport,
    RetentionError,
    purge_expired,
    scrub_entities,
    scrub_handoff,
)
from bot.settings import PrivacySettings, load_settings
from bot.store import CallStore, calls, create_db_engine, turns
from tests.conftest import PROJECT_DIR, isolated_env

NOW = datetime(2025, 6, 30, 12, 0, tzinfo=timezone.utc)
CARD_SPOKEN = "four one one one one one one one one one one one one one one one"
EMAIL = "pat@example.org"
PHONE = "07700900123"


@pytest.fixture(scope="module")
def redact() -> LazyRedactor:
    return LazyRedactor()


def add_call(
    url: str,
    call_id: str,
    started: datetime,
    ended: datetime | None,
    recording: Path | None = None,
    said: tuple[str, ...] = ("my card " + CARD_SPOKEN + " was declined",),
    entities: dict[str, Any] | None = None,
) -> None:
    """A call as the store keeps it, unredacted (as after a crash)."""
    engine = create_db_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(
                calls.insert().values(
                    call_id=call_id,
                    channel="voice",
                    started_at=started,
                    ended_at=ended,
                    recording_path=str(recording) if recording else None,
                )
            )
            for index, text in enumerate(said):
                conn.execute(
                    turns.insert().values(
                        call_id=call_id,
                        turn_index=index,
                        t_ms=1000 * index,
                        created_at=started,
                        transcript=text,
                        entities=json.dumps(entities or {}),
                    )
                )
    finally:
        engine.dispose()


def make_store(url: str) -> None:
    CallStore(url).close()


def call_row(url: str, call_id: str) -> dict[str, Any]:
    store = CallStore(url)
    try:
        row = store.call(call_id)
        assert row is not None
        return {**row, "turns": store.turns(call_id)}
    finally:
        store.close()


def recording(folder: Path, call_id: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{call_id}.wav"
    path.write_bytes(b"RIFF fake wav")
    return path


def resolved_item(queue: AgentQueue, call_id: str, notes: str) -> int:
    """A queue item for the call, taken by an agent and resolved with notes."""
    agent = queue.add_agent(f"agent-{call_id}", "agent-secret", "agent", ["general"])
    handoff = build_handoff(
        call_id,
        "callback_requested",
        1,
        "general",
        [{"intent": "order_status", "confidence": 0.4}],
        [
            TranscriptLine(1000, "caller", "ring me back on " + PHONE),
            TranscriptLine(2000, "bot", "An agent will call you back."),
        ],
        {"order_id": "12345", "email": EMAIL, "phone_number": PHONE},
        caller_number="+447700900123",
    )
    item = queue.enqueue(
        call_id, "callback", "callback_requested", 1, "general",
        handoff.caller_number, handoff.to_dict(), handoff.summary,
    )  # fmt: skip
    assert queue.claim(item.id, agent.id) is not None
    queue.resolve(item.id, agent.id, "callback_scheduled", f"called {PHONE}, mail {EMAIL}")
    return item.id


def test_an_expired_call_loses_its_recording_and_personal_details(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'calls.sqlite3'}"
    folder = tmp_path / "recordings"
    make_store(url)
    old_wav = recording(folder, "old")
    new_wav = recording(folder, "new")
    entities = {"order_id": "12345", "email": EMAIL, "phone_number": PHONE}
    said = ("my card " + CARD_SPOKEN + " was declined", "order 12345, mail " + EMAIL)
    add_call(
        url, "old", NOW - timedelta(days=40), NOW - timedelta(days=31), old_wav, said, entities
    )
    add_call(url, "new", NOW - timedelta(days=2), NOW - timedelta(days=1), new_wav, said, entities)
    queue = AgentQueue(url)
    try:
        old_item = resolved_item(queue, "old", "")
        new_item = resolved_item(queue, "new", "")
        # An item of the expired call still open is not the purge's to touch.
        open_item = queue.enqueue("old", "call", "explicit_request", 0, "general", PHONE, {})
        typist = queue.add_agent("tia", "a long password", "agent", ["general"])
        with queue.engine.begin() as conn:  # what the agent typed to each caller
            for call_id in ("old", "new"):
                conn.execute(
                    agent_messages.insert().values(
                        call_id=call_id, agent_id=typist.id,
                        text=f"I will ring you on {PHONE} tomorrow", created_at=NOW,
                    )
                )  # fmt: skip
    finally:
        queue.close()

    report = purge_expired(url, folder, 30, now=NOW)

    # The old call is scrubbed, but not marked purged while an item of it is open.
    assert report == PurgeReport(1, 0, 1, NOW - timedelta(days=30))
    assert not old_wav.exists() and new_wav.exists()
    old = call_row(url, "old")
    assert old["recording_path"] is None and old["purged_at"] is None
    assert [t["transcript"] for t in old["turns"]] == [
        "my card [card] was declined",
        "order 12345, mail [email]",
    ]
    assert [t["entities"] for t in old["turns"]] == [{"order_id": "12345"}] * 2
    new = call_row(url, "new")
    assert new["recording_path"] == str(new_wav) and new["purged_at"] is None
    assert [t["transcript"] for t in new["turns"]] == list(said)
    assert new["turns"][0]["entities"] == entities

    queue = AgentQueue(url)
    try:
        scrubbed, kept, still_open = (queue.item(i) for i in (old_item, new_item, open_item.id))
    finally:
        queue.close()
    assert scrubbed is not None and kept is not None and still_open is not None
    assert scrubbed.caller_number is None
    assert scrubbed.notes == "called [phone], mail [email]"
    assert scrubbed.handoff["caller_number"] is None
    assert scrubbed.handoff["details"] == {"order_id": "12345"}
    assert [line["text"] for line in scrubbed.handoff["transcript"]] == [
        "ring me back on [phone]",
        "An agent will call you back.",
    ]
    assert EMAIL not in scrubbed.summary and PHONE not in scrubbed.summary
    assert "order 12345" in scrubbed.summary
    assert scrubbed.handoff["intents"] == [{"intent": "order_status", "confidence": 0.4}]
    assert kept.caller_number == "+447700900123" and kept.notes == f"called {PHONE}, mail {EMAIL}"
    assert still_open.caller_number == PHONE
    with sa.create_engine(url).connect() as conn:
        typed = dict(conn.execute(sa.select(agent_messages.c.call_id, agent_messages.c.text)).all())
    assert typed == {
        "old": "I will ring you on [phone] tomorrow",
        "new": f"I will ring you on {PHONE} tomorrow",
    }

    queue = AgentQueue(url)
    try:
        agent = queue.add_agent("ann", "a long password", "agent", ["general"])
        claimed = queue.claim(open_item.id, agent.id)
        assert claimed is not None
        queue.resolve(open_item.id, agent.id, "resolved", f"rang {PHONE}")
    finally:
        queue.close()
    finished = purge_expired(url, folder, 30, now=NOW)
    assert finished == PurgeReport(0, 1, 2, NOW - timedelta(days=30))
    purged = call_row(url, "old")["purged_at"]
    assert purged is not None
    queue = AgentQueue(url)
    try:
        now_done = queue.item(open_item.id)
    finally:
        queue.close()
    assert now_done is not None and now_done.caller_number is None
    assert now_done.notes == "rang [phone]"

    again = purge_expired(url, folder, 30, now=NOW)
    assert again == PurgeReport(0, 0, 0, NOW - timedelta(days=30))
    assert call_row(url, "old")["purged_at"] == purged


def test_calls_expire_by_their_end_or_if_never_ended_their_start(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'calls.sqlite3'}"
    make_store(url)
    add_call(url, "crashed", NOW - timedelta(days=31), None)
    add_call(url, "long", NOW - timedelta(days=31), NOW - timedelta(days=29))
    add_call(url, "crashed-lately", NOW - timedelta(days=29), None)

    report = purge_expired(url, tmp_path / "recordings", 30, now=NOW)

    assert report.calls_scrubbed == 1
    assert call_row(url, "crashed")["turns"][0]["transcript"] == "my card [card] was declined"
    for call_id in ("long", "crashed-lately"):
        row = call_row(url, call_id)
        assert row["purged_at"] is None
        assert CARD_SPOKEN in row["turns"][0]["transcript"]
    # Zero days: everything that ended before now.
    assert purge_expired(url, tmp_path / "recordings", 0, now=NOW).calls_scrubbed == 2


def test_only_files_inside_the_recordings_folder_are_deleted(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'calls.sqlite3'}"
    folder = tmp_path / "recordings"
    make_store(url)
    outside = tmp_path / "keep.wav"
    outside.write_bytes(b"not a recording of ours")
    sneaky = folder / ".." / "keep.wav"
    linked = recording(folder, "x")
    linked.unlink()
    linked.symlink_to(outside)
    partial = folder / "crash.wav.partial"
    partial.write_bytes(b"half a call")
    expired = NOW - timedelta(days=31)
    add_call(url, "outside", expired, expired, outside)
    add_call(url, "sneaky", expired, expired, sneaky)
    add_call(url, "x", expired, expired, linked)
    add_call(url, "gone", expired, expired, folder / "gone.wav")  # already deleted
    add_call(url, "crash", expired, None)  # a crash left only the partial file
    add_call(url, "the-folder", expired, expired, folder)

    report = purge_expired(url, folder, 30, now=NOW)

    assert outside.read_bytes() == b"not a recording of ours"
    assert folder.is_dir()
    assert not partial.exists()
    assert report.recordings_deleted == 1
    assert report.calls_scrubbed == 6
    assert all(call_row(url, c)["recording_path"] is None for c in ("outside", "sneaky", "x"))


def test_an_empty_database_or_one_without_a_queue_is_fine(tmp_path: Path) -> None:
    empty = f"sqlite:///{tmp_path / 'empty.sqlite3'}"
    report = purge_expired(empty, tmp_path / "recordings", 30, now=NOW, audit_days=365)
    assert report.to_dict() == {
        "recordings_deleted": 0,
        "calls_scrubbed": 0,
        "queue_items_scrubbed": 0,
        "cutoff": "2025-05-31T12:00:00+00:00",
        "audit_rows_deleted": 0,
    }
    engine = create_db_engine(empty)
    with engine.connect() as conn:
        assert not sa.inspect(conn).has_table("calls")
    engine.dispose()

    # The call store here, the queue in a database without its tables.
    url = f"sqlite:///{tmp_path / 'calls.sqlite3'}"
    make_store(url)
    add_call(url, "old", NOW - timedelta(days=40), NOW - timedelta(days=40))
    report = purge_expired(url, tmp_path / "recordings", 30, now=NOW, queue_url=empty)
    assert (report.calls_scrubbed, report.queue_items_scrubbed) == (1, 0)


def test_a_queue_in_its_own_database_is_scrubbed_there(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'calls.sqlite3'}"
    queue_url = f"sqlite:///{tmp_path / 'queue.sqlite3'}"
    make_store(url)
    add_call(url, "old", NOW - timedelta(days=40), NOW - timedelta(days=40))
    queue = AgentQueue(queue_url)
    try:
        item_id = resolved_item(queue, "old", "")
    finally:
        queue.close()
    report = purge_expired(url, tmp_path / "recordings", 30, now=NOW, queue_url=queue_url)
    assert report.queue_items_scrubbed == 1
    engine = create_db_engine(queue_url)
    with engine.connect() as conn:
        number = conn.execute(
            sa.select(queue_items.c.caller_number).where(queue_items.c.id == item_id)
        ).scalar_one()
    engine.dispose()
    assert number is None


def test_audit_rows_older_than_audit_days_are_deleted(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'calls.sqlite3'}"
    make_store(url)
    engine = create_db_engine(url)
    create_account_tables(engine)
    with engine.begin() as conn:
        for days, name in ((400, "old"), (300, "recent"), (0, "today")):
            at = NOW - timedelta(days=days)
            record_event(conn, "login_failed", name, at, address="192.0.2.7")
    engine.dispose()

    report = purge_expired(url, tmp_path / "recordings", 30, now=NOW, audit_days=365)

    assert report.audit_rows_deleted == 1
    assert "1 audit log rows deleted" in report.summary()
    engine = create_db_engine(url)
    with engine.connect() as conn:
        names = conn.execute(sa.select(audit_log.c.name).order_by(audit_log.c.id)).scalars()
        assert list(names) == ["recent", "today"]
    engine.dispose()
    # 0 keeps the log for ever.
    assert purge_expired(url, tmp_path / "r", 30, now=NOW, audit_days=0).audit_rows_deleted == 0


OLD_CALLS_TABLE = """CREATE TABLE calls (
    call_id VARCHAR(64) PRIMARY KEY, channel VARCHAR(32) NOT NULL,
    started_at DATETIME NOT NULL, ended_at DATETIME, end_reason VARCHAR(64),
    duration_ms INTEGER, escalation_reason VARCHAR(64), recording_path TEXT)"""


def old_call_store(path: Path) -> str:
    """A call store file as versions before ``purged_at`` made it, with one old call."""
    engine = sa.create_engine(f"sqlite:///{path}", future=True)
    with engine.begin() as conn:
        conn.exec_driver_sql(OLD_CALLS_TABLE)
        conn.exec_driver_sql(
            "INSERT INTO calls (call_id, channel, started_at) "
            "VALUES ('old', 'voice', '2025-01-01 09:00:00.000000')"
        )
    turns.create(engine)
    engine.dispose()
    return f"sqlite:///{path}"


def test_a_call_store_from_an_older_version_gets_the_purged_column(tmp_path: Path) -> None:
    url = old_call_store(tmp_path / "purged.sqlite3")
    assert purge_expired(url, tmp_path / "recordings", 30, now=NOW).calls_scrubbed == 1
    assert call_row(url, "old")["purged_at"] is not None

    # Opening the store adds it as well, and reads the old rows.
    url = old_call_store(tmp_path / "opened.sqlite3")
    row = call_row(url, "old")
    assert "purged_at" in row and row["purged_at"] is None


def test_bad_arguments_say_what_to_change(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'calls.sqlite3'}"
    with pytest.raises(RetentionError, match="0 or more"):
        purge_expired(url, tmp_path, -1, now=NOW)
    with pytest.raises(RetentionError, match="audit_days must be 0 or more"):
        purge_expired(url, tmp_path, 30, now=NOW, audit_days=-1)
    with pytest.raises(RetentionError, match="timezone-aware"):
        purge_expired(url, tmp_path, 30, now=datetime(2025, 6, 30, 12, 0))


def test_the_personal_entities_are_those_the_redactor_treats_as_personal() -> None:
    assert frozenset(NORMALISER_KINDS) == PERSONAL_ENTITIES


def test_entities_keep_order_ids_and_lose_what_the_redactor_would_redact(
    redact: LazyRedactor,
) -> None:
    entities = {
        "order_id": ["12345", "4111111111111111"],
        "email": EMAIL,
        "phone_number": [PHONE],
        "street": "22 baker street",
        "size": "large",
    }
    assert scrub_entities(entities, redact) == {"order_id": ["12345"], "size": "large"}


def test_a_handoff_keeps_what_identifies_nobody(redact: LazyRedactor) -> None:
    handoff = build_handoff(
        "c1",
        "complaint",
        2,
        "orders",
        [{"intent": "complaint", "confidence": 0.9}],
        [TranscriptLine(500, "caller", "i live at 22 baker street")],
        {
            "order_id": "12345",
            "ticket_id": "T-77",
            "new_address": "22 baker street",
            "complaint_text": "you sent it to 22 baker street instead",
        },
        caller_number=PHONE,
    ).to_dict()
    scrubbed = scrub_handoff(handoff, redact)
    assert scrubbed["caller_number"] is None
    assert scrubbed["details"] == {
        "order_id": "12345",
        "ticket_id": "T-77",
        "complaint_text": "you sent it to [address] instead",
    }
    assert scrubbed["transcript"] == [
        {"t_ms": 500, "speaker": "caller", "text": "i live at [address]"}
    ]
    assert "baker" not in scrubbed["summary"]
    assert scrubbed["reason"] == "complaint" and scrubbed["intents"] == handoff["intents"]


def test_the_cli_purges_with_the_days_given(tmp_path: Path) -> None:
    env = {**os.environ, **isolated_env(tmp_path)}
    url = env["VOICEBOT_STORE_URL"]
    make_store(url)
    yesterday = datetime.now(timezone.utc) - timedelta(days=1)
    add_call(url, "yesterday", yesterday, yesterday)

    def purge(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "bot", "privacy", "purge", *args],
            capture_output=True, text=True, cwd=PROJECT_DIR, env=env, timeout=120,
        )  # fmt: skip

    kept = purge()
    assert kept.returncode == 0, kept.stderr
    assert "0 scrubbed" in kept.stdout and len(kept.stdout.splitlines()) == 1
    purged = purge("--days", "0", "--json")
    assert purged.returncode == 0, purged.stderr
    report = json.loads(purged.stdout)
    assert report["calls_scrubbed"] == 1 and report["recordings_deleted"] == 0
    assert call_row(url, "yesterday")["purged_at"] is not None


def test_the_bot_purges_once_in_the_background_when_it_starts(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = load_settings(PROJECT_DIR, env={**os.environ, **isolated_env(tmp_path)})
    make_store(settings.store_url)
    long_ago = datetime.now(timezone.utc) - timedelta(days=settings.privacy.retention_days + 1)
    add_call(settings.store_url, "old", long_ago, long_ago)
    with caplog.at_level(logging.INFO, logger="bot.call"):
        start_retention_purge(settings).join(timeout=120)
        assert "retention purge: " in caplog.text and "1 scrubbed" in caplog.text
        # A failing purge is logged, and ends nothing but its own thread.
        broken = dataclasses.replace(settings, privacy=PrivacySettings(retention_days=-1))
        thread = start_retention_purge(broken)
        thread.join(timeout=120)
    assert not thread.is_alive()
    assert "purging expired call data failed" in caplog.text
    assert call_row(settings.store_url, "old")["purged_at"] is not None
