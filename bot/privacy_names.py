"""Callers' names: found where the words around them say a name is given.

Where a name is taken (the name itself is redacted, the words around it stay):

* after "my name is", "name's", "my surname is", "in the name of", "under my name",
  "i'm called": "my name is [name] and ...";
* between "this is" or "it's" and "speaking", "calling", "here" or "ringing":
  "hi it's [name] calling";
* before "here" (or "speaking", "calling") at the start of what was said, after
  greetings only: "hello [name] here";
* letters spelled out: after "spelled", "spelt" or a name cue (two or more
  letters), after "that's" or "it's" (three or more), or anywhere (four or more,
  with no number beside them, so postcodes and references keep their letters):
  "that's [name]", "[name]";
* typed text alike: "My name is [name]" for "My name is Margaret O'Neill-Smith".

A name is an optional title ("mrs", "dr") and one to ``MAX_NAME_WORDS`` name words
(with particles such as "van" or "de" between them). A name word is letters
(apostrophes and hyphens inside allowed) that are not in
:data:`bot.privacy_words.COMMON_WORDS`, the words callers ordinarily say, unless
listed in ``NAMES_ALSO_WORDS`` ("bill", "mark"); in typed text a capitalised word
counts too, except at the start of a sentence. So "my name is on the account", "my
name is spelt wrong", "it's calling me", "it's the third time" and "this is about my
order" keep their words. Also kept: a thing's name ("the street name is ..."), "my
name" going on with a function word ("my name may be wrong"), and a word ending in
"ing" before "here" ("it's raining here").
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from bot.nlu.number_words import REPEAT_WORDS, is_number_word
from bot.privacy_words import COMMON_WORDS, FUNCTION_WORDS, NAMES_ALSO_WORDS, Word

MAX_NAME_WORDS = 3
TITLES = frozenset(
    {"mr", "mrs", "ms", "miss", "mx", "dr", "doctor", "sir", "dame", "lady", "lord", "prof"}
)
PARTICLES = frozenset(
    {"van", "von", "de", "der", "den", "du", "da", "di", "del", "della", "la", "le", "bin", "al"}
)
# What follows a name in "this is ... speaking", "it's ... calling", "... here".
AFTER_NAME = frozenset({"speaking", "calling", "here", "ringing", "phoning"})
# What may come before "... here" at the start of a turn.
GREETINGS = frozenset(
    {"hi", "hello", "hiya", "hey", "yes", "yeah", "oh", "ok", "okay", "right", "so", "well"}
    | {"um", "umm", "uh", "er", "erm", "good", "morning", "afternoon", "evening", ",", ".", "!"}
)
# Words before "name" whose owner is a person: "under my name sarah jones".
NAME_OWNERS = frozenset({"my", "his", "her", "their", "our", "'s"})
# Words that make "name" something else's name: "the street name is baker".
NOT_A_PERSON = frozenset(
    {"street", "road", "company", "business", "product", "item", "brand", "file", "shop"}
    | {"store", "model", "network", "wifi", "pet", "dog", "cat", "song", "film", "your"}
    | {"user", "domain", "place", "town", "city", "band", "team", "book", "bank"}
)
NAME_NOUNS = frozenset({"surname", "forename", "firstname", "lastname"})
# Verbs between a name cue and the name: "my name is", "my surname was".
NAME_VERBS = frozenset({"is", "'s", "was", ":", "-"})
SPELLING_CUES = frozenset({"spelled", "spelt", "spelling", "spell", "spells"})
LETTER_JOINERS = frozenset({"-", "'", "dash", "hyphen", "apostrophe"})
# Letters read out that are usually something else.
SPELLED_WORDS = frozenset({"hdmi", "asap", "diy", "ok", "faq", "faqs", "bbc", "itv", "dvla"})
MIN_LETTERS_AFTER_CUE = 2
MIN_LETTERS_AFTER_THATS = 3
MIN_LETTERS_ALONE = 4

_NAME_SHAPE = re.compile(r"[a-z]+(?:'[a-z]+)*")
_SPELLED_TYPED = re.compile(r"[a-z](?:-[a-z])+")

Span = tuple[int, int]


def find_names(words: Sequence[Word]) -> list[Span]:
    """Word index spans [start, end) of callers' names; adjacent ones joined."""
    typed = any(char.isupper() for word in words for char in word.text)
    found = _introduced_names(words, typed)
    # Letters spelled right after a name cue or a name spell that name.
    found += _spelled_names(words, {end for _, end in found} | _cue_starts(words))
    merged: list[Span] = []
    for start, end in sorted(set(found)):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((start, end))
    return merged


def is_name_word(word: Word, typed: bool = False) -> bool:
    """Could this word be (part of) a person's name, given the words callers use?"""
    parts = word.lower.split("-")
    if len(parts) > 1:  # "o'neill-smith", not "t-shirt" or "well-known"
        shapes = all(len(part) > 1 and _NAME_SHAPE.fullmatch(part) for part in parts)
        return shapes and any(_is_name_part(part, word.text, typed) for part in parts)
    return _NAME_SHAPE.fullmatch(word.lower) is not None and _is_name_part(
        word.lower, word.text, typed
    )


def _is_name_part(lower: str, written: str, typed: bool) -> bool:
    if len(lower) < 2 or lower in AFTER_NAME or is_number_word(lower):
        return False
    if lower in NAMES_ALSO_WORDS:
        return True
    if lower in FUNCTION_WORDS:
        return False
    capitalised = written[:1].isupper() and any(char.islower() for char in written)
    return (typed and capitalised) or lower not in COMMON_WORDS


def _at(words: Sequence[Word], index: int) -> str:
    return words[index].lower if 0 <= index < len(words) else ""


def name_end(words: Sequence[Word], start: int, typed: bool = False) -> int:
    """End of the name starting at word ``start``; ``start`` itself when there is none."""
    index = start
    if _at(words, index).rstrip(".") in TITLES:
        index += 2 if _at(words, index + 1) == "." else 1
    count = 0
    end = start
    while index < len(words) and count < MAX_NAME_WORDS:
        word = words[index]
        # A capital letter says nothing at the start of a sentence.
        if is_name_word(word, typed and not _sentence_start(words, index)):
            count += 1
            index += 1
            end = index
            continue
        following = index + 2 if _at(words, index + 1) == "." else index + 1
        joins = word.lower in PARTICLES or _is_initial(word)
        if joins and following < len(words) and is_name_word(words[following], typed):
            index = following
            continue
        break
    return end


def _sentence_start(words: Sequence[Word], index: int) -> bool:
    return index == 0 or words[index - 1].text in {".", "!", "?"}


def _is_initial(word: Word) -> bool:
    return len(word.lower) == 1 and word.lower.isalpha() and word.lower not in {"a", "i"}


def _cue_starts(words: Sequence[Word]) -> set[int]:
    """Where a name may start after "my name is", "name's", "i'm called" and the like."""
    starts = set()
    for index, word in enumerate(words):
        lower, before, after = word.lower, _at(words, index - 1), _at(words, index + 1)
        if before in NOT_A_PERSON:
            continue
        if lower == "name" or lower in NAME_NOUNS:
            # "my name is", "surname:", "in the name of"; or straight on: "under my name".
            verb = after in NAME_VERBS or (after == "of" and lower == "name")
            # Straight on, a function word is the sentence going on: "my name may be wrong".
            straight_on = after not in FUNCTION_WORDS and (
                lower in NAME_NOUNS or _owned(words, index)
            )
            if verb or straight_on:
                starts.add(index + 2 if verb else index + 1)
            continue
        names = lower == "names" and before == "my"  # "my names sarah", as recognised
        called = lower == "called" and (
            before in {"im", "am"} or (before == "'m" and _at(words, index - 2) == "i")
        )
        if names or called:
            starts.add(index + 1)
    return starts


def _owned(words: Sequence[Word], index: int) -> bool:
    """True after "my name", "my husbands name" or "under the name": a person's follows."""
    before, earlier = _at(words, index - 1), _at(words, index - 2)
    if before in NAME_OWNERS or earlier in NAME_OWNERS:
        return True
    return before == "the" and earlier in {"under", "in"}


def _introduced_names(words: Sequence[Word], typed: bool) -> list[Span]:
    found = []
    for start in sorted(_cue_starts(words)):
        end = name_end(words, start, typed)
        if end > start:
            found.append((start, end))
    for start in _presentation_starts(words):
        end = name_end(words, start, typed)
        # "it's raining here", "it's flooding here": a state, not a name.
        if end > start and _at(words, end) in AFTER_NAME and not _at(words, start).endswith("ing"):
            found.append((start, end))
    return found


def _presentation_starts(words: Sequence[Word]) -> list[int]:
    """Where "this is ... speaking", "it's ... calling" and "... here" put a name."""
    starts = []
    for index in range(len(words)):
        pair = (_at(words, index), _at(words, index + 1))
        if pair in {("this", "is"), ("it", "'s"), ("it", "is")}:
            starts.append(index + 2)
        elif pair[0] == "its":
            starts.append(index + 1)
    greeted = 0
    while greeted < len(words) and words[greeted].lower in GREETINGS:
        greeted += 1
    return [*starts, greeted]


# --- spelled names -----------------------------------------------------------


def _spelled_names(words: Sequence[Word], name_starts: set[int]) -> list[Span]:
    found = []
    index = 0
    while index < len(words):
        end, letters = _letters(words, index)
        if letters == 0:
            index += 1
            continue
        if _is_spelled_name(words, index, end, letters, name_starts):
            found.append((index, end))
        index = end
    return found


def _letters(words: Sequence[Word], start: int) -> tuple[int, int]:
    """(end, letter count) of the spelled letters starting at ``start``."""
    index = start
    end = start
    letters = 0
    while index < len(words):
        lower = words[index].lower
        if _SPELLED_TYPED.fullmatch(lower):  # typed "s-m-i-t-h"
            letters += len(lower.replace("-", ""))
        elif _is_letter(lower):
            letters += 1
        elif lower in REPEAT_WORDS and _is_letter(_at(words, index + 1)):
            letters += REPEAT_WORDS[lower]
            index += 1
        elif lower in LETTER_JOINERS and letters and _is_letter(_at(words, index + 1)):
            index += 1
            continue
        else:
            break
        index += 1
        end = index
    return end, letters


def _is_letter(lower: str) -> bool:
    return len(lower) == 1 and "a" <= lower <= "z"


def _is_spelled_name(
    words: Sequence[Word], start: int, end: int, letters: int, name_starts: set[int]
) -> bool:
    before = _at(words, start - 1)
    if before in SPELLING_CUES or start in name_starts:
        return letters >= MIN_LETTERS_AFTER_CUE
    if (_at(words, start - 2), before) in {("that", "'s"), ("it", "'s")} or before in {
        "thats",
        "its",
    }:
        return letters >= MIN_LETTERS_AFTER_THATS
    spelled = "".join(word.lower.replace("-", "") for word in words[start:end])
    if spelled in SPELLED_WORDS or spelled in COMMON_WORDS:
        return False
    # Letters beside a number are a postcode, a reference or an e-mail's.
    beside = (_at(words, start - 1), _at(words, end))
    if any(is_number_word(word) or any(char.isdigit() for char in word) for word in beside):
        return False
    return letters >= MIN_LETTERS_ALONE
