"""Keyed answers: digits until "#", "*" to start again, 1 and 2 for yes and no."""

from __future__ import annotations

from bot.expectations import Expectation
from bot.session.keypad import ASK_FOR_A_PERSON, KeypadEntry


def test_a_yes_no_question_takes_one_and_two() -> None:
    entry = KeypadEntry()
    assert entry.press("1", Expectation.YES_NO) == "yes"
    assert entry.press("2", Expectation.YES_NO) == "no"
    # Digits at an order question wait for "#"; "*" starts again.
    assert entry.press("2", Expectation.ORDER_ID) is None
    assert entry.press("*", Expectation.ORDER_ID) is None
    for key in "54321":
        assert entry.press(key, Expectation.ORDER_ID) is None
    assert entry.pending == "54321"
    assert entry.press("#", Expectation.ORDER_ID) == "54321"
    assert entry.press("#", Expectation.ORDER_ID) is None  # nothing keyed
    assert entry.hint_for(Expectation.YES_NO) is None
    assert entry.hint_for(Expectation.PHONE_NUMBER) is not None
    assert entry.hint_for(Expectation.ORDER_ID) is None  # once per call


def test_zero_asks_for_a_person_except_inside_a_number() -> None:
    entry = KeypadEntry()
    assert entry.press("0", Expectation.FREE) == ASK_FOR_A_PERSON
    assert entry.press("0", Expectation.YES_NO) == ASK_FOR_A_PERSON
    # At a number question 0 is a digit like any other.
    assert entry.press("0", Expectation.ORDER_ID) is None
    assert entry.pending == "0"
    # Mid-entry it is a digit too, whatever the question.
    assert entry.press("0", Expectation.FREE) is None
    assert entry.pending == "00"
