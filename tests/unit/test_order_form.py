"""The order form's validation (validate_order_form) and the order task it leads to.

The domain lists every slot the order form may ask for (order_id,
confirm_cancel, new_address); the validation asks only the ones the task and
the order's state need. Because its list differs from the domain's, the SDK
always returns the next requested slot, or None to end the form; otherwise
Rasa would go on to ask for the remaining domain slots.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest
from rasa_sdk.events import SlotSet

from actions.demo_backend import DemoBackend
from actions.forms import ValidateOrderForm
from actions.tasks import ActionOrderTask
from tests.unit.action_helpers import (
    INTERRUPTIONS,
    RESET,
    Events,
    action,
    apply,
    asked,
    bot,
    demo_backend,
    form_turn,
    loop,
    order_task,
    run,
    slot,
    user,
    when,
)


@pytest.fixture(autouse=True)
def demo_db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> DemoBackend:
    return demo_backend(tmp_path, monkeypatch)


# -- order form ------------------------------------------------------------------


def test_order_number_given_up_front_completes_the_form() -> None:
    events = form_turn(
        "order_form", [], user("where is order 12345", "order_status", order_id="12345"),
        {"task": "order_status", "order_id": "12345"},
    )  # fmt: skip
    result, said = run(ValidateOrderForm(), events)
    # Nothing else to ask for this task: the form ends.
    assert result == [
        SlotSet("order_id", "12345"),
        SlotSet("order_spoken", "one two three four five"),
        SlotSet("requested_slot", None),
    ]
    assert said == []


def test_cancel_asks_for_confirmation_of_a_processing_order() -> None:
    events = form_turn(
        "order_form", [], user("cancel order 34567", "cancel_order", order_id="34567"),
        {"task": "cancel_order", "order_id": "34567"},
    )  # fmt: skip
    result, _ = run(ValidateOrderForm(), events)
    assert result == [
        SlotSet("order_id", "34567"),
        SlotSet("order_spoken", "three four five six seven"),
        SlotSet("requested_slot", "confirm_cancel"),
    ]


def test_cancel_of_a_shipped_order_asks_nothing_more() -> None:
    events = form_turn(
        "order_form", [], user("cancel 12345", "cancel_order", order_id="12345"),
        {"task": "cancel_order", "order_id": "12345"},
    )  # fmt: skip
    result, _ = run(ValidateOrderForm(), events)
    # No confirmation to ask for: the form ends (the task explains why).
    assert result == [
        SlotSet("order_id", "12345"),
        SlotSet("order_spoken", "one two three four five"),
        SlotSet("requested_slot", None),
    ]


def test_change_address_asks_for_the_new_address() -> None:
    events = form_turn(
        "order_form", [], user("new address for 34567", "change_address", order_id="34567"),
        {"task": "change_address", "order_id": "34567"},
    )  # fmt: skip
    result, _ = run(ValidateOrderForm(), events)
    assert result == [
        SlotSet("order_id", "34567"),
        SlotSet("order_spoken", "three four five six seven"),
        SlotSet("requested_slot", "new_address"),
    ]


def test_form_start_clears_stale_answers() -> None:
    history = [slot("failed_attempts", 2.0), slot("confirm_cancel", True)]
    events = form_turn(
        "order_form", history, user("cancel an order", "cancel_order"), {"task": "cancel_order"}
    )
    result, said = run(ValidateOrderForm(), events)
    assert result == [
        SlotSet("failed_attempts", 0.0),
        SlotSet("confirm_cancel", None),
        SlotSet("requested_slot", "order_id"),
    ]
    assert said == []


def test_form_start_does_not_accept_a_stale_confirmation() -> None:
    history = [slot("confirm_cancel", True)]
    events = form_turn(
        "order_form", history, user("cancel order 34567", "cancel_order", order_id="34567"),
        {"task": "cancel_order", "order_id": "34567"},
    )  # fmt: skip
    # On activation Rasa also offers the required slots that already have a value.
    events.append(slot("confirm_cancel", True))
    result, said = run(ValidateOrderForm(), events)
    assert result == [
        SlotSet("confirm_cancel", None),
        SlotSet("order_id", "34567"),
        SlotSet("order_spoken", "three four five six seven"),
        SlotSet("requested_slot", "confirm_cancel"),
    ]
    assert said == []


def test_unknown_order_number_is_a_failed_answer() -> None:
    events = form_turn(
        "order_form", asked("order_form", "order_id", slot("task", "order_status")),
        user("it's 99999", "inform", order_id="99999"), {"order_id": "99999"}, "order_id",
    )  # fmt: skip
    result, said = run(ValidateOrderForm(), events)
    assert said == [
        "I can't find order nine nine nine nine nine. Please check the number and say it again."
    ]
    assert result == [
        SlotSet("order_id", None),
        SlotSet("failed_attempts", 1.0),
        SlotSet("requested_slot", "order_id"),
    ]


def test_answer_without_an_order_number_is_a_failed_answer() -> None:
    events = form_turn(
        "order_form", asked("order_form", "order_id", slot("task", "order_status")),
        user("I don't know", "inform"), None, "order_id",
    )  # fmt: skip
    result, said = run(ValidateOrderForm(), events)
    assert said == ["Sorry, I didn't catch an order number."]
    assert result == [SlotSet("failed_attempts", 1.0), SlotSet("requested_slot", "order_id")]


@pytest.mark.parametrize("intent", INTERRUPTIONS)
def test_interruptions_are_not_counted_and_reject_the_form(intent: str) -> None:
    events = form_turn(
        "order_form", asked("order_form", "order_id", slot("task", "order_status")),
        user("hmm", intent), None, "order_id",
    )  # fmt: skip
    result, said = run(ValidateOrderForm(), events)
    # Nothing but the requested slot: Rasa rejects the form and the rules run.
    assert result == [SlotSet("requested_slot", "order_id")]
    assert said == []


def test_resuming_after_an_interruption_is_not_counted() -> None:
    history = asked("order_form", "order_id", slot("task", "order_status"))
    history += [user("are you a robot", "inform"), action("utter_bot_challenge_in_form")]
    history += [bot("I'm an automated assistant.")]
    result, said = run(
        ValidateOrderForm(), form_turn("order_form", history, None, None, "order_id")
    )
    # Rasa validates nothing on resuming; the form asks for the order number again.
    assert result == [SlotSet("requested_slot", "order_id")]
    assert said == []


def test_three_failed_answers_end_the_form_and_escalate() -> None:
    history = asked("order_form", "order_id", slot("task", "order_status"))
    answers = [
        (user("no idea", "inform"), {}),
        (user("it's 99999", "inform", order_id="99999"), {"order_id": "99999"}),
        (user("blah", "nlu_fallback"), {}),
    ]
    said_all = []
    for answer, extracted in answers:
        result, said = run(
            ValidateOrderForm(), form_turn("order_form", history, answer, extracted, "order_id")
        )
        said_all += said
        history = apply(history + [answer], result)
    assert said_all == [
        "Sorry, I didn't catch an order number.",
        "I can't find order nine nine nine nine nine. Please check the number and say it again.",
        "Sorry, I didn't catch an order number.",
    ]
    assert result == [
        SlotSet("failed_attempts", 3.0),
        SlotSet("escalation_reason", "no_progress"),
        SlotSet("requested_slot", None),
    ]
    # The form is over; its completion action hands the caller over.
    history += [loop(None)]
    result, said = run(ActionOrderTask(), history)
    assert said == ["utter_escalate_no_progress"]
    assert result == [
        SlotSet("escalation_reason", "no_progress"),
        SlotSet("failed_attempts", 0.0),
        SlotSet("task", None),
        SlotSet("confirm_cancel", None),
        SlotSet("new_address", None),
    ]


def test_final_failed_lookup_does_not_invite_another_try() -> None:
    history = asked("order_form", "order_id", slot("failed_attempts", 2.0))
    events = form_turn(
        "order_form", history, user("99999", "inform", order_id="99999"),
        {"order_id": "99999"}, "order_id",
    )  # fmt: skip
    result, said = run(ValidateOrderForm(), events)
    assert said == ["I can't find order nine nine nine nine nine."]
    assert SlotSet("requested_slot", None) in result
    assert SlotSet("escalation_reason", "no_progress") in result


def test_valid_answer_resets_the_count() -> None:
    history = asked("order_form", "order_id", slot("task", "order_status"))
    history.append(slot("failed_attempts", 2.0))
    events = form_turn(
        "order_form", history, user("12345", "inform", order_id="12345"),
        {"order_id": "12345"}, "order_id",
    )  # fmt: skip
    result, said = run(ValidateOrderForm(), events)
    assert said == []
    assert result == [
        SlotSet("order_id", "12345"),
        SlotSet("order_spoken", "one two three four five"),
        SlotSet("failed_attempts", 0.0),
        SlotSet("requested_slot", None),
    ]


def test_spoken_order_number_is_understood() -> None:
    events = form_turn(
        "order_form", asked("order_form", "order_id"),
        user("two three four five six", "inform", order_id="two three four five six"),
        {"order_id": "two three four five six"}, "order_id",
    )  # fmt: skip
    result, _ = run(ValidateOrderForm(), events)
    assert result[0] == SlotSet("order_id", "23456")


def confirm_history() -> Events:
    return asked(
        "order_form", "confirm_cancel", slot("task", "cancel_order"), slot("order_id", "34567"),
        slot("order_spoken", "three four five six seven"),
    )  # fmt: skip


@pytest.mark.parametrize(("intent", "value"), [("affirm", True), ("deny", False)])
def test_confirm_cancel(intent: str, value: bool) -> None:
    events = form_turn(
        "order_form", confirm_history(), user("yes", intent), {"confirm_cancel": value},
        "confirm_cancel",
    )  # fmt: skip
    result, said = run(ValidateOrderForm(), events)
    assert result == [SlotSet("confirm_cancel", value), SlotSet("requested_slot", None)]
    assert said == []


def test_confirm_cancel_without_yes_or_no() -> None:
    events = form_turn(
        "order_form", confirm_history(), user("what colour is it", "inform"), None,
        "confirm_cancel",
    )  # fmt: skip
    result, said = run(ValidateOrderForm(), events)
    assert said == ["Sorry, I didn't catch a yes or a no."]
    assert result == [SlotSet("failed_attempts", 1.0), SlotSet("requested_slot", "confirm_cancel")]


def address_turn(text: str, intent: str = "inform") -> Events:
    history = asked(
        "order_form", "new_address", slot("task", "change_address"), slot("order_id", "34567")
    )
    extracted = {"new_address": text} if intent != "deny" else {}
    return form_turn("order_form", history, user(text, intent), extracted, "new_address")


def test_new_address_accepted() -> None:
    result, said = run(ValidateOrderForm(), address_turn("ten Downing Street London SW1A 2AA"))
    assert result == [
        SlotSet("new_address", "ten Downing Street London SW1A 2AA"),
        SlotSet("requested_slot", None),
    ]
    assert said == []


@pytest.mark.parametrize(("text", "intent"), [("somewhere nice", "inform"), ("no", "deny")])
def test_new_address_rejected(text: str, intent: str) -> None:
    result, said = run(ValidateOrderForm(), address_turn(text, intent))
    assert said == ["Sorry, I need the full address, with the house number and postcode."]
    assert SlotSet("failed_attempts", 1.0) in result
    assert result[-1] == SlotSet("requested_slot", "new_address")


def test_backend_failure_in_a_form_ends_it(demo_db: DemoBackend) -> None:
    demo_db.path.write_bytes(b"garbage" * 500)
    events = form_turn(
        "order_form", asked("order_form", "order_id"), user("12345", "inform", order_id="12345"),
        {"order_id": "12345"}, "order_id",
    )  # fmt: skip
    result, said = run(ValidateOrderForm(), events)
    assert said == ["utter_escalate_action_failure"]
    assert result == [
        SlotSet("escalation_reason", "action_failure"),
        SlotSet("requested_slot", None),
    ]
    # The completion action then stays quiet: the caller has already been told.
    history = asked("order_form", "order_id") + [
        user("12345", "inform", order_id="12345"), slot("order_id", "12345"),
        action("order_form"), bot("I'm sorry, I'm having trouble reaching our systems."),
        slot("escalation_reason", "action_failure"), slot("requested_slot", None), loop(None),
    ]  # fmt: skip
    result, said = run(ActionOrderTask(), history)
    assert said == []
    assert result == RESET


# -- the order task --------------------------------------------------------------


@pytest.mark.parametrize(
    ("order_id", "expected"),
    [
        ("12345", f"Order one two three four five was shipped with Royal Mail and should arrive "
                  f"on {when(2)}."),
        ("23456", f"Order two three four five six was delivered on {when(-1)}."),
        ("34567", f"Order three four five six seven is being prepared and hasn't been shipped "
                  f"yet. It should arrive by {when(4)}."),
        ("45678", f"Order four five six seven eight was returned to us. We refunded thirty four "
                  f"pounds ninety nine on {when(-10)}."),
        ("67890", f"Order six seven eight nine zero was shipped with Evri. It was due on "
                  f"{when(-2)}, so it's running late."),
        ("78901", f"Order seven eight nine zero one was cancelled. We refunded twelve pounds "
                  f"ninety nine on {when(-4)}."),
    ],
)  # fmt: skip
def test_order_status(order_id: str, expected: str) -> None:
    result, said = order_task("order_status", order_id)
    assert said == [expected, "utter_anything_else"]
    assert result == RESET


def test_dates_count_from_the_backends_day(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Not the machine's date: a call that goes on past midnight, or a retailer in
    # another time zone, speaks of the days its own systems count from.
    demo_backend(tmp_path / "monday", monkeypatch, today=date(2025, 6, 2))
    _, said = order_task("order_status", "12345")
    assert said[0] == (
        "Order one two three four five was shipped with Royal Mail and should arrive "
        "on Wednesday the fourth of June."
    )


def test_late_parcel_opens_an_investigation(demo_db: DemoBackend) -> None:
    result, said = order_task("delivery_problem", "67890")
    assert said[0] == (
        f"Order six seven eight nine zero was shipped with Evri. It was due on {when(-2)}, so "
        "it's running late. I've asked Evri to look into it. Your ticket number is one zero "
        "zero one. We'll update you within two working days."
    )
    assert result == [SlotSet("ticket_id", "1001"), *RESET]
    assert demo_db.count_rows("tickets") == 1


def test_missing_parcel_opens_an_investigation() -> None:
    result, said = order_task("delivery_problem", "23456")
    assert said == [
        f"Our records show order two three four five six was delivered on {when(-1)}. I've "
        "opened an investigation into the missing parcel. Your ticket number is one zero "
        "zero one. A member of our team will contact you within two working days.",
        "utter_anything_else",
    ]
    assert SlotSet("ticket_id", "1001") in result


def test_parcel_on_its_way() -> None:
    _, said = order_task("delivery_problem", "12345")
    assert said[0].endswith("If it hasn't arrived by then, please call us again.")


def test_cancel_confirmed(demo_db: DemoBackend) -> None:
    result, said = order_task("cancel_order", "34567", confirm_cancel=True)
    assert said == [
        "Order three four five six seven is cancelled. You'll get a full refund of one hundred "
        "and twenty pounds within five working days.",
        "utter_anything_else",
    ]
    assert result == RESET
    order = demo_db.find_order("34567")
    assert order is not None and order.status == "cancelled"


def test_cancel_declined_keeps_the_order(demo_db: DemoBackend) -> None:
    _, said = order_task("cancel_order", "34567", confirm_cancel=False)
    assert said[0] == "No problem. Order three four five six seven has not been cancelled."
    order = demo_db.find_order("34567")
    assert order is not None and order.status == "processing"


def test_cannot_cancel_once_shipped() -> None:
    _, said = order_task("cancel_order", "12345")
    assert said[0] == (
        "Order one two three four five has already been shipped, so it can't be cancelled. "
        "Once it arrives, you can return it for a refund."
    )


def test_change_address(demo_db: DemoBackend) -> None:
    _, said = order_task("change_address", "34567", new_address="1 New Road York YO1 7HH")
    assert said[0] == (
        "Done. Order three four five six seven will now be delivered to 1 New Road York YO1 7HH."
    )
    order = demo_db.find_order("34567")
    assert order is not None and order.delivery_address == "1 New Road York YO1 7HH"


def test_too_late_to_change_address() -> None:
    _, said = order_task("change_address", "12345")
    assert said[0] == (
        "Order one two three four five has already been shipped, so it's too late to change "
        "the delivery address."
    )


def test_return_within_the_window() -> None:
    _, said = order_task("return_item", "23456")
    assert said[0] == (
        "I've started a return for order two three four five six. We've emailed a returns "
        "label to john dot smith at example dot com. Please drop the parcel off at a post "
        f"office within fourteen days, by {when(14)}. Your refund will follow once we "
        "receive it."
    )


def test_return_outside_the_window() -> None:
    _, said = order_task("return_item", "56789")
    assert said[0] == (
        f"Order five six seven eight nine was delivered on {when(-40)}, more than thirty days "
        "ago, so it's outside our return window."
    )


def test_refund_status() -> None:
    _, said = order_task("refund_status", "45678")
    assert said[0] == (
        f"For order four five six seven eight, we refunded thirty four pounds ninety nine on "
        f"{when(-10)}. It can take up to five working days to show on your statement."
    )
    _, said = order_task("refund_status", "12345")
    assert said[0] == "There's no refund on order one two three four five."


def test_billing_question() -> None:
    _, said = order_task("billing_question", "12345")
    assert said[0] == (
        f"For order one two three four five, we charged forty nine pounds ninety nine on "
        f"{when(-3)}, to the card ending four two four two."
    )


def test_order_task_backend_failure(demo_db: DemoBackend) -> None:
    demo_db.path.write_bytes(b"garbage" * 500)
    result, said = order_task("order_status", "12345")
    assert said == ["utter_escalate_action_failure"]
    assert result == [
        SlotSet("escalation_reason", "action_failure"),
        SlotSet("failed_attempts", 0.0),
        SlotSet("task", None),
        SlotSet("confirm_cancel", None),
        SlotSet("new_address", None),
    ]
