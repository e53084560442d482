"""Finding a caller's order without its number.

The caller gives the e-mail address or phone number on their account; the
bot reads their most recent orders back briefly ("the kettle, ordered on
Thursday") and works out which one they mean from what they say next: an
ordinal ("the second one"), the item ("the kettle"), or the day it was
ordered ("the one from last Tuesday"). Pure functions: no I/O, no clock.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import date

from actions.backend import ORDER_NUMBER_DIGITS, Order
from actions.speech import number_to_words, speak_date, speak_digits

# How many orders are read out; older ones can still be picked by item or day.
MAX_READ_BACK = 4

_ORDINALS = {
    "first": 0,
    "second": 1,
    "third": 2,
    "fourth": 3,
    "fifth": 4,
    "1st": 0,
    "2nd": 1,
    "3rd": 2,
    "4th": 3,
}
# "number two", "option three": a list position said as a number.
_POSITION_CUES = frozenset({"number", "option"})
_POSITION_WORDS = {"one": 0, "two": 1, "three": 2, "four": 3, "five": 4}
_NEWEST = re.compile(r"\b(latest|newest|most recent|last order|recent one)\b")
_LAST_LISTED = re.compile(r"\b(the last one|last of (them|those)|the final one)\b")
_WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
# Words of an item's description that don't tell items apart.
_ITEM_STOP_WORDS = frozenset({"a", "an", "the", "of", "pair", "set", "some", "one", "and", "for"})
_WORD = re.compile(r"[a-z0-9']+")


def heard_wrong_shape(digits: str, say_where: bool = True) -> str:
    """What the bot heard, what an order number looks like, and where it is."""
    shape = f"our order numbers have {number_to_words(ORDER_NUMBER_DIGITS)} digits"
    where = ", and they're in your confirmation email" if say_where else ""
    return f"I heard {speak_digits(digits)}; {shape}{where}."


_NONE_OF_THEM = re.compile(r"\b(none of|neither|not any of|not one of)\b")


def names_none(text: str) -> bool:
    """ "none of those", "it's neither": the caller's order isn't in the list."""
    return _NONE_OF_THEM.search(text.lower()) is not None


def item_name(order: Order) -> str:
    """ "a pair of running shoes" -> "the running shoes"."""
    words = order.items.split()
    while words and words[0].lower() in {"a", "an", "the", "some"}:
        words = words[1:]
    if len(words) > 2 and words[0].lower() in {"pair", "set", "box"} and words[1] == "of":
        words = words[2:]
    return "the " + " ".join(words)


def when_ordered(placed_on: date, today: date) -> str:
    """ "today", "yesterday", "on Thursday" within a week, else the date."""
    days = (today - placed_on).days
    if days <= 0:
        return "today"
    if days == 1:
        return "yesterday"
    if days < 7:
        return f"on {_WEEKDAYS[placed_on.weekday()].capitalize()}"
    return "on " + speak_date(placed_on, today).split(" ", 1)[1]  # "the third of May"


def describe_orders(orders: Sequence[Order], today: date) -> str:
    """The orders read back briefly, most recent first."""
    parts = [f"{item_name(o)}, ordered {when_ordered(o.placed_on, today)}" for o in orders]
    parts = parts[:MAX_READ_BACK]
    if len(parts) > 1:
        parts[-1] = "and " + parts[-1]
    text = "; ".join(parts)
    hidden = len(orders) - MAX_READ_BACK
    if hidden > 0:
        text += f"; and {hidden} older {'order' if hidden == 1 else 'orders'}"
    return text


def _words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def _by_position(words: list[str], text: str, orders: Sequence[Order]) -> list[Order]:
    shown = list(orders[:MAX_READ_BACK])
    for index, word in enumerate(words):
        position = _ORDINALS.get(word)
        if position is None and index and words[index - 1] in _POSITION_CUES:
            position = _POSITION_WORDS.get(word)
        if position is not None:
            return [shown[position]] if position < len(shown) else []
    spoken = [word for word in words if word not in {"the", "um", "er", "erm", "please"}]
    if len(spoken) == 1 and spoken[0] in _POSITION_WORDS:
        # "two", "the one": a place in the list said on its own.
        position = _POSITION_WORDS[spoken[0]]
        return [shown[position]] if position < len(shown) else []
    if _LAST_LISTED.search(text):
        return shown[-1:]
    if _NEWEST.search(text):
        return list(orders[:1])
    return []


def _stem(word: str) -> str:
    return word[:-1] if len(word) > 3 and word.endswith("s") else word


def _by_item(words: list[str], orders: Sequence[Order]) -> list[Order]:
    """The orders sharing most item words with what was said."""
    said = {_stem(word) for word in words}
    shared = [
        len(said & {_stem(w) for w in _words(order.items) if w not in _ITEM_STOP_WORDS})
        for order in orders
    ]
    best = max(shared, default=0)
    return [order for order, count in zip(orders, shared, strict=True) if best and count == best]


def _by_day(words: list[str], orders: Sequence[Order], today: date) -> list[Order]:
    matched: list[Order] = []
    for order in orders:
        days = (today - order.placed_on).days
        said_day = (
            ("today" in words and days == 0)
            or ("yesterday" in words and days == 1)
            or (0 <= days < 14 and _WEEKDAYS[order.placed_on.weekday()] in words)
        )
        if said_day:
            matched.append(order)
    if len(matched) > 1:
        # "on Tuesday" and "last Tuesday" mean the most recent one.
        newest = min((today - o.placed_on).days for o in matched)
        matched = [o for o in matched if (today - o.placed_on).days == newest]
    return matched


def pick_orders(text: str, orders: Sequence[Order], today: date) -> list[Order]:
    """The orders the caller's words point at: one when clear, several when
    ambiguous, none when the words name no order."""
    words = _words(text)
    by_position = _by_position(words, text.lower(), orders)
    if by_position:
        return by_position
    by_item = _by_item(words, orders)
    by_day = _by_day(words, orders, today)
    if by_item and by_day:
        both = [order for order in by_item if order in by_day]
        return both or by_item
    return by_item or by_day
