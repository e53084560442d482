"""The complaint, account and callback forms and the actions that complete them."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from rasa_sdk.events import SlotSet
from rasa_sdk.executor import CollectingDispatcher

from actions.demo_backend import DemoBackend
from actions.forms import ValidateAccountForm, ValidateCallbackForm, ValidateComplaintForm
from actions.tasks import ActionAccountHelp, ActionFileComplaint, ActionRequestCallback
from tests.unit.action_helpers import (
    DOMAIN,
    action,
    asked,
    demo_backend,
    form_turn,
    loop,
    run,
    slot,
    tracker_from,
    user,
)


@pytest.fixture(autouse=True)
def demo_db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> DemoBackend:
    return demo_backend(tmp_path, monkeypatch)


# -- other forms -----------------------------------------------------------------


def test_complaint_needs_some_detail() -> None:
    history = asked("complaint_form", "complaint_text")
    events = form_turn(
        "complaint_form", history, user("it broke", "inform"), {"complaint_text": "it broke"},
        "complaint_text",
    )  # fmt: skip
    result, said = run(ValidateComplaintForm(), events)
    assert said == ["Sorry, I need a little more detail to file your complaint."]
    assert result == [SlotSet("complaint_text", None), SlotSet("failed_attempts", 1.0)]
    text = "the parcel arrived   soaking wet"
    events = form_turn(
        "complaint_form", history, user(text, "delivery_problem"), {"complaint_text": text},
        "complaint_text",
    )  # fmt: skip
    result, said = run(ValidateComplaintForm(), events)
    assert result == [SlotSet("complaint_text", "the parcel arrived soaking wet")]
    assert said == []


def test_account_email_must_belong_to_a_customer() -> None:
    history = asked("account_form", "email")
    spoken = "nobody at example dot com"
    events = form_turn(
        "account_form", history, user(spoken, "inform", email=spoken), {"email": spoken}, "email"
    )
    result, said = run(ValidateAccountForm(), events)
    assert said == ["I can't find an account for nobody at example dot com."]
    assert result == [SlotSet("email", None), SlotSet("failed_attempts", 1.0)]
    spoken = "jane dot doe at example dot com"
    events = form_turn(
        "account_form", history, user(spoken, "inform", email=spoken), {"email": spoken}, "email"
    )
    result, said = run(ValidateAccountForm(), events)
    assert result == [SlotSet("email", "jane.doe@example.com")]


def test_account_answer_without_an_email() -> None:
    events = form_turn(
        "account_form", asked("account_form", "email"), user("uh", "inform"), None, "email"
    )
    result, said = run(ValidateAccountForm(), events)
    assert said == ["Sorry, I didn't catch an email address."]
    assert result == [SlotSet("failed_attempts", 1.0)]


@pytest.mark.parametrize(
    ("value", "expected"),
    [("07700 900123", "07700900123"), ("+44 7700 900123", "+447700900123"),
     ("oh seven seven oh oh nine oh oh one two three", "07700900123")],
)  # fmt: skip
def test_callback_phone_number_accepted(value: str, expected: str) -> None:
    events = form_turn(
        "callback_form", asked("callback_form", "phone_number"),
        user(value, "inform", phone_number=value), {"phone_number": value}, "phone_number",
    )  # fmt: skip
    result, said = run(ValidateCallbackForm(), events)
    assert result == [SlotSet("phone_number", expected)]
    assert said == []


@pytest.mark.parametrize("value", ["12345", "+4477009001234567"])
def test_callback_phone_number_rejected(value: str) -> None:
    events = form_turn(
        "callback_form", asked("callback_form", "phone_number"),
        user(value, "inform", phone_number=value), {"phone_number": value}, "phone_number",
    )  # fmt: skip
    result, said = run(ValidateCallbackForm(), events)
    assert said == ["Sorry, I need the full phone number, including the area code."]
    assert result == [SlotSet("phone_number", None), SlotSet("failed_attempts", 1.0)]


# -- other tasks -----------------------------------------------------------------


def test_file_complaint_gives_increasing_ticket_numbers() -> None:
    events = [
        slot("order_id", "12345"), slot("complaint_text", "the box was crushed"),
        action("complaint_form"), slot("requested_slot", None), loop(None),
    ]  # fmt: skip
    result, said = run(ActionFileComplaint(), events)
    assert said == [
        "Thank you. I've filed your complaint. Your ticket number is one zero zero one. "
        "A member of our team will contact you within two working days.",
        "utter_anything_else",
    ]
    assert result == [
        SlotSet("ticket_id", "1001"),
        SlotSet("complaint_text", None),
        SlotSet("failed_attempts", 0.0),
    ]
    result, said = run(ActionFileComplaint(), events)
    assert result[0] == SlotSet("ticket_id", "1002")
    assert "one zero zero two" in said[0]


def test_complaint_after_no_progress_escalates(demo_db: DemoBackend) -> None:
    events = [slot("failed_attempts", 3.0), slot("escalation_reason", "no_progress")]
    result, said = run(ActionFileComplaint(), events)
    assert said == ["utter_escalate_no_progress"]
    assert SlotSet("escalation_reason", "no_progress") in result
    assert demo_db.count_rows("tickets") == 0


def test_account_help_sends_a_password_reset(demo_db: DemoBackend) -> None:
    result, said = run(ActionAccountHelp(), [slot("email", "jane.doe@example.com")])
    assert said == [
        "I've sent a password reset email to jane dot doe at example dot com. "
        "Please follow the instructions in it.",
        "utter_anything_else",
    ]
    assert result == [SlotSet("failed_attempts", 0.0)]
    assert demo_db.count_rows("password_resets") == 1


def test_request_callback(demo_db: DemoBackend) -> None:
    dispatcher = CollectingDispatcher()
    tracker = tracker_from([slot("phone_number", "07700900123"), slot("task", "return_item")])
    result = asyncio.run(ActionRequestCallback().run(dispatcher, tracker, DOMAIN))
    assert [(m["response"], m.get("phone_spoken")) for m in dispatcher.messages] == [
        ("utter_callback_confirmed", "oh seven seven oh oh, nine oh oh, one two three")
    ]
    assert result == [
        SlotSet("escalation_reason", "callback_requested"),
        SlotSet("failed_attempts", 0.0),
    ]
    assert demo_db.count_rows("callback_requests") == 1


def test_callback_after_no_progress_escalates(demo_db: DemoBackend) -> None:
    result, said = run(ActionRequestCallback(), [slot("failed_attempts", 3.0)])
    assert said == ["utter_escalate_no_progress"]
    assert demo_db.count_rows("callback_requests") == 0
