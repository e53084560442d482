"""Replace personal data in caller text with typed placeholders.

Caller text is either recognised speech (lowercase words, numbers as words) or
typed chat (digits and punctuation). ``Redactor.redact`` swaps card numbers,
e-mail addresses, phone numbers, dates of birth, street addresses, UK postcodes
and callers' names for "[card]", "[email]", "[phone]", "[date_of_birth]",
"[address]", "[postcode]" and "[name]", so a stored example such as "my card
[card] was declined" still trains its intent.

Decisions:

* E-mails and phone numbers come from :class:`bot.nlu.spoken.SpokenEntityNormaliser`;
  its order ids are kept, since an order number alone identifies nobody and the
  intent classifier needs it.
* A card is a run of 13-19 digits (words or digits, spaces and dashes allowed)
  that passes the Luhn check; a run that fails it is left alone. The same runs
  also catch typed phone numbers split by dashes or brackets, which the
  normaliser reads as order ids.
* An address is a house number (digits, "22a", or number words up to four digits)
  followed by one to four name words, the last one a street word ("road", "st").
  A number after "a"/"the" is a quantity ("a two hour drive"), not a house number.
  A postcode straight after an address, or after a town name, joins the address.
* A postcode is a complete UK postcode, typed ("sw1a 1aa") or spelled out
  ("n one two a b"). A spoken "o" may be the letter or zero, so both are tried.
* A name is taken only where an introduction says one is given ("my name is",
  "name's", "i'm called", "this is ... speaking", "it's ... calling", "... here" at
  the start of a turn, "in the name of") or where letters are spelled out. It is an
  optional title and one to three name words: words (letters, inner apostrophes and
  hyphens) that are not among the words callers ordinarily say, namely stop words
  and everyday words listed by hand plus every word of the project's training
  examples (:mod:`bot.privacy_words`), unless they are common names as well ("bill", "mark");
  in typed text a capitalised word counts too. So "my name is on the account", "this
  is about my order", "it's calling me" and "this is ridiculous" stay as said, and so
  does "this is sarah" without "speaking", "calling" or "here" after it. Spelled
  letters are a name after "spelled"/"spelt" or a name cue (two or more), after
  "that's"/"it's" (three or more), or alone (four or more, with no number beside
  them: postcodes, references and spelled e-mails keep their letters). Details in
  :mod:`bot.privacy_names`.
* A date of birth is taken only after a cue ("date of birth", "born", "birthday",
  "dob", "d o b"): a spoken, dictated or typed date right after it (a few joining
  words such as "is", "on", "um" allowed), or else the first date with a year within
  eight words. The same date without a cue ("my parcel was due on the third of
  march") trains the delivery intents and stays. Details in
  :mod:`bot.privacy_birth_dates`.
* Where finds overlap, the earlier kind in ``KIND_PRIORITY`` wins; names come last,
  being the least certain.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Sequence
from dataclasses import dataclass

from bot.nlu.number_words import (
    FILLER_WORDS,
    MULTIPLIERS,
    REPEAT_WORDS,
    is_number_word,
    is_single_digit,
    words_to_digits,
)
from bot.nlu.spoken import PLUS_DIGITS_RE, PLUS_WORDS, STOP_WORDS, SpokenEntityNormaliser
from bot.privacy_birth_dates import find_birth_dates
from bot.privacy_names import find_names
from bot.privacy_words import Word, words_of

CARD = "card"
EMAIL = "email"
PHONE = "phone"
DATE_OF_BIRTH = "date_of_birth"
ADDRESS = "address"
POSTCODE = "postcode"
NAME = "name"
KIND_PRIORITY: tuple[str, ...] = (EMAIL, CARD, PHONE, DATE_OF_BIRTH, ADDRESS, POSTCODE, NAME)
# Normaliser entity names that are personal data; "order_id" is deliberately absent.
NORMALISER_KINDS: dict[str, str] = {"email": EMAIL, "phone_number": PHONE}

CARD_DIGITS = range(13, 20)
PHONE_DIGITS = range(10, 14)
MAX_HOUSE_NUMBER_DIGITS = 4
MAX_STREET_NAME_WORDS = 4  # including the street word itself
MAX_TOWN_WORDS = 2  # words allowed between a street and its postcode
MAX_POSTCODE_TOKENS = 7

STREET_WORDS = frozenset(
    {"street", "st", "road", "rd", "avenue", "ave", "lane", "ln", "drive", "dr", "close"}
    | {"way", "court", "ct", "place", "pl", "crescent", "cres", "terrace", "grove"}
    | {"gardens", "square", "sq", "mews", "row", "boulevard", "blvd"}
)
# Words that cannot be part of a street name: function words and units of measure.
NOT_NAME_WORDS = STOP_WORDS | frozenset(
    {"a", "an", "down", "up", "near", "off", "along", "across", "round", "around", "over"}
    | {"past", "either", "each", "every", "other", "same", "next", "last", "these", "those"}
    | {"some", "any", "all", "hour", "hours", "minute", "minutes", "day", "days", "week"}
    | {"weeks", "month", "months", "year", "years", "mile", "miles", "time", "times"}
    | {"item", "items", "pounds", "pound", "pence", "quid", "people", "more", "less"}
)
# Words before a number that make it a quantity ("a two hour drive", "ordered three new road
# bikes") rather than a house number.
QUANTITY_MARKERS = frozenset(
    {"a", "an", "the", "every", "each", "per", "ordered", "bought", "buy", "want", "need"}
    | {"have", "got", "get", "return", "returned", "returning", "received", "sent"}
)
DIGIT_SEPARATORS = frozenset({"-", "–", "(", ")"})

_POSTCODE_RE = re.compile(r"[a-z]{1,2}\d[a-z\d]?\d[a-z]{2}")
_TYPED_HOUSE_NUMBER_RE = re.compile(r"\d{1,4}[a-z]")
_POSTCODE_TOKEN_RE = re.compile(r"[a-z0-9]{1,7}")


@dataclass(frozen=True)
class RedactedSpan:
    """One redacted stretch of the original text, as character offsets [start, end)."""

    kind: str
    start: int
    end: int


@dataclass(frozen=True)
class RedactedText:
    """Caller text with placeholders, and where each placeholder came from."""

    text: str
    spans: tuple[RedactedSpan, ...]


def luhn_valid(digits: str) -> bool:
    """True when a digit string passes the Luhn checksum used by payment cards."""
    if not digits.isdigit():
        return False
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = int(char)
        if position % 2 == 1:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


class Redactor:
    """Finds personal data in caller text; build once and reuse (it holds a spaCy pipeline)."""

    def __init__(self) -> None:
        self._normaliser = SpokenEntityNormaliser()
        # The normaliser's pipeline is spacy.blank("en"); its tokenizer serves our rules too.
        self._nlp = self._normaliser.nlp

    def redact(self, text: str) -> RedactedText:
        found = [
            RedactedSpan(NORMALISER_KINDS[entity.entity], entity.start, entity.end)
            for entity in self._normaliser.extract(text)
            if entity.entity in NORMALISER_KINDS
        ]
        doc = self._nlp.make_doc(text)
        tokens = [token for token in doc if not token.is_space]
        words = [token.lower_ for token in tokens]
        for kind, start, end in find_token_spans(words):
            last = tokens[end - 1]
            found.append(RedactedSpan(kind, tokens[start].idx, last.idx + len(last.text)))
        joined = words_of(doc)
        for kind, finder in ((DATE_OF_BIRTH, find_birth_dates), (NAME, find_names)):
            for start, end in finder(joined):
                found.append(RedactedSpan(kind, joined[start].start, joined[end - 1].end))
        spans = _resolve_overlaps(found)
        parts: list[str] = []
        cursor = 0
        for span in spans:
            parts.append(text[cursor : span.start])
            parts.append(f"[{span.kind}]")
            cursor = span.end
        parts.append(text[cursor:])
        return RedactedText("".join(parts), spans)

    def words(self, text: str) -> list[Word]:
        """The text's words as the name and date-of-birth rules see them."""
        return words_of(self._nlp.make_doc(text))


def _resolve_overlaps(found: Sequence[RedactedSpan]) -> tuple[RedactedSpan, ...]:
    kept: list[RedactedSpan] = []
    for span in sorted(found, key=lambda s: (KIND_PRIORITY.index(s.kind), s.start)):
        if all(span.end <= other.start or span.start >= other.end for other in kept):
            kept.append(span)
    return tuple(sorted(kept, key=lambda s: s.start))


def find_token_spans(words: Sequence[str]) -> list[tuple[str, int, int]]:
    """Cards, typed phones, addresses and postcodes over lowercased words, as (kind, start, end)."""
    found = _find_digit_runs(words)
    postcodes = _find_postcodes(words)
    addresses = _find_addresses(words)
    for index, (_, start, end) in enumerate(addresses):
        for postcode in postcodes:
            between = words[end : postcode[1]]
            if 0 <= len(between) <= MAX_TOWN_WORDS and all(
                word == "," or _is_name_word(word) for word in between
            ):
                addresses[index] = (ADDRESS, start, postcode[2])
                postcodes.remove(postcode)
                break
    return found + addresses + postcodes


def _at(words: Sequence[str], index: int) -> str:
    return words[index] if 0 <= index < len(words) else ""


# --- cards and separated phone numbers ---------------------------------------


def _find_digit_runs(words: Sequence[str]) -> list[tuple[str, int, int]]:
    found: list[tuple[str, int, int]] = []
    index = 0
    while index < len(words):
        end = _digit_run_end(words, index)
        if end == index:
            index += 1
            continue
        match = _classify_digit_run(words, index, end)
        if match is not None:
            found.append(match)
        index = end
    return found


def _digit_run_end(words: Sequence[str], start: int) -> int:
    last = -1
    index = start
    while index < len(words):
        word = words[index]
        typed_plus = index == start and PLUS_DIGITS_RE.fullmatch(word) is not None
        if is_number_word(word) or word in MULTIPLIERS or typed_plus:
            last = index
        elif word in REPEAT_WORDS:
            if not is_single_digit(_at(words, index + 1)):
                break
        elif word in DIGIT_SEPARATORS or word in FILLER_WORDS:
            if last < 0:
                break
        else:
            break
        index += 1
    return last + 1 if last >= 0 else start


def _classify_digit_run(words: Sequence[str], start: int, end: int) -> tuple[str, int, int] | None:
    run = [word for word in words[start:end] if word not in DIGIT_SEPARATORS]
    plus = run[0].startswith("+") or _at(words, start - 1) in PLUS_WORDS
    run[0] = run[0].lstrip("+")
    digits = words_to_digits(run)
    if digits is None:
        return None
    if not plus and len(digits) in CARD_DIGITS and luhn_valid(digits):
        return CARD, start, end
    if len(digits) in PHONE_DIGITS and (plus or digits.startswith("0")):
        if _at(words, start - 1) in PLUS_WORDS or _at(words, start - 1) == "(":
            start -= 1
        return PHONE, start, end
    return None


# --- street addresses --------------------------------------------------------


def _is_name_word(word: str) -> bool:
    bare = word.replace("'", "")
    if not (bare.isascii() and bare.isalpha() and len(bare) > 1) or word in NOT_NAME_WORDS:
        return False
    return not is_number_word(word) and word not in MULTIPLIERS and word not in REPEAT_WORDS


def _is_street_word(word: str) -> bool:
    return word.rstrip(".") in STREET_WORDS


def _find_addresses(words: Sequence[str]) -> list[tuple[str, int, int]]:
    found: list[tuple[str, int, int]] = []
    for index, word in enumerate(words):
        if not _is_street_word(word) or (found and found[-1][2] > index):
            continue
        name_start = index
        lowest = index - MAX_STREET_NAME_WORDS + 1
        while name_start - 1 >= max(lowest, 0) and _is_name_word(words[name_start - 1]):
            name_start -= 1
        number_start = _house_number_start(words, name_start) if name_start < index else None
        if number_start is not None:
            found.append((ADDRESS, number_start, index + 1))
    return found


def _house_number_start(words: Sequence[str], end: int) -> int | None:
    """Start of a house number ending just before word index end, or None."""
    if _TYPED_HOUSE_NUMBER_RE.fullmatch(_at(words, end - 1)):
        start: int | None = end - 1
    else:
        lowest = end
        while lowest > 0 and _is_number_or_joiner(words, lowest - 1):
            lowest -= 1
        start = None
        for candidate in range(lowest, end):  # longest first
            digits = words_to_digits(words[candidate:end])
            if digits is not None and len(digits) <= MAX_HOUSE_NUMBER_DIGITS:
                start = candidate
                break
    if start is None or _at(words, start - 1) in QUANTITY_MARKERS:
        return None
    return start


def _is_number_or_joiner(words: Sequence[str], index: int) -> bool:
    word = words[index]
    if word == "and":  # "one hundred and five"
        return _at(words, index - 1) in MULTIPLIERS
    return is_number_word(word) or word in MULTIPLIERS


# --- postcodes ---------------------------------------------------------------


def _postcode_parts(word: str) -> tuple[str, ...] | None:
    """What one word may contribute to a spelled or typed postcode."""
    if word == "o":
        return ("o", "0")
    if len(word) == 1 and word.isascii() and word.isalpha():
        return (word,)
    if is_number_word(word):  # "four", "fourteen", "twenty", "12"
        digits = words_to_digits([word])
        return (digits,) if digits is not None and len(digits) <= 2 else None
    if _POSTCODE_TOKEN_RE.fullmatch(word) and any(char.isdigit() for char in word):
        return (word,)  # typed "sw1a", "1aa"
    return None


def _is_postcode(parts: Sequence[tuple[str, ...]]) -> bool:
    return any(_POSTCODE_RE.fullmatch("".join(combo)) for combo in itertools.product(*parts))


def _find_postcodes(words: Sequence[str]) -> list[tuple[str, int, int]]:
    parts = [_postcode_parts(word) for word in words]
    found: list[tuple[str, int, int]] = []
    index = 0
    while index < len(words):
        longest = index
        for end in range(index + 1, min(len(words), index + MAX_POSTCODE_TOKENS) + 1):
            window = parts[index:end]
            if any(part is None for part in window):
                break
            if _is_postcode([part for part in window if part is not None]):
                longest = end
        if longest > index:
            found.append((POSTCODE, index, longest))
            index = longest
        else:
            index += 1
    return found
