"""Find order numbers, phone numbers and e-mail addresses in recognised speech.

Input is what a speech recogniser writes: lowercase words, no punctuation,
numbers as words. A blank English spaCy pipeline tokenises the text and one
rule-based component sets ``doc.ents`` (ORDER_ID, PHONE_NUMBER, EMAIL) with the
normalised value on ``Span._.normalised_value``.

Decisions for ambiguous speech:

* Number runs are maximal stretches of number words and digit literals; fillers
  ("um", "uh") inside a run are skipped. How words compose into digits is
  documented in :mod:`bot.nlu.number_words`.
* Phone number: 10-13 digits that start with 0 or follow "plus"/"+", or any
  10-13 digits after a phone cue ("phone", "mobile", "my number", "call me on").
* Order id: 5-9 digits (a leading 0 is kept), unless the nearest cue before
  the run is a phone cue or a money word ("costs", "pounds"), or a currency
  word follows it. "order number" is an order cue, not a phone cue. After an
  order cue a run of 3 or more digits read out one by one is an order id,
  whatever its length, so the dialogue can say what it heard and what it needs.
* Number: any other run of 4 or more digits read out one by one that is not
  money or a phone number: a reference the caller read out (an invoice, a
  tracking number), kept so the bot can read it back rather than ignore it.
  Composed numbers of other lengths ("nine thirty", "twenty twenty four") are
  times and years, not references.
* Misheard digits: inside a number run the recogniser's homophones count as
  digits: "for"/"fore" four, "to"/"too" two, "won" one, "ate" eight ("oh" is
  always zero), in runs of single digits that make five or more with it.
  "for" and "to" count only between digits ("one two three for five"), so
  "check one two three four five for me" and "two to three days" keep their
  words; "won" and "ate" count at a run's edge too.
* E-mail: "<local> at <domain>". The local part is the longest run of words
  before "at" that are not stop words ("is", "my", "email", "the", "um", ...);
  its words are joined with nothing between them unless the caller said
  "dot"/"underscore"/"dash"/"hyphen", so "john smith at ..." -> "johnsmith@...".
  Number words become digits ("mary ninety nine" -> "mary99"); single letters
  are letters, so the "o" in "j o h n" stays a letter. The domain is labels
  joined by "dot"/"period"/"point" and must end in a known top-level domain.
"""

# No "from __future__ import annotations": spaCy builds a pydantic model from the
# factory signature and cannot resolve string annotations.
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import spacy
from spacy.language import Language
from spacy.tokens import Doc, Span

from bot.nlu.number_words import (
    FILLER_WORDS,
    MULTIPLIERS,
    REPEAT_WORDS,
    is_number_word,
    is_single_digit,
    words_to_digits,
)

# The word a learnt alias stands for, by digit.
DIGIT_NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")

ORDER_ID = "ORDER_ID"
PHONE_NUMBER = "PHONE_NUMBER"
EMAIL = "EMAIL"
NUMBER = "NUMBER"
ENTITY_NAMES: dict[str, str] = {
    ORDER_ID: "order_id",
    PHONE_NUMBER: "phone_number",
    EMAIL: "email",
    NUMBER: "number",
}
VALUE_EXTENSION = "normalised_value"
FACTORY_NAME = "spoken_entity_normaliser"

ORDER_DIGITS = range(5, 10)
# Shorter dictated runs are quantities or counting ("one two three"), not
# references; after "order" three digits are already a (wrong) order number.
MIN_REFERENCE_DIGITS = 4
MIN_ORDER_CUED_DIGITS = 3
PHONE_DIGITS = range(10, 14)
# How many words before a number run may hold a cue such as "mobile".
CONTEXT_WINDOW = 6

PHONE_CUES = frozenset(
    {"phone", "mobile", "telephone", "cell", "cellphone", "landline", "tel", "whatsapp"}
)
# Words that make a following "number" something other than a phone number.
ORDER_CUES = frozenset(
    {"order", "reference", "ref", "tracking", "parcel", "invoice", "account", "customer", "case"}
)
CALL_VERBS = frozenset({"call", "ring", "reach", "text", "contact", "phone"})
MONEY_CUES = frozenset(
    {"cost", "costs", "costing", "price", "priced", "paid", "pay", "charged", "charge"}
    | {"refund", "refunded", "spent", "worth", "total", "£", "$", "€"}
)
CURRENCY_WORDS = frozenset(
    {"pounds", "pound", "quid", "pence", "dollars", "dollar", "euros", "euro", "cents"}
)
PLUS_WORDS = frozenset({"plus", "+"})

# What a recogniser writes for a digit it heard inside a number.
MISHEARD_DIGITS: dict[str, str] = {
    "for": "four",
    "fore": "four",
    "to": "two",
    "too": "two",
    "won": "one",
    "ate": "eight",
}
# Rarely anything but a digit next to a number word, so they count at a run's edge too.
MISHEARD_AT_EDGE = frozenset({"won", "ate"})
# A mishearing counts only inside a run of at least this many digits, itself
# included: dictated references, not "two to three days".
MIN_MISHEARD_RUN = 5

DOT_WORDS: dict[str, str] = {"dot": ".", "period": ".", "point": "."}
LOCAL_SEPARATORS: dict[str, str] = {**DOT_WORDS, "underscore": "_", "dash": "-", "hyphen": "-"}
DOMAIN_SEPARATORS: dict[str, str] = {"dash": "-", "hyphen": "-"}
AT_WORDS = frozenset({"at", "@"})
# Words that end an e-mail local part or domain label when walking over them.
STOP_WORDS = FILLER_WORDS | frozenset(
    {"is", "was", "are", "am", "be", "my", "your", "our", "his", "her", "their", "me", "mine"}
    | {"email", "emails", "address", "its", "it's", "it", "'s", "the", "and", "or", "but"}
    | {"at", "to", "on", "in", "of", "for", "from", "with", "by", "as", "that", "that's"}
    | {"this", "here", "there", "please", "thanks", "thank", "you", "yes", "yeah", "yep"}
    | {"no", "ok", "okay", "so", "well", "right", "sure", "just", "like", "then", "also"}
    | {"send", "sent", "write", "reach", "contact", "use", "try", "can", "could", "would"}
    | {"will", "should", "name", "called", "spelt", "spelled", "spell", "registered"}
    | {"under", "think", "hello", "hi", "hey", "i'm", "im"}
)
TLDS = frozenset(
    {"com", "org", "net", "edu", "gov", "mil", "info", "biz", "io", "co", "uk", "ie", "de"}
    | {"fr", "es", "nl", "be", "ch", "eu", "us", "ca", "au", "nz", "jp", "za", "pl", "se"}
    | {"dk", "fi", "pt", "dev", "app", "ai", "tv", "online", "shop", "tech", "xyz"}
)
MAX_LOCAL_WORDS = 24

_LOCAL_RE = re.compile(r"[a-z0-9]+(?:[._-][a-z0-9]+)*")
_LABEL_RE = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")
_TYPED_EMAIL_RE = re.compile(r"[a-z0-9._%+-]+@[a-z0-9-]+(?:\.[a-z0-9-]+)+")
# Typed text keeps "+447700900123" as one token.
PLUS_DIGITS_RE = re.compile(r"\+\d+")


@dataclass(frozen=True)
class SpokenEntity:
    """One entity found in caller text; start/end are character offsets."""

    entity: str
    value: str
    start: int
    end: int
    text: str


@dataclass(frozen=True)
class WordMatch:
    """An entity over word indices [start, end) of a space-free word list."""

    start: int
    end: int
    label: str
    value: str


def match_words(words: Sequence[str]) -> list[WordMatch]:
    """Find all entities in lowercased words; e-mails first so their digits stay inside."""
    matches = _find_emails(words)
    taken = [False] * len(words)
    for match in matches:
        taken[match.start : match.end] = [True] * (match.end - match.start)
    matches.extend(_find_numbers(words, taken))
    return sorted(matches, key=lambda match: match.start)


def _at(words: Sequence[str], index: int) -> str:
    return words[index] if 0 <= index < len(words) else ""


# --- e-mail addresses -------------------------------------------------------


def _find_emails(words: Sequence[str]) -> list[WordMatch]:
    found: list[WordMatch] = []
    floor = 0  # never let a local part reach back into an earlier address
    for index, word in enumerate(words):
        if index < floor:
            continue
        if _TYPED_EMAIL_RE.fullmatch(word):
            found.append(WordMatch(index, index + 1, EMAIL, word))
            floor = index + 1
            continue
        if word not in AT_WORDS:
            continue
        start = _local_part_start(words, index, floor)
        local = _join_spoken(words[start:index], LOCAL_SEPARATORS)
        domain = _parse_domain(words, index + 1)
        if not local or domain is None or not _LOCAL_RE.fullmatch(local):
            continue
        value, end = domain
        found.append(WordMatch(start, end, EMAIL, f"{local}@{value}"))
        floor = end
    return found


def _is_address_word(word: str, separators: dict[str, str]) -> bool:
    if word in LOCAL_SEPARATORS:
        return word in separators
    return word not in STOP_WORDS and word.isascii() and word.isalnum()


def _local_part_start(words: Sequence[str], at_index: int, floor: int) -> int:
    start = at_index
    lowest = max(floor, at_index - MAX_LOCAL_WORDS)
    while start > lowest and _is_address_word(words[start - 1], LOCAL_SEPARATORS):
        start -= 1
    # An address cannot begin with a separator ("dot john at ...").
    while start < at_index and words[start] in LOCAL_SEPARATORS:
        start += 1
    return start


def _is_spoken_digit(words: Sequence[str], index: int) -> bool:
    word = words[index]
    if word == "o":  # a lone "o" inside an address is spelled, not zero
        return False
    if word in REPEAT_WORDS:
        following = _at(words, index + 1)
        return following != "o" and is_single_digit(following)
    return is_number_word(word) or word in MULTIPLIERS


def _join_spoken(words: Sequence[str], separators: dict[str, str]) -> str | None:
    """Join spelled address words: separators to symbols, number words to digits."""
    parts: list[str] = []
    index = 0
    while index < len(words):
        word = words[index]
        following = _at(words, index + 1)
        if word in separators:
            parts.append(separators[word])
            index += 1
        elif word in REPEAT_WORDS and len(following) == 1 and following.isalpha():
            parts.append(following * REPEAT_WORDS[word])  # "double n" -> "nn"
            index += 2
        elif _is_spoken_digit(words, index):
            end = index
            while end < len(words) and _is_spoken_digit(words, end):
                end += 1
            digits = words_to_digits(words[index:end])
            if digits is None:
                return None
            parts.append(digits)
            index = end
        else:
            parts.append(word)
            index += 1
    return "".join(parts)


def _parse_domain(words: Sequence[str], start: int) -> tuple[str, int] | None:
    """Return (domain, end word index) for the longest domain ending in a known TLD."""
    labels: list[tuple[int, int]] = []
    index = start
    while True:
        end = index
        while end < len(words) and _is_address_word(words[end], DOMAIN_SEPARATORS):
            end += 1
        if end == index:
            break
        labels.append((index, end))
        if words[end : end + 1] and words[end] in DOT_WORDS and end + 1 < len(words):
            index = end + 1
            continue
        break
    # The last label may run on into ordinary speech ("dot com thanks"), so the
    # top-level domain is only the first word of the label that holds it.
    for last in range(len(labels) - 1, 0, -1):
        tld_index = labels[last][0]
        if words[tld_index] not in TLDS:
            continue
        names: list[str] = []
        for label_start, label_end in labels[:last]:
            name = _join_spoken(words[label_start:label_end], DOMAIN_SEPARATORS)
            if name is None or not _LABEL_RE.fullmatch(name):
                return None
            names.append(name)
        return ".".join([*names, words[tld_index]]), tld_index + 1
    return None


# --- order and phone numbers ------------------------------------------------


def _find_numbers(words: Sequence[str], taken: list[bool]) -> list[WordMatch]:
    found: list[WordMatch] = []
    index = 0
    while index < len(words):
        end = _run_end(words, taken, index)
        if end == index:
            index += 1
            continue
        match = _classify_run(words, taken, index, end)
        if match is not None:
            found.append(match)
            taken[match.start : match.end] = [True] * (match.end - match.start)
        index = end
    return found


def _run_end(words: Sequence[str], taken: Sequence[bool], start: int) -> int:
    """End (exclusive) of the number run starting at start, or start if none does."""
    last = -1
    index = start
    while index < len(words) and not taken[index]:
        word = words[index]
        typed_plus = index == start and PLUS_DIGITS_RE.fullmatch(word) is not None
        if is_number_word(word) or word in MULTIPLIERS or typed_plus:
            last = index
        elif not _joins_run(words, index, last):
            break
        index += 1
    return last + 1 if last >= 0 else start


def _joins_run(words: Sequence[str], index: int, last: int) -> bool:
    """True for words that may sit inside a number run but never end one."""
    word, following = words[index], _at(words, index + 1)
    if word in REPEAT_WORDS:
        return is_single_digit(following)
    if word == "a":
        return following in MULTIPLIERS
    if word == "and":
        # "and" only joins "hundred and five"; elsewhere it separates numbers.
        after_multiplier = last == index - 1 and _at(words, last) in MULTIPLIERS
        return after_multiplier and is_number_word(following)
    return word in FILLER_WORDS and last >= 0


def _classify_run(
    words: Sequence[str], taken: Sequence[bool], start: int, end: int
) -> WordMatch | None:
    run = list(words[start:end])
    span_start = start
    plus = False
    if run[0].startswith("+"):
        plus, run[0] = True, run[0][1:]
    elif start > 0 and not taken[start - 1] and words[start - 1] in PLUS_WORDS:
        plus, span_start = True, start - 1
    digits = words_to_digits(run)
    if digits is None or not digits.strip("0"):  # "oh oh oh oh oh" is a gasp, not a number
        return None
    cue = _context_cue(words, taken, span_start)
    if len(digits) in PHONE_DIGITS and (plus or digits.startswith("0") or cue == "phone"):
        value = f"+{digits}" if plus else digits
        return WordMatch(span_start, end, PHONE_NUMBER, value)
    if plus or cue in ("phone", "money"):
        return None
    if _at(words, end) in CURRENCY_WORDS:  # "one two three four five pounds"
        return None
    if len(digits) in ORDER_DIGITS:
        return WordMatch(start, end, ORDER_ID, digits)
    # Other lengths only when read out digit by digit: "nine thirty" is a
    # time and "twenty twenty four" a year, but "one one two two three three
    # four four" is a reference.
    if not _dictated(run):
        return None
    if cue == "order" and len(digits) >= MIN_ORDER_CUED_DIGITS:
        return WordMatch(start, end, ORDER_ID, digits)
    if len(digits) >= MIN_REFERENCE_DIGITS:
        return WordMatch(start, end, NUMBER, digits)
    return None


def _dictated(run: Sequence[str]) -> bool:
    """True when every word of a number run is one digit (or "double"/"triple")."""
    return all(
        is_single_digit(word) or word in REPEAT_WORDS or word in FILLER_WORDS or word.isdigit()
        for word in run
    )


def _context_cue(words: Sequence[str], taken: Sequence[bool], start: int) -> str | None:
    """The nearest cue before a run: "phone", "order", "money" or None."""
    for index in range(start - 1, max(-1, start - 1 - CONTEXT_WINDOW), -1):
        if taken[index]:
            break  # cues do not reach across an earlier entity
        word = words[index]
        if word in ORDER_CUES:
            return "order"
        if word in PHONE_CUES:
            return "phone"
        if word == "number":
            return "order" if _at(words, index - 1) in ORDER_CUES else "phone"
        if word in MONEY_CUES or word in CURRENCY_WORDS:
            return "money"
        before = words[max(0, index - 3) : index]
        if word in ("on", "at") and "me" in before and CALL_VERBS.intersection(before):
            return "phone"  # "call me on", "reach me back on"
    return None


# --- spaCy wiring -----------------------------------------------------------


class SpokenEntityComponent:
    """spaCy component: sets doc.ents and each span's normalised value.

    ``digit_aliases`` are words the recogniser writes for a spoken digit ("won"
    for "one", "for" for "four"), learnt from trainers' corrections; one
    counts as its digit only beside another number word, so "waiting for a
    reply" keeps its "for"."""

    def __init__(self, digit_aliases: Mapping[str, str] | None = None) -> None:
        if not Span.has_extension(VALUE_EXTENSION):
            Span.set_extension(VALUE_EXTENSION, default=None)
        self.digit_aliases = dict(digit_aliases or {})

    def __call__(self, doc: Doc) -> Doc:
        # Extra whitespace becomes space tokens; rules look only at words.
        tokens = [token for token in doc if not token.is_space]
        words = with_digit_aliases([token.lower_ for token in tokens], self.digit_aliases)
        words = with_misheard_digits(words)
        spans: list[Span] = []
        for match in match_words(words):
            span = Span(doc, tokens[match.start].i, tokens[match.end - 1].i + 1, label=match.label)
            span._.set(VALUE_EXTENSION, match.value)
            spans.append(span)
        doc.ents = spans
        return doc


def _numeric(word: str) -> bool:
    return word.isdigit() or is_number_word(word)


def with_digit_aliases(words: list[str], aliases: Mapping[str, str]) -> list[str]:
    """Words with each alias that stands beside a number word (or another
    alias that does) replaced by its digit word."""
    if not aliases:
        return words
    result = list(words)
    changed = True
    while changed:  # "won to three": "to" makes "won" a digit once it is one itself
        changed = False
        for index, word in enumerate(result):
            if word not in aliases:
                continue
            beside = (result[index - 1] if index else "", _at(result, index + 1))
            if any(_numeric(other) for other in beside):
                result[index] = aliases[word]
                changed = True
    return result


def with_misheard_digits(words: list[str]) -> list[str]:
    """Words with each common mishearing of a digit inside a number run
    replaced by its digit word: "one two three for five" -> "... four five"."""
    result = list(words)
    changed = True
    while changed:  # "won to three": "to" counts once "won" does
        changed = False
        for index, word in enumerate(result):
            digit = MISHEARD_DIGITS.get(word)
            if digit is None:
                continue
            before = _digits_run(result, index, -1)
            after = _digits_run(result, index, 1)
            beside = (before and after) or ((before or after) and word in MISHEARD_AT_EDGE)
            # Only inside a number as long as a reference: "two to three days" stays.
            if beside and before + after + 1 >= MIN_MISHEARD_RUN:
                result[index] = digit
                changed = True
    return result


def _digits_run(words: Sequence[str], index: int, step: int) -> int:
    """How many single digits (or mishearings of one) stand in a row from
    ``index`` in direction ``step``."""
    count = 0
    index += step
    while 0 <= index < len(words) and (
        is_single_digit(words[index]) or words[index] in MISHEARD_DIGITS
    ):
        count += 1
        index += step
    return count


def learn_digit_aliases(corrections: Sequence[tuple[str, str]]) -> dict[str, str]:
    """Alias words from corrected (words, digits) pairs: where a correction
    has one word per digit, a word that is not a number word stands for its
    digit. Words that disagree between corrections are left out."""
    found: dict[str, set[str]] = {}
    for text, digits in corrections:
        words = text.lower().split()
        if not digits.isdigit() or len(words) != len(digits):
            continue
        for word, digit in zip(words, digits, strict=True):
            if _numeric(word) or not word.isalpha():
                continue
            found.setdefault(word, set()).add(DIGIT_NAMES[int(digit)])
    return {word: names.pop() for word, names in sorted(found.items()) if len(names) == 1}


@Language.factory(FACTORY_NAME, default_config={"digit_aliases": {}})
def create_spoken_entity_component(
    nlp: Language, name: str, digit_aliases: dict[str, str]
) -> SpokenEntityComponent:
    """spaCy factory hook so the component can be added with ``nlp.add_pipe``."""
    return SpokenEntityComponent(digit_aliases)


class SpokenEntityNormaliser:
    """Extracts normalised order ids, phone numbers and e-mails from caller text."""

    def __init__(self, digit_aliases: Mapping[str, str] | None = None) -> None:
        # A blank pipeline: no pretrained model is needed, or available offline.
        self._nlp = spacy.blank("en")
        self._nlp.add_pipe(FACTORY_NAME, config={"digit_aliases": dict(digit_aliases or {})})

    @property
    def nlp(self) -> Language:
        return self._nlp

    def extract(self, text: str) -> list[SpokenEntity]:
        doc = self._nlp(text)
        return [
            SpokenEntity(
                entity=ENTITY_NAMES[ent.label_],
                value=ent._.get(VALUE_EXTENSION),
                start=ent.start_char,
                end=ent.end_char,
                text=ent.text,
            )
            for ent in doc.ents
        ]
