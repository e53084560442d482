"""Pure helpers that turn spoken number words into digit strings.

Speech recognisers write numbers as words ("double four", "twelve thirty four"),
and callers mix digit-by-digit dictation with grouped numbers. These functions
know nothing about spaCy so they can be tested on plain word lists.

Composition rules (the ambiguous cases are decided here, once):

* "oh", "o", "zero", "nought" and "nil" are the digit 0; a leading 0 is kept.
* "double"/"triple"/"treble" repeat the next single digit: "double oh" -> "00".
* A tens word takes a following 1-9 digit: "thirty four" -> "34", but
  "twenty oh five" -> "2005" because 0 never completes a tens word.
* "X hundred" composes with "and <anything under 100>" or with a directly
  following tens/teen word: "one hundred and five" -> "105",
  "one hundred twenty three" -> "123". A bare digit straight after "hundred"
  starts new dictation, so "nine hundred one two" -> "90012" (phone style).
* "thousand" follows the same rule, and also takes a following hundreds phrase:
  "twelve thousand three hundred and forty five" -> "12345".
"""

from __future__ import annotations

from collections.abc import Sequence

DIGIT_WORDS: dict[str, int] = {
    "zero": 0,
    "oh": 0,
    "o": 0,
    "nought": 0,
    "nil": 0,
    "one": 1,
    "two": 2,
    "three": 3,
    "four": 4,
    "five": 5,
    "six": 6,
    "seven": 7,
    "eight": 8,
    "nine": 9,
}
TEEN_WORDS: dict[str, int] = {
    "ten": 10,
    "eleven": 11,
    "twelve": 12,
    "thirteen": 13,
    "fourteen": 14,
    "fifteen": 15,
    "sixteen": 16,
    "seventeen": 17,
    "eighteen": 18,
    "nineteen": 19,
}
TENS_WORDS: dict[str, int] = {
    "twenty": 20,
    "thirty": 30,
    "forty": 40,
    "fifty": 50,
    "sixty": 60,
    "seventy": 70,
    "eighty": 80,
    "ninety": 90,
}
REPEAT_WORDS: dict[str, int] = {"double": 2, "triple": 3, "treble": 3}
HUNDRED = "hundred"
THOUSAND = "thousand"
MULTIPLIERS: frozenset[str] = frozenset({HUNDRED, THOUSAND})
# Hesitations a recogniser leaves inside a number run; they carry no digits.
FILLER_WORDS: frozenset[str] = frozenset({"um", "umm", "uh", "uhm", "er", "erm", "hmm", "ah"})

_Parsed = tuple[int, int]  # (value, index of the first word not consumed)


def is_digit_literal(word: str) -> bool:
    """True for a token already written as ASCII digits, e.g. "123"."""
    return word.isascii() and word.isdigit()


def is_number_word(word: str) -> bool:
    """True for a word that carries digits on its own (not "double", "hundred", "and")."""
    return word in DIGIT_WORDS or word in TEEN_WORDS or word in TENS_WORDS or is_digit_literal(word)


def is_single_digit(word: str) -> bool:
    """True for a word or literal standing for exactly one digit."""
    return word in DIGIT_WORDS or (is_digit_literal(word) and len(word) == 1)


def words_to_digits(words: Sequence[str]) -> str | None:
    """Convert a run of number words to the digit string the caller meant.

    Fillers are ignored. Returns None when the words are not a well-formed run
    (a dangling "double", a stray "and", a non-number word).
    """
    kept = [w for w in words if w not in FILLER_WORDS]
    parts: list[str] = []
    i = 0
    while i < len(kept):
        step = _parse_item(kept, i)
        if step is None:
            return None
        text, i = step
        parts.append(text)
    return "".join(parts) or None


def _parse_item(words: Sequence[str], i: int) -> tuple[str, int] | None:
    word = words[i]
    if is_digit_literal(word):
        return word, i + 1
    if word in REPEAT_WORDS:
        if i + 1 < len(words) and is_single_digit(words[i + 1]):
            digit = str(DIGIT_WORDS.get(words[i + 1], words[i + 1]))
            return digit * REPEAT_WORDS[word], i + 2
        return None
    cardinal = _parse_cardinal(words, i)
    if cardinal is None:
        return None
    value, end = cardinal
    return str(value), end


def _at(words: Sequence[str], i: int) -> str:
    return words[i] if i < len(words) else ""


def _parse_below_100(words: Sequence[str], i: int) -> _Parsed | None:
    word = _at(words, i)
    # "a" only counts as one in "a hundred" / "a thousand".
    if word == "a" and _at(words, i + 1) in MULTIPLIERS:
        return 1, i + 1
    if word in DIGIT_WORDS:
        return DIGIT_WORDS[word], i + 1
    if word in TEEN_WORDS:
        return TEEN_WORDS[word], i + 1
    if word in TENS_WORDS:
        unit = DIGIT_WORDS.get(_at(words, i + 1), 0)
        if unit:
            return TENS_WORDS[word] + unit, i + 2
        return TENS_WORDS[word], i + 1
    return None


def _parse_tail(words: Sequence[str], i: int, limit: int) -> _Parsed:
    """Parse what may follow "hundred"/"thousand"; returns (0, i) when nothing composes."""
    if _at(words, i) == "and":
        below = _parse_below_1000(words, i + 1) if limit > 100 else _parse_below_100(words, i + 1)
        if below is not None and below[0] < limit:
            return below
        return 0, i
    if limit > 100 and _at(words, i + 1) == HUNDRED:
        hundreds = _parse_below_1000(words, i)
        if hundreds is not None and hundreds[0] < limit:
            return hundreds
    if _at(words, i) in TENS_WORDS or _at(words, i) in TEEN_WORDS:
        below = _parse_below_100(words, i)
        if below is not None:
            return below
    return 0, i


def _parse_below_1000(words: Sequence[str], i: int) -> _Parsed | None:
    if _at(words, i) == HUNDRED:
        value, end = 1, i  # a bare "hundred" means one hundred
    else:
        below = _parse_below_100(words, i)
        if below is None:
            return None
        value, end = below
    if _at(words, end) != HUNDRED or value == 0:
        return value, end
    tail, end = _parse_tail(words, end + 1, 100)
    return value * 100 + tail, end


def _parse_cardinal(words: Sequence[str], i: int) -> _Parsed | None:
    below = _parse_below_1000(words, i)
    if below is None:
        return None
    value, end = below
    if _at(words, end) != THOUSAND or value == 0:
        return value, end
    tail, end = _parse_tail(words, end + 1, 1000)
    return value * 1000 + tail, end
