"""What the dialogue waits for next, and how that shapes recognition.

When the bot has asked a closed question (an order number, a phone number,
yes or no) the recogniser listens with a small grammar for that one turn, and
the turn may end as soon as the partial result already answers it. Every
grammar keeps a way out (asking for a person, a repeat, goodbye) and "[unk]",
so noise does not become words and a caller saying something else is heard
as not understood rather than forced into a digit.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence

from bot.nlu.number_words import words_to_digits

_WAY_OUT = [
    "speak to a person",
    "agent",
    "human",
    "repeat that",
    "say that again",
    "i don't know",
    "goodbye",
    "[unk]",
]
# "I haven't got it": the order form then finds the order by the account.
_NO_NUMBER = [
    "no",
    "i don't have it",
    "i don't have the number",
    "i haven't got it",
    "i don't remember",
    "i can't find it",
    "no idea",
    "not sure",
]
_DIGIT_WORDS = [
    "zero", "oh", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine",
    "double", "triple", "plus",
]  # fmt: skip
_YES = ["yes", "yeah", "yep", "yes please", "that's right", "correct", "sure", "go ahead"]
_NO = ["no", "nope", "no thanks", "no thank you", "not really"]
_CLEAR_ANSWERS = {*_YES, *_NO}
# The post-call survey's rating, from one to five (bot/session/survey.py).
_RATINGS = ["one", "two", "three", "four", "five"]
_RATING_WORDS = ["out of five", "it was a", "i'd give it a", "i'd say", "stars", "no thanks"]

ORDER_ID_DIGITS = 5
# A phone number is complete without waiting for silence only when it cannot
# go on: a UK national number (0 and ten digits) or the longest international
# one (E.164: 15 digits). Anything else ends on the caller's silence, so
# numbers of 12 or 13 digits said without "plus" are never cut.
UK_NATIONAL_DIGITS = 11
PHONE_MAX_DIGITS = 15


class Expectation(enum.Enum):
    FREE = "free"
    ORDER_ID = "order_id"
    PHONE_NUMBER = "phone_number"
    YES_NO = "yes_no"
    RATING = "rating"

    def grammar(self) -> list[str] | None:
        """Phrases for a Vosk grammar, or None for free speech."""
        if self is Expectation.ORDER_ID:
            return [*_DIGIT_WORDS, *_NO_NUMBER, *_WAY_OUT]
        if self is Expectation.PHONE_NUMBER:
            return [*_DIGIT_WORDS, *_WAY_OUT]
        if self is Expectation.YES_NO:
            return [*_YES, *_NO, *_WAY_OUT]
        if self is Expectation.RATING:
            return [*_RATINGS, *_RATING_WORDS, "no", *_WAY_OUT]
        return None

    def completed_by(self, partial: str) -> bool:
        """True when a partial result already holds a whole answer."""
        words = partial.split()
        if not words:
            return False
        if self is Expectation.YES_NO:
            return partial.strip() in _CLEAR_ANSWERS
        if self is Expectation.RATING:
            # "four out of five": nothing can follow. A bare "four" may go on.
            return len(words) >= 4 and words[-3:] == ["out", "of", "five"] and words[-4] in _RATINGS
        if self is Expectation.ORDER_ID or self is Expectation.PHONE_NUMBER:
            international = words[0] == "plus"
            digits = words_to_digits(words[1:] if international else words)
            if digits is None:
                return False
            if self is Expectation.ORDER_ID:
                return len(digits) >= ORDER_ID_DIGITS
            if international or digits.startswith("00"):
                return len(digits) >= PHONE_MAX_DIGITS
            national = digits.startswith("0") and len(digits) == UK_NATIONAL_DIGITS
            return national or len(digits) >= PHONE_MAX_DIGITS
        return False

    def number_begun(self, partial: str) -> bool:
        """True when the caller is part-way through the number the bot asked
        for (they pause between groups of digits: wait longer)."""
        if self is not Expectation.ORDER_ID and self is not Expectation.PHONE_NUMBER:
            return False
        words = [w for w in partial.split() if w != "plus"]
        digits = words_to_digits(words) if words else None
        return bool(digits) and not self.completed_by(partial)


def expectation_for(requested_slot: str | None, responses: Sequence[str]) -> Expectation:
    """The answer the bot waits for after a turn."""
    if requested_slot == "order_id":
        return Expectation.ORDER_ID
    if requested_slot == "phone_number":
        return Expectation.PHONE_NUMBER
    if requested_slot == "confirm_cancel":
        return Expectation.YES_NO
    if responses and responses[-1] in {"utter_bot_challenge", "utter_payment_problem"}:
        return Expectation.YES_NO
    return Expectation.FREE


def is_yes(text: str) -> bool:
    """A clear yes ("yes", "yes please", "yeah go ahead"...), nothing else."""
    words = text.strip().lower()
    return (
        words in _YES
        or any(words.startswith(f"{yes} ") for yes in _YES)
        and not any(no in words.split() for no in ("no", "not", "don't", "dont"))
    )
