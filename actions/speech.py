"""Turning values into words the speech synthesiser reads well, and back.

Everything here is pure: no I/O, no clock unless a date is passed in. The
synthesiser reads "12345" as "twelve thousand ...", so order numbers, tickets
and phone numbers are spelled digit by digit, and money and dates are written
out the way a person on the phone would say them.
"""

from __future__ import annotations

import re
from datetime import date

_DIGITS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
_TEENS = (
    "ten",
    "eleven",
    "twelve",
    "thirteen",
    "fourteen",
    "fifteen",
    "sixteen",
    "seventeen",
    "eighteen",
    "nineteen",
)
_TENS = ("", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety")
_ORDINAL_DAYS = (
    "",
    "first",
    "second",
    "third",
    "fourth",
    "fifth",
    "sixth",
    "seventh",
    "eighth",
    "ninth",
    "tenth",
    "eleventh",
    "twelfth",
    "thirteenth",
    "fourteenth",
    "fifteenth",
    "sixteenth",
    "seventeenth",
    "eighteenth",
    "nineteenth",
    "twentieth",
    "twenty first",
    "twenty second",
    "twenty third",
    "twenty fourth",
    "twenty fifth",
    "twenty sixth",
    "twenty seventh",
    "twenty eighth",
    "twenty ninth",
    "thirtieth",
    "thirty first",
)
_MONTHS = (
    "",
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)
_WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


def number_to_words(number: int) -> str:
    """Says a whole number in British English: 149 -> "one hundred and forty nine"."""
    if number < 0:
        return "minus " + number_to_words(-number)
    if number < 10:
        return _DIGITS[number]
    if number < 20:
        return _TEENS[number - 10]
    if number < 100:
        tens, units = divmod(number, 10)
        return _TENS[tens] + (f" {_DIGITS[units]}" if units else "")
    if number < 1000:
        hundreds, rest = divmod(number, 100)
        words = f"{_DIGITS[hundreds]} hundred"
        return words + (f" and {number_to_words(rest)}" if rest else "")
    for size, name in ((1_000_000_000, "billion"), (1_000_000, "million"), (1000, "thousand")):
        if number >= size:
            high, rest = divmod(number, size)
            words = f"{number_to_words(high)} {name}"
            if not rest:
                return words
            # British usage: "one thousand and five", "one thousand two hundred".
            joiner = " and " if rest < 100 else " "
            return words + joiner + number_to_words(rest)
    raise AssertionError("unreachable")


def speak_digits(text: str) -> str:
    """Spells a number digit by digit: "12345" -> "one two three four five".

    Letters (as in a postcode) are kept as capitals so the synthesiser spells
    them; anything else (spaces, dashes) is dropped.
    """
    words = []
    for char in str(text):
        if char.isdigit():
            words.append(_DIGITS[int(char)])
        elif char.isalpha():
            words.append(char.upper())
    return " ".join(words)


def _group_sizes(count: int) -> list[int]:
    """Where a person pauses when reading out a phone number of `count` digits."""
    if count == 11:
        return [5, 3, 3]  # UK style: 07700 900 123
    if count == 10:
        return [4, 3, 3]
    sizes = []
    while count > 4:
        sizes.append(3)
        count -= 3
    return sizes + ([count] if count else [])


def speak_phone(number: str) -> str:
    """Reads a phone number in groups, with "oh" for zero as callers say it.

    "07700900123" -> "oh seven seven oh oh, nine oh oh, one two three".
    The commas make the synthesiser pause between groups.
    """
    text = str(number).strip()
    prefix = ""
    if text.startswith("+"):
        prefix = "plus "
        text = text[1:]
    digits = [c for c in text if c.isdigit()]
    sizes = _group_sizes(len(digits))
    if prefix and len(digits) > 4:
        # "+44 7700 900123": the country code is its own group.
        sizes = [2, *_group_sizes(len(digits) - 2)]
    groups: list[str] = []
    position = 0
    for size in sizes:
        chunk = digits[position : position + size]
        groups.append(" ".join("oh" if d == "0" else _DIGITS[int(d)] for d in chunk))
        position += size
    return prefix + ", ".join(groups)


_EMAIL_SYMBOLS = {"@": "at", ".": "dot", "_": "underscore", "-": "dash", "+": "plus"}


def speak_email(email: str) -> str:
    """ "jane.doe@example.com" -> "jane dot doe at example dot com"."""
    words: list[str] = []
    current = ""
    for char in str(email).strip().lower():
        if char in _EMAIL_SYMBOLS or char.isdigit():
            if current:
                words.append(current)
                current = ""
            words.append(_EMAIL_SYMBOLS.get(char) or _DIGITS[int(char)])
        else:
            current += char
    if current:
        words.append(current)
    return " ".join(words)


def speak_money(pence: int) -> str:
    """4999 -> "forty nine pounds ninety nine"; 1205 -> "twelve pounds and five pence"."""
    pounds, rest = divmod(int(pence), 100)
    if pounds == 0:
        return f"{number_to_words(rest)} pence"
    pound_words = f"{number_to_words(pounds)} {'pound' if pounds == 1 else 'pounds'}"
    if rest == 0:
        return pound_words
    if rest < 10:
        # "twelve pounds five" would sound like fifty pence.
        return f"{pound_words} and {number_to_words(rest)} pence"
    return f"{pound_words} {number_to_words(rest)}"


def speak_year(year: int) -> str:
    """2024 -> "twenty twenty four"; 2005 -> "two thousand and five"."""
    if 2000 <= year < 2010 or year % 100 == 0:
        return number_to_words(year)
    high, low = divmod(year, 100)
    low_words = number_to_words(low) if low >= 10 else f"oh {number_to_words(low)}"
    return f"{number_to_words(high)} {low_words}"


def speak_date(day: date, today: date | None = None) -> str:
    """ "Tuesday the third of December"; the year is added only when it isn't this year."""
    words = f"{_WEEKDAYS[day.weekday()]} the {_ORDINAL_DAYS[day.day]} of {_MONTHS[day.month]}"
    reference = today or date.today()
    if day.year != reference.year:
        words += f" {speak_year(day.year)}"
    return words


# Words a speech recogniser may produce for digits when a caller reads a number.
_DIGIT_WORDS = {word: str(value) for value, word in enumerate(_DIGITS)}
_DIGIT_WORDS.update({"oh": "0", "o": "0", "nought": "0", "nil": "0"})
_REPEATS = {"double": 2, "triple": 3}


def digits_from_speech(text: str) -> str | None:
    """Reads a number said digit by digit: "one two double three" -> "12334".

    Accepts written digits too ("12345", "07700 900123"). Returns None when
    something other than digits was said, so callers can treat it as no answer.
    """
    tokens = re.findall(r"[a-z]+|\d+", str(text).lower())
    digits: list[str] = []
    repeat = 1
    for token in tokens:
        if token in _REPEATS:
            repeat = _REPEATS[token]
            continue
        if token.isdigit():
            value = token
        elif token in _DIGIT_WORDS:
            value = _DIGIT_WORDS[token]
        else:
            return None
        digits.append(value[0] * repeat + value[1:])
        repeat = 1
    joined = "".join(digits)
    return joined or None


_SPOKEN_EMAIL_WORDS = {
    "at": "@",
    "dot": ".",
    "underscore": "_",
    "dash": "-",
    "hyphen": "-",
}


def email_from_speech(text: str) -> str:
    """ "Jane dot Doe at example dot com" -> "jane.doe@example.com".

    Written addresses pass through, lower-cased and without spaces.
    """
    lowered = str(text).strip().lower()
    if "@" in lowered:
        return re.sub(r"\s+", "", lowered)
    parts = []
    for token in lowered.split():
        # Only the ten digit words: "o" may well be a spelled letter here.
        digit = str(_DIGITS.index(token)) if token in _DIGITS else token
        parts.append(_SPOKEN_EMAIL_WORDS.get(token, digit))
    return "".join(parts)


def postcode_from_speech(text: str) -> str:
    """A postcode as said or typed, uppercase without spaces: "b s one five a b"
    and "BS1 5AB" -> "BS15AB". Words that are neither single letters, digit
    words nor letter-and-digit groups ("its", "postcode") are skipped."""
    parts = []
    for word in text.lower().split():
        if word in _DIGIT_WORDS:
            parts.append(_DIGIT_WORDS[word])
        elif word.isalnum() and (len(word) == 1 or any(ch.isdigit() for ch in word)):
            parts.append(word)
    return "".join(parts).upper()
