"""Callers without an order number, numbers of the wrong shape, and a plain no.

The order form finds a caller's orders by the e-mail address or phone number
on their account, reads them back, and understands which one the caller
picks. Run against the real domain and a real demo backend.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from rasa_sdk.events import SlotSet

from actions.backend import Order, national_phone
from actions.conversation import ActionCallerDeclined
from actions.demo_backend import DemoBackend
from actions.forms import ValidateOrderForm
from actions.lookup import describe_orders, item_name, pick_orders, when_ordered
from actions.tasks import ActionNotedDetails
from tests.unit.action_helpers import (
    TODAY,
    Events,
    action,
    asked,
    demo_backend,
    form_turn,
    run,
    slot,
    user,
)


@pytest.fixture(autouse=True)
def demo_db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> DemoBackend:
    return demo_backend(tmp_path, monkeypatch)


def order(order_id: str, items: str, days_ago: int) -> Order:
    placed = TODAY - timedelta(days=days_ago)
    return Order(order_id, "shipped", items, 1000, placed, "1 A Road", "1234", placed, "a@b.com")


# -- reading orders back and picking one --------------------------------------------

ORDERS = [
    order("83456", "a blender", 0),
    order("81234", "a kettle", 2),
    order("82345", "a pair of headphones", 9),
]


def test_orders_are_read_back_briefly_most_recent_first() -> None:
    two_days_ago = (TODAY - timedelta(days=2)).strftime("%A")
    text = describe_orders(ORDERS, TODAY)
    assert text.startswith(f"the blender, ordered today; the kettle, ordered on {two_days_ago}; ")
    assert "and the headphones, ordered on the " in text
    assert item_name(order("1", "a set of saucepans", 0)) == "the saucepans"
    assert when_ordered(TODAY - timedelta(days=1), TODAY) == "yesterday"


def test_only_the_four_most_recent_are_read_but_older_ones_are_counted() -> None:
    many = [order(str(10000 + i), f"a thing number {i}", i) for i in range(6)]
    assert describe_orders(many, TODAY).endswith("; and 2 older orders")


@pytest.mark.parametrize(
    ("said", "expected"),
    [
        ("the second one", ["81234"]),
        ("um the first please", ["83456"]),
        ("number three", ["82345"]),
        ("the last one", ["82345"]),
        ("the most recent", ["83456"]),
        ("it was the kettle", ["81234"]),
        ("the one with the headphones in it", ["82345"]),
        ("the one i ordered today", ["83456"]),
        (f"the one from last {(TODAY - timedelta(days=2)).strftime('%A').lower()}", ["81234"]),
        ("none of those sound right", []),
    ],
)
def test_the_caller_picks_an_order(said: str, expected: list[str]) -> None:
    assert [o.order_id for o in pick_orders(said, ORDERS, TODAY)] == expected


def test_an_ambiguous_pick_names_every_match() -> None:
    shoes = [order("1", "a pair of running shoes", 1), order("2", "some walking shoes", 3)]
    assert [o.order_id for o in pick_orders("the shoes", shoes, TODAY)] == ["1", "2"]
    # The order that shares most words with what was said wins.
    assert [o.order_id for o in pick_orders("the walking shoes", shoes, TODAY)] == ["2"]


def test_phone_numbers_are_compared_in_national_form(demo_db: DemoBackend) -> None:
    assert national_phone("+44 7700 900789") == "07700900789"
    priya = demo_db.find_customer_by_phone("+447700900789")
    assert priya is not None and priya.name == "Priya Shah"
    assert [o.order_id for o in demo_db.orders_of(priya)] == ["83456", "81234", "82345"]
    assert demo_db.find_customer_by_phone("07700900000") is None


# -- the order form without a number ----------------------------------------------


def lookup_started() -> Events:
    """An order form that asked for the account after the caller had no number."""
    return asked("order_form", "account_contact", slot("task", "order_status")) + [
        slot("order_lookup", True)
    ]


@pytest.mark.parametrize(
    ("text", "intent"), [("i dont know it", "dont_know"), ("no i havent got it", "deny")]
)
def test_no_order_number_offers_to_find_it_by_account(text: str, intent: str) -> None:
    history = asked("order_form", "order_id", slot("task", "order_status"))
    events = form_turn("order_form", history, user(text, intent), requested="order_id")
    result, said = run(ValidateOrderForm(), events)
    assert result == [SlotSet("order_lookup", True), SlotSet("requested_slot", "account_contact")]
    assert said == []  # the form asks with utter_ask_account_contact


def test_an_email_on_the_account_lists_its_orders() -> None:
    email = "priya.shah@example.com"
    answer = user("its priya dot shah at example dot com", "inform", email=email)
    events = form_turn("order_form", lookup_started(), answer, requested="account_contact")
    result, said = run(ValidateOrderForm(), events)
    listed = {e["name"]: e["value"] for e in result}
    assert listed["account_contact"] == email
    assert listed["order_candidates"] == ["83456", "81234", "82345"]
    assert listed["order_list"].startswith("the blender, ordered today; the kettle")
    assert listed["requested_slot"] == "order_choice"
    assert said == []


def test_an_account_with_one_order_needs_no_choice() -> None:
    answer = user("oh seven seven double oh nine oh oh three two one", "inform")
    answer["parse_data"]["entities"] = [{"entity": "phone_number", "value": "07700900321"}]
    events = form_turn("order_form", lookup_started(), answer, requested="account_contact")
    result, said = run(ValidateOrderForm(), events)
    assert SlotSet("order_id", "91234") in result
    assert SlotSet("requested_slot", None) in result
    assert said == [
        "I found one order on your account: the garden hose, order nine one two three four."
    ]


def test_an_unknown_account_is_read_back() -> None:
    answer = user("nobody at example dot com", "inform", email="nobody@example.com")
    events = form_turn("order_form", lookup_started(), answer, requested="account_contact")
    result, said = run(ValidateOrderForm(), events)
    assert SlotSet("account_contact", None) in result
    assert said[0].startswith("I can't find an account with nobody at example dot com.")


def test_no_account_details_either_goes_to_a_person() -> None:
    events = form_turn(
        "order_form", lookup_started(), user("i dont know that either", "dont_know"),
        requested="account_contact",
    )  # fmt: skip
    result, said = run(ValidateOrderForm(), events)
    assert said == ["No problem."]
    assert SlotSet("escalation_reason", "no_progress") in result
    assert SlotSet("requested_slot", None) in result


def choosing(*said_before: dict, task: str = "order_status") -> Events:
    return asked("order_form", "order_choice", slot("task", task)) + [
        slot("order_lookup", True),
        slot("account_contact", "priya.shah@example.com"),
        slot("order_candidates", ["83456", "81234", "82345"]),
        *said_before,
    ]


def test_the_picked_order_becomes_the_calls_order() -> None:
    events = form_turn(
        "order_form", choosing(), user("the kettle", "inform"), requested="order_choice"
    )
    result, said = run(ValidateOrderForm(), events)
    assert result == [
        SlotSet("order_choice", "81234"),
        SlotSet("order_id", "81234"),
        SlotSet("order_spoken", "eight one two three four"),
        SlotSet("requested_slot", None),
    ]
    assert said == []


@pytest.mark.parametrize(
    ("text", "intent"), [("none of those", "nlu_fallback"), ("no i dont know", "dont_know")]
)
def test_an_order_not_in_the_list_goes_to_a_person(text: str, intent: str) -> None:
    events = form_turn("order_form", choosing(), user(text, intent), requested="order_choice")
    result, said = run(ValidateOrderForm(), events)
    assert said == ["No problem."]
    assert SlotSet("escalation_reason", "no_progress") in result


def test_an_order_number_remembered_during_the_search_ends_it() -> None:
    answer = user("oh wait its two three four five six", "inform", order_id="23456")
    events = form_turn(
        "order_form", lookup_started(), answer, {"order_id": "23456"}, "account_contact"
    )
    result, said = run(ValidateOrderForm(), events)
    assert SlotSet("order_id", "23456") in result
    assert SlotSet("requested_slot", None) in result
    assert said == []


def test_a_pick_that_names_no_order_is_asked_again() -> None:
    events = form_turn(
        "order_form", choosing(), user("the toaster", "inform"), requested="order_choice"
    )
    result, said = run(ValidateOrderForm(), events)
    assert SlotSet("order_choice", None) in result
    assert said == [
        "Sorry, I didn't catch which order you mean. "
        "You can say the item, or first, second or third."
    ]


# -- numbers of the wrong shape ---------------------------------------------------


def test_an_order_number_of_the_wrong_shape_is_read_back() -> None:
    history = asked("order_form", "order_id", slot("task", "cancel_order"))
    answer = user("one one two two three three four four", "inform", order_id="11223344")
    events = form_turn("order_form", history, answer, {"order_id": "11223344"}, "order_id")
    result, said = run(ValidateOrderForm(), events)
    assert SlotSet("order_id", None) in result
    assert said == [
        "I heard one one two two three three four four; our order numbers have five "
        "digits. If you don't have it, I can find your order with your email or phone number."
    ]


def test_a_reference_read_out_at_the_order_question_is_read_back_too() -> None:
    history = asked("order_form", "order_id", slot("task", "order_status"))
    answer = user("it says four four one two", "inform", number="4412")
    events = form_turn("order_form", history, answer, requested="order_id")
    _, said = run(ValidateOrderForm(), events)
    assert said[0].startswith("I heard four four one two; our order numbers have five digits")


def test_a_bare_order_number_asks_what_to_do_with_it() -> None:
    result, said = run(
        ActionNotedDetails(),
        [user("three four five six seven", "inform", order_id="34567")],
    )
    assert said == ["utter_what_to_do_with_order"]
    assert result == [
        SlotSet("order_id", "34567"),
        SlotSet("order_spoken", "three four five six seven"),
    ]


def test_a_bare_number_of_the_wrong_shape_is_read_back_and_forgotten() -> None:
    result, said = run(
        ActionNotedDetails(), [user("one two three four five six seven eight", "inform",
                                    order_id="12345678")]
    )  # fmt: skip
    assert said[0].startswith("I heard one two three four five six seven eight;")
    assert said[1] == "utter_what_can_i_help_with"
    assert SlotSet("order_id", None) in result


# -- a plain no -------------------------------------------------------------------


def bot_said(response: str) -> dict:
    return {
        "event": "bot",
        "timestamp": 1.0,
        "text": "...",
        "data": {},
        "metadata": {"utter_action": response},
    }


def test_no_after_anything_else_ends_the_call() -> None:
    events = [action("action_order_task"), bot_said("utter_anything_else"), user("no", "deny")]
    assert run(ActionCallerDeclined(), events)[1] == ["utter_goodbye"]


def test_no_anywhere_else_asks_what_the_caller_needs() -> None:
    events = [bot_said("utter_greet"), user("i really dont remember it", "deny")]
    assert run(ActionCallerDeclined(), events)[1] == ["utter_anything_at_all"]


# -- review of edge cases ---------------------------------------------------------


def test_a_second_search_after_leaving_one_goes_to_a_person() -> None:
    history = asked("order_form", "order_id", slot("task", "order_status"))
    history.append(slot("order_lookup", False))
    events = form_turn("order_form", history, user("no", "deny"), requested="order_id")
    result, said = run(ValidateOrderForm(), events)
    assert said == ["No problem."]
    assert SlotSet("escalation_reason", "no_progress") in result


def test_asking_for_a_person_with_a_number_in_it_is_not_an_answer() -> None:
    history = asked("order_form", "order_id", slot("task", "order_status"))
    answer = user("get me a person my reference is one two three four", "request_human",
                  number="1234")  # fmt: skip
    events = form_turn("order_form", history, answer, requested="order_id")
    result, said = run(ValidateOrderForm(), events)
    assert said == [] and not [e for e in result if e["name"] == "order_id"]


def test_the_same_task_asked_again_counts_as_no_answer() -> None:
    history = asked("order_form", "order_id", slot("task", "order_status"))
    answer = user("i just want to know where my order is", "order_status")
    events = form_turn("order_form", history, answer, {"task": "order_status"}, "order_id")
    _, said = run(ValidateOrderForm(), events)
    assert said == ["Sorry, I didn't catch an order number."]


def test_another_task_at_the_order_question_changes_the_task_quietly() -> None:
    history = asked("order_form", "order_id", slot("task", "order_status"))
    answer = user("i need a copy of my invoice", "billing_question")
    events = form_turn("order_form", history, answer, {"task": "billing_question"}, "order_id")
    result, said = run(ValidateOrderForm(), events)
    assert said == [] and SlotSet("failed_attempts", 0.0) in result


@pytest.mark.parametrize("said", ["2", "two", "the two"])
def test_a_place_in_the_list_said_as_a_number(said: str) -> None:
    events = form_turn("order_form", choosing(), user(said, "inform"), requested="order_choice")
    result, _ = run(ValidateOrderForm(), events)
    assert SlotSet("order_id", "81234") in result


def found_by_account(task: str) -> Events:
    return asked("order_form", "security_postcode", slot("task", task)) + [
        slot("order_lookup", True),
        slot("account_contact", "priya.shah@example.com"),
        slot("order_choice", "83456"),
        slot("order_id", "83456"),
    ]


def test_cancelling_an_order_found_by_account_asks_its_postcode() -> None:
    history = choosing(task="cancel_order")
    events = form_turn(
        "order_form", history, user("the blender", "inform"), requested="order_choice"
    )
    result, _ = run(ValidateOrderForm(), events)
    assert SlotSet("requested_slot", "security_postcode") in result


def test_the_right_postcode_lets_the_change_go_on() -> None:
    events = form_turn(
        "order_form", found_by_account("cancel_order"), user("its b s one five a b", "inform"),
        requested="security_postcode",
    )  # fmt: skip
    result, said = run(ValidateOrderForm(), events)
    assert SlotSet("security_postcode", "BS15AB") in result
    assert SlotSet("requested_slot", "confirm_cancel") in result
    assert said == []


def test_a_wrong_postcode_is_refused_and_counted() -> None:
    events = form_turn(
        "order_form", found_by_account("change_address"), user("m one one a a", "inform"),
        requested="security_postcode",
    )  # fmt: skip
    result, said = run(ValidateOrderForm(), events)
    assert said == ["Sorry, that postcode doesn't match the order's delivery address."]
    assert SlotSet("failed_attempts", 1.0) in result
    assert SlotSet("security_postcode", None) in result
