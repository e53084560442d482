"""Dates of birth in caller text: found only after words that say one follows.

A cue ("date of birth", "born", "birthday", "dob", "d o b") is followed, after at
most a few joining words ("is", "on", "it's", "um"), by a date:

* spoken day first: "the third of march nineteen eighty", "three march eighty",
  "twenty first of june";
* spoken month first: "march third nineteen eighty", "march the third";
* a month and year, or a year alone: "march nineteen eighty", "born in nineteen eighty";
* dictated digits, day month year: "oh three oh three eighty", "zero three zero three
  one nine eight zero";
* typed: "03/03/1980", "3.3.80", "1980-03-03", "3rd March 1980", "March 3rd, 1980".

When no date follows the cue at once ("my date of birth on the account is wrong,
it's the third of march nineteen eighty"), the first date with a year within
``LATER_DATE_WORDS`` words counts. Day and month must make a real date; a
four-digit year lies in ``YEARS``. The same date with no such cue ("my parcel was
due on the third of march") is not a date of birth.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from bot.nlu.number_words import FILLER_WORDS, is_number_word, words_to_digits
from bot.privacy_words import Word

MONTHS: dict[str, int] = {
    "january": 1,
    "february": 2,
    "march": 3,
    "april": 4,
    "may": 5,
    "june": 6,
    "july": 7,
    "august": 8,
    "september": 9,
    "october": 10,
    "november": 11,
    "december": 12,
    "jan": 1,
    "feb": 2,
    "mar": 3,
    "apr": 4,
    "jun": 6,
    "jul": 7,
    "aug": 8,
    "sep": 9,
    "sept": 9,
    "oct": 10,
    "nov": 11,
    "dec": 12,
}
DAYS_IN_MONTH = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
ORDINAL_UNITS: dict[str, int] = {
    "first": 1,
    "second": 2,
    "third": 3,
    "fourth": 4,
    "fifth": 5,
    "sixth": 6,
    "seventh": 7,
    "eighth": 8,
    "ninth": 9,
}
ORDINAL_WORDS: dict[str, int] = {
    **ORDINAL_UNITS,
    "tenth": 10,
    "eleventh": 11,
    "twelfth": 12,
    "thirteenth": 13,
    "fourteenth": 14,
    "fifteenth": 15,
    "sixteenth": 16,
    "seventeenth": 17,
    "eighteenth": 18,
    "nineteenth": 19,
    "twentieth": 20,
    "thirtieth": 30,
}
TENS_BEFORE_ORDINAL: dict[str, int] = {"twenty": 20, "thirty": 30}
YEARS = range(1900, 2100)
# Words between a cue and its date: "my date of birth is um the third".
JOINING_WORDS = frozenset(
    {"is", "was", "'s", "be", "it", "its", "on", "in", "as", ":", "-", ",", "."}
)
MAX_JOINING_WORDS = 4
LATER_DATE_WORDS = 8
# Words that may make up a spoken year: "two thousand and five", "nineteen oh five".
YEAR_JOINERS = frozenset({"and", "hundred", "thousand"})
MAX_YEAR_WORDS = 5
MAX_DICTATED_WORDS = 8

_TYPED_ORDINAL = re.compile(r"(\d{1,2})(?:st|nd|rd|th)")
_DAY_FIRST_DATE = re.compile(r"(\d{1,2})[/.-](\d{1,2})[/.-](\d{4}|\d{2})")
_YEAR_FIRST_DATE = re.compile(r"(\d{4})[/.-](\d{1,2})[/.-](\d{1,2})")
_SHORT_YEAR = re.compile(r"'?(\d{2})")

Span = tuple[int, int]


def find_birth_dates(words: Sequence[Word]) -> list[Span]:
    """Word index spans [start, end) of dates of birth."""
    lowered = [word.lower for word in words]
    found: list[Span] = []
    for after_cue in _cue_ends(lowered):
        if found and after_cue < found[-1][1]:
            continue
        span = _date_after_cue(lowered, after_cue)
        if span is not None:
            found.append(span)
    return found


def _cue_ends(words: Sequence[str]) -> list[int]:
    """Index of the word after each date-of-birth cue."""
    ends = []
    for index, word in enumerate(words):
        of_birth = word == "birth" and _at(words, index - 1) == "of"  # date/year of birth
        if of_birth or word.rstrip(".") in {"dob", "d.o.b", "birthdate", "birthday", "born"}:
            ends.append(index + 1)
        elif word == "birth" and _at(words, index + 1) == "date":
            ends.append(index + 2)
        elif words[index : index + 3] == ["d", "o", "b"]:
            ends.append(index + 3)
    return ends


def _date_after_cue(words: Sequence[str], start: int) -> Span | None:
    index = start
    while index < len(words) and index - start < MAX_JOINING_WORDS:
        if words[index] not in JOINING_WORDS and words[index] not in FILLER_WORDS:
            break
        index += 1
    date = parse_date(words, index)
    if date is not None:
        return index, date[0]
    for later in range(index + 1, min(len(words), index + LATER_DATE_WORDS)):
        date = parse_date(words, later)
        if date is not None and date[1]:
            return later, date[0]
    return None


def parse_date(words: Sequence[str], start: int) -> tuple[int, bool] | None:
    """(end, has a year) of the longest date starting at word ``start``, or None."""
    if start >= len(words):
        return None
    found = [
        date
        for date in (
            _typed_date(words, start),
            _dictated_date(words, start),
            _day_first(words, start),
            _month_first(words, start),
            _year_alone(words, start),
        )
        if date is not None
    ]
    return max(found, key=lambda date: date[0]) if found else None


def _at(words: Sequence[str], index: int) -> str:
    return words[index] if 0 <= index < len(words) else ""


def _valid(day: int, month: int, year: int | None = None) -> bool:
    if not 1 <= month <= 12 or not 1 <= day <= DAYS_IN_MONTH[month - 1]:
        return False
    return year is None or year < 100 or year in YEARS


def _typed_date(words: Sequence[str], start: int) -> tuple[int, bool] | None:
    word = words[start]
    if match := _DAY_FIRST_DATE.fullmatch(word):
        first, second, year = (int(part) for part in match.groups())
        # Day first as in the UK; month first when only that reading is a date.
        if _valid(first, second, year) or _valid(second, first, year):
            return start + 1, True
    if (match := _YEAR_FIRST_DATE.fullmatch(word)) and _valid(
        int(match.group(3)), int(match.group(2)), int(match.group(1))
    ):
        return start + 1, True
    return None


def _dictated_date(words: Sequence[str], start: int) -> tuple[int, bool] | None:
    """Day, month and year read out as digits: "oh three oh three eighty"."""
    end = start
    while end < len(words) and end - start < MAX_DICTATED_WORDS:
        if not (is_number_word(words[end]) or words[end] in {"double", "and"}):
            break
        end += 1
    for stop in range(end, start + 1, -1):  # longest first
        digits = words_to_digits(words[start:stop])
        if digits is None or len(digits) not in (6, 8):
            continue
        day, month, year = int(digits[:2]), int(digits[2:4]), int(digits[4:])
        if _valid(day, month, year):
            return stop, True
    return None


def _day(words: Sequence[str], start: int) -> tuple[int, int] | None:
    """(day, end) of a day of the month: "third", "twenty first", "3rd", "three", "03"."""
    word = words[start] if start < len(words) else ""
    if word in TENS_BEFORE_ORDINAL and _at(words, start + 1) in ORDINAL_UNITS:
        return TENS_BEFORE_ORDINAL[word] + ORDINAL_UNITS[words[start + 1]], start + 2
    if word in ORDINAL_WORDS:
        return ORDINAL_WORDS[word], start + 1
    if match := _TYPED_ORDINAL.fullmatch(word):
        return int(match.group(1)), start + 1
    for stop in (start + 2, start + 1):
        digits = words_to_digits(words[start:stop]) if stop <= len(words) else None
        if digits is not None and len(digits) <= 2 and 1 <= int(digits) <= 31:
            return int(digits), stop
    return None


def _month(words: Sequence[str], start: int) -> tuple[int, int] | None:
    month = MONTHS.get(_at(words, start).rstrip("."))
    if month is None:
        return None
    end = start + 1
    return month, end + 1 if _at(words, end) == "." else end


def _year(words: Sequence[str], start: int, short: bool) -> tuple[int, int] | None:
    """(year, end) of a year: "nineteen eighty", "two thousand and five", "1980",
    and with ``short`` two digits too ("eighty", "'80")."""
    word = _at(words, start)
    if short and (match := _SHORT_YEAR.fullmatch(word)):
        return int(match.group(1)), start + 1
    end = start
    while end < len(words) and end - start < MAX_YEAR_WORDS:
        if not (is_number_word(words[end]) or (end > start and words[end] in YEAR_JOINERS)):
            break
        end += 1
    for stop in range(end, start, -1):  # longest first
        digits = words_to_digits(words[start:stop])
        if digits is None:
            continue
        if (len(digits) == 4 and int(digits) in YEARS) or (short and len(digits) == 2):
            return int(digits), stop
    return None


def _then_year(words: Sequence[str], end: int) -> tuple[int, bool]:
    """The date's end once an optional year after ``end`` is taken."""
    at = end + 1 if _at(words, end) in {",", "in"} else end  # "the fourth of july in 1976"
    year = _year(words, at, short=True)
    return (year[1], True) if year is not None else (end, False)


def _day_first(words: Sequence[str], start: int) -> tuple[int, bool] | None:
    """ "the third of march nineteen eighty", "3rd March 1980", "three march eighty"."""
    at = start + 1 if words[start] == "the" else start
    day = _day(words, at)
    if day is None:
        return None
    at = day[1] + 1 if _at(words, day[1]) == "of" else day[1]
    month = _month(words, at)
    if month is None or not _valid(day[0], month[0]):
        return None
    return _then_year(words, month[1])


def _month_first(words: Sequence[str], start: int) -> tuple[int, bool] | None:
    """ "march third nineteen eighty", "march the third", "March 3rd, 1980", "march 1980"."""
    month = _month(words, start)
    if month is None:
        return None
    at = month[1] + 1 if _at(words, month[1]) == "the" else month[1]
    day = _day(words, at)
    if day is not None and _valid(day[0], month[0]):
        dated = _then_year(words, day[1])
        # "march two thousand and five": the day reading ("two") stops short of
        # what a year reading takes in; the longer one wins.
        year_only = _year(words, month[1], short=False)
        if year_only is not None and year_only[1] > dated[0]:
            return year_only[1], True
        return dated
    year = _year(words, month[1], short=False)
    return (year[1], True) if year is not None else None


def _year_alone(words: Sequence[str], start: int) -> tuple[int, bool] | None:
    year = _year(words, start, short=False)
    return (year[1], True) if year is not None else None
