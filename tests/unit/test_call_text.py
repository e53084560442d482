from __future__ import annotations

import json

import pytest

from bot.call import TurnResult, clean_utterance
from bot.dialogue import entity_values
from bot.events import BotTurn, CallStarted, Escalated


@pytest.mark.parametrize(
    ("raw", "cleaned"),
    [
        ("Where IS my order", "where is my order"),
        ("  lots   of\tspace \n", "lots of space"),
        ("bell\x07 escape\x1b[31m null\x00 end", "bell escape null end"),
        ("zero\u200bwidth", "zero width"),
        ("", ""),
        ("\x00\x01\x02", ""),
        ("wo ist meine bestellung", "wo ist meine bestellung"),
    ],
)
def test_clean_utterance(raw: str, cleaned: str) -> None:
    assert clean_utterance(raw, 500) == cleaned


def test_long_utterances_are_cut_at_a_word() -> None:
    text = "word " * 3000
    cleaned = clean_utterance(text, 500)
    assert len(cleaned) <= 500
    assert cleaned.endswith("word")


def test_entity_values_keep_every_distinct_value() -> None:
    entities = [
        {"entity": "order_id", "value": "12345"},
        {"entity": "email", "value": "a@b.com"},
        {"entity": "order_id", "value": "23456"},
        {"entity": "order_id", "value": "12345"},
    ]
    assert entity_values(entities) == {"order_id": ["12345", "23456"], "email": "a@b.com"}
    assert entity_values([]) == {}


def test_turn_result_has_the_json_contract() -> None:
    turn = TurnResult(
        call_id="c1",
        user="hi",
        intent="greet",
        confidence=0.987654,
        entities={},
        bot=("Hello.",),
        escalated=False,
        escalation_reason=None,
        hang_up=False,
    )
    assert json.loads(json.dumps(turn.to_dict())) == {
        "call_id": "c1",
        "user": "hi",
        "intent": "greet",
        "confidence": 0.9877,
        "entities": {},
        "bot": ["Hello."],
        "escalated": False,
        "escalation_reason": None,
    }


def test_events_serialise_to_one_json_object_each() -> None:
    assert json.loads(CallStarted("c1", 0).to_json()) == {
        "event": "call_started",
        "t_ms": 0,
        "call_id": "c1",
        "channel": "text",
        "caller_number": None,
        "caller_withheld": False,
        "dialled_number": None,
        "line": None,
    }
    turn = json.loads(BotTurn("c1", 120, user="hi", intent="greet", bot=("Hello.",)).to_json())
    assert turn["event"] == "bot_turn" and turn["t_ms"] == 120 and turn["bot"] == ["Hello."]
    assert json.loads(Escalated("c1", 5, "no_progress").to_json())["reason"] == "no_progress"
