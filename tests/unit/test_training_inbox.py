"""The review inbox: which turns need a look, how near-identical ones group,
filters, and what a decision removes. Turns come from a real call store."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import sqlalchemy as sa

from bot.console.views import turn_view
from bot.events import (
    AGENT_SPEECH_INTENT,
    AgentSpeech,
    BotTurn,
    CallEnded,
    CallStarted,
    EndReason,
    Escalated,
    TranscriptFinal,
)
from bot.privacy import Redactor
from bot.store import CallStore, turns
from bot.training.inbox import (
    InboxFilter,
    ReviewInbox,
    flag_turn,
    group_turns,
    item_id_for,
    key_hash,
    text_key,
)
from bot.training.schema import decided_keys


@pytest.fixture(scope="module")
def redactor() -> Redactor:
    return Redactor()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[CallStore]:
    found = CallStore(f"sqlite:///{tmp_path / 'calls.sqlite3'}")
    yield found
    found.close()


def call(
    store: CallStore,
    call_id: str,
    said: list[tuple[str, str, float]],
    asr: float = 0.95,
    escalate: str = "",
    end: bool = True,
) -> None:
    """Stores a call whose caller said ``said`` as (text, intent, confidence)."""
    store.listener(CallStarted(call_id, 0, "voice"))
    for index, (text, intent, confidence) in enumerate(said):
        store.listener(TranscriptFinal(call_id, index * 1000, text, asr))
        store.listener(BotTurn(call_id, index * 1000 + 10, user=text, intent=intent,
                               confidence=confidence, bot=("ok",)))  # fmt: skip
    if escalate:
        store.listener(Escalated(call_id, 9000, escalate))
    if end:
        store.listener(CallEnded(call_id, 10_000, EndReason.CALLER_HANG_UP))
    store.flush()


def inbox(store: CallStore, redactor: Redactor) -> ReviewInbox:
    return ReviewInbox(store.engine, redactor, low_intent_confidence=0.6, low_asr_confidence=0.6)


def test_text_key_ignores_fillers_punctuation_case_and_which_numbers() -> None:
    assert text_key("Um, where's my parcel?") == text_key("where's my parcel")
    assert text_key("order one two three four five") == text_key("order 98765")
    assert text_key("order one two three four five") == "order #"
    assert text_key("uh hello") == ""
    assert text_key("where is my parcel") != text_key("where is my refund")


def test_near_identical_turns_form_one_item_and_different_ones_do_not(
    store: CallStore, redactor: Redactor
) -> None:
    call(store, "c1", [("i reckon the postie nicked my box", "nlu_fallback", 0.45)])
    call(store, "c2", [("uh i reckon the postie nicked my box", "nlu_fallback", 0.44)])
    call(store, "c3", [("i reckon the postie has nicked my box", "delivery_problem", 0.5)])
    call(store, "c4", [("can i pay with klarna", "nlu_fallback", 0.4)])
    items = inbox(store, redactor).items()
    assert [item.count for item in items] == [3, 1]
    postie = items[0]
    assert postie.text == "i reckon the postie nicked my box"
    assert postie.calls == 3
    assert set(postie.variants) == {
        "i reckon the postie nicked my box",
        "uh i reckon the postie nicked my box",
        "i reckon the postie has nicked my box",
    }
    assert postie.predicted_intent == "nlu_fallback"
    assert postie.reason == "fallback"
    assert postie.confidence == pytest.approx((0.45 + 0.44 + 0.5) / 3)
    assert postie.id == item_id_for(postie.keys[0])
    assert items[1].text == "can i pay with klarna"


def test_each_reason_is_found_and_routine_turns_only_on_request(
    store: CallStore, redactor: Redactor
) -> None:
    call(store, "fallback", [("the thingy broke", "nlu_fallback", 0.3)])
    call(store, "low", [("my kettle is on the fritz", "inform", 0.55)])
    call(store, "asr", [("where is my order", "order_status", 0.98)], asr=0.3)
    call(
        store,
        "escalated",
        [("i have a problem", "complaint", 0.99), ("this is a joke honestly", "complaint", 0.9)],
        escalate="frustration",
    )
    call(store, "flagged", [("i fancy a natter with a real human", "bot_challenge", 0.84)])
    call(store, "fine", [("thanks very much", "thank_you", 0.99)])
    reader = inbox(store, redactor)
    flagged_turn = reader.read_turns()[-1]
    with store.engine.connect() as conn:
        turn_id = conn.execute(
            sa.select(turns.c.id).where(turns.c.call_id == "flagged")
        ).scalar_one()
    assert flag_turn(store.engine, turn_id, "flagged", "ana", "it wanted a person")
    assert not flag_turn(store.engine, turn_id, "flagged", "ana")  # twice is harmless
    by_text = {item.text: item for item in reader.items()}
    assert by_text["i fancy a natter with a real human"].reason == "agent_flagged"
    assert by_text["the thingy broke"].reasons == ("fallback", "low_confidence")
    assert by_text["my kettle is on the fritz"].reason == "low_confidence"
    assert by_text["where is my order"].reason == "low_asr_confidence"
    assert by_text["this is a joke honestly"].reason == "before_escalation"
    # The escalated call's earlier turn and the satisfied caller need no look.
    assert "i have a problem" not in by_text and "thanks very much" not in by_text
    everything = {item.text: item for item in reader.items(InboxFilter(include_routine=True))}
    assert everything["thanks very much"].reason == "routine"
    assert everything["i have a problem"].reason == "routine"
    # Order: flagged, fallback, before escalation, low confidence, low ASR, routine.
    assert [item.reason for item in reader.items(InboxFilter(include_routine=True))] == [
        "agent_flagged",
        "fallback",
        "before_escalation",
        "low_confidence",
        "low_asr_confidence",
        "routine",
        "routine",
    ]
    assert flagged_turn.text  # read_turns gives redacted text for every turn


def test_filters_by_reason_intent_search_and_date(store: CallStore, redactor: Redactor) -> None:
    call(store, "a", [("the thingy broke", "nlu_fallback", 0.3)])
    call(store, "b", [("my kettle is on the fritz", "inform", 0.55)])
    call(store, "c", [("my toaster is on the fritz too", "inform", 0.5)])
    reader = inbox(store, redactor)
    assert [i.text for i in reader.items(InboxFilter(reason="fallback"))] == ["the thingy broke"]
    assert {i.text for i in reader.items(InboxFilter(intent="inform"))} == {
        "my kettle is on the fritz",
        "my toaster is on the fritz too",
    }
    assert [i.text for i in reader.items(InboxFilter(search="KETTLE"))] == [
        "my kettle is on the fritz"
    ]
    tomorrow = datetime.now(timezone.utc) + timedelta(days=1)
    assert reader.items(InboxFilter(since=tomorrow)) == []
    assert len(reader.items(InboxFilter(until=tomorrow))) == 3


def test_texts_are_redacted_before_anyone_sees_them(store: CallStore, redactor: Redactor) -> None:
    # A call still in progress: its stored transcript is not redacted yet.
    call(
        store,
        "live",
        [("my card 4111 1111 1111 1111 was declined", "nlu_fallback", 0.4)],
        end=False,
    )
    (item,) = inbox(store, redactor).items()
    assert item.text == "my card [card] was declined"
    assert "4111" not in " ".join(item.variants)


def test_decided_texts_leave_the_inbox_and_hold_speech_never_enters(
    store: CallStore, redactor: Redactor
) -> None:
    call(store, "a", [("the thingy broke", "nlu_fallback", 0.3)])
    call(store, "b", [("please hurry up", "on_hold", 0.0)])
    reader = inbox(store, redactor)
    (item,) = reader.items()
    with store.engine.begin() as conn:
        conn.execute(decided_keys.insert().values(text_hash=key_hash(item.keys[0]), decision_id=1))
    assert reader.items() == []
    assert reader.item(item.id) is None
    call(store, "c", [("um the thingy broke", "nlu_fallback", 0.3)])
    assert reader.items() == []  # the same words again: already decided


def test_group_turns_of_nothing_is_empty() -> None:
    assert group_turns([]) == []


def test_an_agents_words_are_stored_as_the_agents_and_never_reach_the_inbox(
    store: CallStore, redactor: Redactor
) -> None:
    store.listener(CallStarted("d", 0, "phone"))
    store.listener(AgentSpeech("d", 5000, text="let me look at that order for you", turn_id=3))
    store.listener(CallEnded("d", 9000, EndReason.RESOLVED))
    store.flush()
    with store.engine.connect() as conn:
        (row,) = conn.execute(sa.select(turns).where(turns.c.call_id == "d")).mappings()
    assert row["intent"] == AGENT_SPEECH_INTENT
    view = turn_view(row)
    assert view["agent"] == "let me look at that order for you" and view["caller"] == ""
    assert inbox(store, redactor).items() == []
