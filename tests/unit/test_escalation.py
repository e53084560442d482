from __future__ import annotations

from pathlib import Path

import pytest

from bot.escalation import (
    REASONS,
    CallerTurn,
    EscalationConfigError,
    EscalationRules,
    detect,
)
from bot.settings import load_settings

PROJECT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def rules() -> EscalationRules:
    return EscalationRules.from_mapping(load_settings(PROJECT, env={}).escalation)


def turns(*pairs: tuple[str, str]) -> list[CallerTurn]:
    return [CallerTurn(text, intent) for text, intent in pairs]


def test_the_shipped_rules_cover_every_reason(rules: EscalationRules) -> None:
    assert set(REASONS) <= set(rules.reasons)
    assert rules.rule("callback_requested").kind == "callback"
    assert rules.rule("complaint").priority > rules.rule("explicit_request").priority


@pytest.mark.parametrize(
    ("intents", "skill"),
    [
        (["greet", "billing_question", "inform"], "billing"),
        (["order_status", "affirm"], "orders"),
        (["payment_problem", "order_status"], "orders"),
        (["greet", "bot_challenge"], "general"),
        ([], "general"),
    ],
)
def test_skill_follows_the_latest_task(
    rules: EscalationRules, intents: list[str], skill: str
) -> None:
    assert rules.skill_for(intents) == skill


@pytest.mark.parametrize(
    ("call", "reason"),
    [
        ([("i want to complain", "complaint"), ("the heater caught fire", "inform")], "complaint"),
        ([("my solicitor will hear about this", "complaint")], "complaint"),
        (
            [("this is useless", "deny"), ("what a waste of time", "out_of_scope")],
            "caller_frustrated",
        ),
        ([("where is my order", "order_status")] * 3, "caller_frustrated"),
        ([("i want to complain", "complaint"), ("the box was dented", "inform")], None),
        ([("this is useless", "deny")], None),
        ([("where is my order", "order_status")] * 2, None),
        ([("yes", "affirm")] * 5, None),
        ([("firewood delivery is late", "delivery_problem")], None),  # "fire" only as a word
        ([], None),
    ],
)
def test_detect(rules: EscalationRules, call: list[tuple[str, str]], reason: str | None) -> None:
    assert detect(rules, turns(*call)) == reason


def test_a_second_filed_complaint_goes_to_a_person(rules: EscalationRules) -> None:
    first = [
        CallerTurn("i want to complain", "complaint"),
        CallerTurn("rude driver", "complaint", complaint_filed=True),
    ]
    assert detect(rules, first) is None
    second = [*first, CallerTurn("and the box was wet", "complaint", complaint_filed=True)]
    assert detect(rules, second) == "complaint"


def test_shouting_is_frustration(rules: EscalationRules) -> None:
    loud = CallerTurn("where is my parcel", "delivery_problem", loudness_dbfs=-3.0)
    calm = CallerTurn("where is my parcel", "delivery_problem", loudness_dbfs=-25.0)
    assert detect(rules, [loud]) == "caller_frustrated"
    assert detect(rules, [calm]) is None


def test_a_turn_much_louder_than_the_callers_own_is_shouting(rules: EscalationRules) -> None:
    def said(intent: str, level: float) -> CallerTurn:
        return CallerTurn("about my order", intent, loudness_dbfs=level)

    calm = [said("order_status", -30.0), said("refund_status", -28.0)]
    # One caller's turns wander by a few dB (the recordings we measured: 6 dB).
    assert detect(rules, [*calm, said("return_item", -24.5)]) is None
    assert detect(rules, [*calm, said("return_item", -17.0)]) == "caller_frustrated"
    # A first turn has nothing to compare with: only near-clipping counts.
    assert detect(rules, [said("order_status", -12.0)]) is None


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"reasons": {"complaint": {"priority": 1}}}, "no rule for reason"),
        ({"reasons": {name: {"priority": "high"} for name in REASONS}}, "escalation settings"),
        ({"reasons": {name: {"kind": "email"} for name in REASONS}}, "kind must be"),
        ({"reasons": "everything"}, "escalation settings"),
    ],
)
def test_bad_rules_are_named(raw: dict, message: str) -> None:
    with pytest.raises(EscalationConfigError, match=message):
        EscalationRules.from_mapping(raw)


@pytest.mark.parametrize(
    ("text", "yes"),
    [("yes", True), ("yes please", True), ("yeah go ahead", True), ("sure", True),
     ("no", False), ("no thanks", False), ("yes i dont want that", False), ("maybe", False),
     ("yesterday", False)],
)  # fmt: skip
def test_a_clear_yes(text: str, yes: bool) -> None:
    from bot.expectations import is_yes

    assert is_yes(text) is yes
