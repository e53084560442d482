"""Actions that steer the call (escalate, fallback, repeat) and the speech helpers."""

from __future__ import annotations

from datetime import date

import pytest
from rasa_sdk.events import SlotSet

from actions.conversation import NOTHING_SAID_YET, ActionEscalate, ActionFallback, ActionRepeat
from actions.speech import (
    digits_from_speech,
    email_from_speech,
    speak_date,
    speak_digits,
    speak_email,
    speak_money,
    speak_phone,
)
from tests.unit.action_helpers import action, bot, run, slot, user

# -- speech ----------------------------------------------------------------------


def test_speech_helpers() -> None:
    assert speak_digits("12345") == "one two three four five"
    assert speak_digits("1001") == "one zero zero one"
    assert speak_phone("07700900123") == "oh seven seven oh oh, nine oh oh, one two three"
    assert (
        speak_phone("+447700900123")
        == "plus four four, seven seven oh oh, nine oh oh, one two three"
    )
    assert speak_email("jane.doe@example.com") == "jane dot doe at example dot com"
    assert speak_money(4999) == "forty nine pounds ninety nine"
    assert speak_money(1250) == "twelve pounds fifty"
    assert speak_money(100) == "one pound"
    assert speak_money(1205) == "twelve pounds and five pence"
    assert speak_money(99) == "ninety nine pence"
    assert speak_money(123400) == "one thousand two hundred and thirty four pounds"
    assert speak_date(date(2024, 12, 3), date(2024, 11, 1)) == "Tuesday the third of December"
    assert speak_date(date(2025, 1, 21), date(2024, 12, 30)) == (
        "Tuesday the twenty first of January twenty twenty five"
    )
    assert digits_from_speech("one two double three four") == "12334"
    assert digits_from_speech("07700 900123") == "07700900123"
    assert digits_from_speech("my order") is None
    assert email_from_speech("Jane dot Doe at example dot com") == "jane.doe@example.com"
    assert email_from_speech(" John.Smith@Example.com") == "john.smith@example.com"


# -- conversation ----------------------------------------------------------------


def test_escalate_on_request() -> None:
    result, said = run(
        ActionEscalate(), [slot("failed_attempts", 2.0), user("agent", "request_human")]
    )
    assert said == ["utter_escalate_explicit_request"]
    assert result == [
        SlotSet("escalation_reason", "explicit_request"),
        SlotSet("failed_attempts", 0.0),
    ]


@pytest.mark.parametrize(
    ("intent", "response"),
    [("out_of_scope", "utter_out_of_scope"), ("nlu_fallback", "utter_please_rephrase")],
)
def test_single_fallback_asks_again(intent: str, response: str) -> None:
    events = [user("hi", "greet"), bot("Hello."), user("?", intent)]
    result, said = run(ActionFallback(), events)
    assert (result, said) == ([], [response])


def test_two_fallbacks_in_a_row_escalate() -> None:
    events = [
        user("what's the weather", "out_of_scope"), action("action_fallback"),
        bot("Sorry, I can't help with that."), action("action_listen"),
        user("mumble", "nlu_fallback"),
    ]  # fmt: skip
    result, said = run(ActionFallback(), events)
    assert said == ["utter_escalate_repeated_fallback"]
    assert result == [
        SlotSet("escalation_reason", "repeated_fallback"),
        SlotSet("failed_attempts", 0.0),
    ]


def test_fallbacks_separated_by_a_good_message_do_not_escalate() -> None:
    events = [
        user("weather", "out_of_scope"), bot("Sorry."), user("hello", "greet"), bot("Hello."),
        user("mumble", "nlu_fallback"),
    ]  # fmt: skip
    _, said = run(ActionFallback(), events)
    assert said == ["utter_please_rephrase"]


def test_repeat_says_the_last_turn_again() -> None:
    events = [
        bot("Thank you for calling."), user("order 99999", "inform"),
        bot("I can't find order nine nine nine nine nine."), bot("What's your order number?"),
        action("action_listen"), user("say that again", "repeat"),
    ]  # fmt: skip
    result, said = run(ActionRepeat(), events)
    assert said == ["I can't find order nine nine nine nine nine.", "What's your order number?"]
    assert result == []


def test_repeat_of_the_greeting() -> None:
    _, said = run(ActionRepeat(), [bot("Thank you for calling."), user("what", "repeat")])
    assert said == ["Thank you for calling."]


def test_repeat_when_nothing_was_said() -> None:
    _, said = run(ActionRepeat(), [action("action_listen"), user("again", "repeat")])
    assert said == [NOTHING_SAID_YET]
