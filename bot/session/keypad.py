"""Keys pressed on a phone, gathered into answers.

At the questions that expect digits the caller may type instead of speaking:
digits gather until ``#`` ends the entry, ``*`` starts it again, and at a
yes-or-no question 1 means yes and 2 means no. Anywhere else 0 asks for a
person, as on most hotlines (the words go to the dialogue like speech). A finished entry is handed
on as the caller's words for that turn ("12345", "yes"), so the dialogue
treats keyed and spoken answers alike. The bot mentions the keypad once per
call, at the first question that expects a number.
"""

from __future__ import annotations

from bot.expectations import Expectation

KEYPAD_HINT = "You can also key it in on your phone, then press hash."
_YES_NO_KEYS = {"1": "yes", "2": "no"}
# What 0 says where no number is asked for.
ASK_FOR_A_PERSON = "i want to speak to a person"
_NUMBER_QUESTIONS = {Expectation.ORDER_ID, Expectation.PHONE_NUMBER}
# Longer entries are cut here: no answer the bot asks for is longer.
MAX_DIGITS = 20


class KeypadEntry:
    """One call's keyed entry: ``press`` returns the words of a finished entry."""

    def __init__(self) -> None:
        self._digits: list[str] = []
        self._hinted = False

    @property
    def pending(self) -> str:
        return "".join(self._digits)

    def press(self, key: str, expectation: Expectation) -> str | None:
        if key == "*":
            self._digits.clear()
            return None
        if key == "#":
            entry, self._digits = "".join(self._digits), []
            return entry or None
        if not key.isdigit():
            return None  # A-D: no meaning here
        if expectation is Expectation.YES_NO and not self._digits and key in _YES_NO_KEYS:
            return _YES_NO_KEYS[key]
        if key == "0" and not self._digits and expectation not in _NUMBER_QUESTIONS:
            return ASK_FOR_A_PERSON
        if len(self._digits) < MAX_DIGITS:
            self._digits.append(key)
        return None

    def hint_for(self, expectation: Expectation) -> str | None:
        """The keypad hint, the first time a question expects a number."""
        if self._hinted or expectation not in _NUMBER_QUESTIONS:
            return None
        self._hinted = True
        return KEYPAD_HINT
