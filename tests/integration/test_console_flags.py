"""Agents flag caller turns the bot misunderstood, from the call page, over real
HTTP (the console and client of test_console_http.py; SQLite and PostgreSQL)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from bot.events import BotTurn, CallStarted
from bot.queue import QueueItem
from bot.store import CallStore, create_db_engine, turns
from bot.training.schema import turn_flags
from tests.integration.test_console_http import Console, _serve_console
from tests.queue_databases import BACKENDS, queue_database

FLAGGED_TEXT = "Flagged: the bot misunderstood this"


@pytest.fixture(params=BACKENDS)
def console(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Console]:
    with queue_database(request.param, tmp_path) as database:
        yield from _serve_console(database)


def _say(store: CallStore, turn_index: int, text: str) -> None:
    store.listener(BotTurn("call-1", 1000 * turn_index, user=text, intent="inform", bot=("Okay.",)))
    store.flush()


@pytest.fixture
def taken_call(console: Console) -> Iterator[QueueItem]:
    """call-1: one turn before the handoff (its line is in the handoff's
    transcript), then the item, taken by ann, then one more turn."""
    store = CallStore(console.database_url, redact_after_call=False)
    try:
        store.listener(CallStarted("call-1", 0, "voice"))
        _say(store, 0, "where is my order")
        item = console.waiting_call()
        ann = console.queue.verify_password("ann", "ann-secret")
        assert ann is not None and console.queue.claim(item.id, ann.id) is not None
        _say(store, 1, "it never arrived")
        yield item
    finally:
        store.close()


def _flags(console: Console) -> list[dict[str, Any]]:
    engine = create_db_engine(console.database_url)
    try:
        with engine.connect() as conn:
            if not sa.inspect(conn).has_table(turn_flags.name):
                return []
            rows = conn.execute(sa.select(turn_flags).order_by(turn_flags.c.id)).mappings()
            return [dict(row) for row in rows]
    finally:
        engine.dispose()


def _turn_id(console: Console, turn_index: int) -> int:
    engine = create_db_engine(console.database_url)
    try:
        with engine.connect() as conn:
            query = sa.select(turns.c.id).where(
                turns.c.call_id == "call-1", turns.c.turn_index == turn_index
            )
            return int(conn.execute(query).scalar_one())
    finally:
        engine.dispose()


def test_an_agent_flags_a_caller_turn_and_sees_it_flagged(
    console: Console, taken_call: QueueItem
) -> None:
    ann = console.signed_in("ann")
    page = ann.get(f"/calls/{taken_call.id}")
    assert page.status == 200
    # Both caller lines carry a form: the handoff's and the live one.
    actions = re.findall(r'<form method="post" action="(/calls/\d+/turns/\d+/flag)"', page.body)
    assert actions == [
        f"/calls/{taken_call.id}/turns/0/flag",
        f"/calls/{taken_call.id}/turns/1/flag",
    ]
    assert FLAGGED_TEXT not in page.body

    form = {"csrf_token": ann.csrf_token(), "note": " they meant a refund "}
    flagged = ann.post(f"/calls/{taken_call.id}/turns/1/flag", form)
    assert (flagged.status, flagged.location) == (
        303,
        f"/calls/{taken_call.id}?notice=turn_flagged",
    )
    [flag] = _flags(console)
    assert flag["turn_id"] == _turn_id(console, 1)
    assert (flag["call_id"], flag["flagged_by"], flag["note"]) == (
        "call-1",
        "ann",
        "they meant a refund",
    )
    page = ann.get(flagged.location)
    assert "the trainers will see that the bot misunderstood" in page.body
    assert page.body.count(FLAGGED_TEXT) == 1
    assert f"/calls/{taken_call.id}/turns/1/flag" not in page.body
    assert f"/calls/{taken_call.id}/turns/0/flag" in page.body

    # Twice is harmless; a supervisor may flag it as well.
    again = ann.post(f"/calls/{taken_call.id}/turns/1/flag", {"csrf_token": form["csrf_token"]})
    assert again.location == flagged.location
    sue = console.signed_in("sue")
    assert (
        sue.post(f"/calls/{taken_call.id}/turns/1/flag", {"csrf_token": sue.csrf_token()}).status
        == 303
    )
    assert [(f["flagged_by"], f["turn_id"]) for f in _flags(console)] == [
        ("ann", flag["turn_id"]),
        ("sue", flag["turn_id"]),
    ]


def test_the_call_stream_says_whether_a_turn_is_flagged(
    console: Console, taken_call: QueueItem
) -> None:
    ann = console.signed_in("ann")
    path = f"/calls/{taken_call.id}/turns/1/flag"
    assert ann.post(path, {"csrf_token": ann.csrf_token()}).status == 303
    with ann.open(f"/calls/{taken_call.id}/events?after=-1") as stream:
        seen = []
        while len(seen) < 2:
            line = stream.readline().decode()
            assert line, "the stream ended"
            if line.startswith("data:"):
                seen.append(line)
    assert '"turn_index":0' in seen[0] and '"flagged":false' in seen[0]
    assert '"turn_index":1' in seen[1] and '"flagged":true' in seen[1]


def test_a_flag_without_the_csrf_token_is_refused(console: Console, taken_call: QueueItem) -> None:
    ann = console.signed_in("ann")
    path = f"/calls/{taken_call.id}/turns/1/flag"
    token = ann.csrf_token()
    for form in ({}, {"csrf_token": ""}, {"csrf_token": token[:-1] + "x"}):
        assert ann.post(path, {**form, "note": "x"}).status == 403
    assert _flags(console) == []


def test_an_agent_who_does_not_hold_the_call_cannot_flag_it(
    console: Console, taken_call: QueueItem
) -> None:
    bob = console.signed_in("bob")
    refused = bob.post(f"/calls/{taken_call.id}/turns/1/flag", {"csrf_token": bob.csrf_token()})
    assert refused.status == 403
    assert "This call is not with you." in refused.body
    assert _flags(console) == []


def test_an_unknown_turn_or_item_is_not_found(console: Console, taken_call: QueueItem) -> None:
    ann = console.signed_in("ann")
    token = ann.csrf_token()
    for path in (
        f"/calls/{taken_call.id}/turns/7/flag",
        f"/calls/{taken_call.id}/turns/-1/flag",
        f"/calls/{taken_call.id + 100}/turns/0/flag",
    ):
        reply = ann.post(path, {"csrf_token": token})
        assert reply.status == 404, path
    assert (
        "This call has no turn 7."
        in ann.post(f"/calls/{taken_call.id}/turns/7/flag", {"csrf_token": token}).body
    )
    assert _flags(console) == []
