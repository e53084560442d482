"""Scripted calls for the conversation benchmark, each with what should come of it.

Callers speak as a recogniser writes: lowercase, numbers as words, "um" and
restarts. The demo backend is fresh for each run and the calls run in this
order, so the few that change an order (an address change, a cancellation)
come after every call that asks about the same order.

Outcomes:
- ``resolved``: the bot alone finished the task; every phrase in ``says``
  appears in what it said, and the call was never escalated;
- ``escalated``: the call went to a person for one of ``reasons``.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Script:
    name: str
    kind: str
    lines: tuple[str, ...]
    outcome: str = "resolved"
    says: tuple[str, ...] = ()
    reasons: tuple[str, ...] = field(default_factory=tuple)


def resolved(name: str, kind: str, lines: list[str], *says: str) -> Script:
    return Script(name, kind, tuple(lines), "resolved", tuple(says))


def escalated(name: str, kind: str, lines: list[str], *reasons: str) -> Script:
    return Script(name, kind, tuple(lines), "escalated", (), tuple(reasons))


SCRIPTS: list[Script] = [
    # -- happy paths ------------------------------------------------------------------
    resolved("status", "happy", ["hello", "where is my order", "one two three four five",
             "thank you", "no thats all"], "was shipped with royal mail"),
    resolved("status in one breath", "happy",
             ["hi um can you tell me where order two three four five six is", "no thanks bye"],
             "was delivered on"),
    resolved("late parcel", "happy", ["my parcel is late", "six seven eight nine oh",
             "ok thanks bye"], "running late", "ticket number"),
    resolved("missing parcel", "happy", ["er it says my shipment was delivered but i never "
             "got it", "two three four five six", "thanks goodbye"], "investigation"),
    resolved("return", "happy", ["i want to send something back", "its two three four five six",
             "no thats everything"], "started a return"),
    resolved("return too late", "happy", ["i'd like to return an item",
             "five six seven eight nine", "oh ok bye"], "outside our return window"),
    resolved("refund", "happy", ["has my refund come through",
             "four five six seven eight", "great thanks bye"], "refunded"),
    resolved("invoice", "happy", ["i need to check the invoice for order one two three four "
             "five", "cheers bye"], "we charged"),
    resolved("receipt wording", "happy", ["um i have a question about a charge on my statement",
             "one two three four five", "thanks bye"], "we charged"),
    resolved("password", "happy", ["i cant log in to my account", "jane dot doe at example dot "
             "com", "no thank you"], "password reset"),
    resolved("complaint filed", "happy", ["i want to make a complaint", "the courier was "
             "really rude to my mother at the door", "no thats it"], "filed your complaint"),
    resolved("file a claim", "happy", ["i want to file a claim about the service",
             "the box arrived crushed and the lamp inside was broken", "bye"], "ticket number"),
    resolved("opening hours", "happy", ["what time are you open till", "no bye"],
             "eight in the morning"),
    resolved("payment declined", "happy", ["my card keeps getting declined", "no its fine",
             "bye"], "never taken from your account"),
    resolved("cancelled order status", "happy", ["where is order seven eight nine oh one",
             "bye"], "was cancelled", "refunded"),
    resolved("returned order status", "happy", ["whats happening with order four five six "
             "seven eight", "ok bye"], "was returned to us"),
    resolved("purchase wording", "happy", ["um whats going on with my purchase",
             "one two three four five", "thanks bye"], "was shipped"),
    resolved("shipment wording", "happy", ["has my shipment left yet",
             "eight one two three four", "lovely bye"], "was shipped with dpd"),
    resolved("item wording", "happy", ["the item i ordered hasnt turned up",
             "six seven eight nine oh", "bye"], "running late"),
    resolved("thanks then done", "happy", ["where is my parcel", "nine one two three four",
             "thanks", "nope thats all"], "was shipped with evri"),
    # -- callers without an order number ----------------------------------------------
    resolved("no number by email", "no_number", ["where is my order", "i dont know it",
             "its priya dot shah at example dot com", "the kettle", "thanks bye"],
             "found these orders", "order eight one two three four was shipped"),
    resolved("no number by phone", "no_number", ["my parcel hasnt come", "i havent got the "
             "order number", "oh seven seven double oh nine oh oh seven eight nine",
             "the headphones", "ok bye"], "found these orders", "investigation"),
    resolved("no number ordinal", "no_number", ["where's my stuff", "no idea sorry",
             "priya dot shah at example dot com", "the second one", "bye"],
             "order eight one two three four"),
    resolved("no number by day", "no_number", ["i want to check on my order",
             "i really dont remember it", "priya dot shah at example dot com",
             "the one i ordered today", "bye"], "order eight three four five six"),
    resolved("one order on account", "no_number", ["wheres my order", "i deleted the email",
             "oh seven seven double oh nine oh oh three two one", "thanks bye"],
             "found one order", "garden hose", "was shipped with evri"),
    resolved("no number then remembers", "no_number", ["i want to return something",
             "i dont have the number", "actually hang on its two three four five six",
             "bye"], "started a return"),
    resolved("wrong postcode then right", "no_number", ["i need to change the delivery address",
             "i dont have the order number", "priya dot shah at example dot com", "the blender",
             "m one one a a", "sorry b s one five a b", "nine mill lane bristol b s one five a b",
             "thanks bye"], "doesn't match", "will now be delivered to"),
    resolved("no number cancel", "no_number", ["cancel my order please", "i dont know the "
             "number", "priya dot shah at example dot com", "the blender",
             "its b s one five a b", "yes", "bye"], "postcode", "is cancelled"),
    escalated("no number no account either", "no_number", ["where is my order",
              "i dont know", "i dont know that either"], "no_progress"),
    escalated("none of those", "no_number", ["where is my parcel", "no idea",
              "priya dot shah at example dot com", "none of those"], "no_progress"),
    # -- corrections and numbers of other shapes ---------------------------------------
    resolved("wrong then right number", "correction", ["where is my order",
             "nine eight seven six five", "sorry its one two three four five", "bye"],
             "can't find order", "was shipped"),
    resolved("long reference read back", "correction", ["cancel my order it is one two three "
             "four five six seven eight", "oh sorry three four five six seven", "no",
             "bye"], "i heard one two three four five six seven eight", "has not been cancelled"),
    resolved("misheard digits", "correction", ["where is order one two three for five",
             "bye"], "was shipped with royal mail"),
    resolved("won and ate", "correction", ["check order won two three four five please",
             "bye"], "was shipped"),
    resolved("bare number first", "correction", ["two three four five six",
             "can i return it", "bye"], "what would you like to do with it", "started a return"),
    resolved("tracking number read back", "correction", ["um where is my parcel",
             "the tracking number is one one two two three three four four five five",
             "oh its six seven eight nine oh", "bye"], "i heard", "running late"),
    # -- changes of mind and second questions ------------------------------------------
    resolved("status then return", "second_question", ["where is order two three four five six",
             "can i return it", "bye"], "was delivered", "started a return"),
    resolved("two orders", "second_question", ["where is order one two three four five",
             "and where is order six seven eight nine oh", "bye"], "royal mail", "evri"),
    resolved("status then password", "second_question", ["wheres order one two three four "
             "five", "also i forgot my password", "john dot smith at example dot com", "bye"],
             "was shipped", "password reset"),
    resolved("refund then hours", "second_question", ["refund for order seven eight nine oh one",
             "what are your opening hours", "no thanks"], "refunded", "eight in the morning"),
    resolved("complaint then status", "second_question", ["i want to complain",
             "the delivery driver threw my parcel over the fence", "where is order one two "
             "three four five", "bye"], "filed your complaint", "was shipped"),
    resolved("cancel then keep", "change_of_mind", ["i want to cancel order three four five "
             "six seven", "no actually i'll keep it", "bye"], "has not been cancelled"),
    resolved("address change", "change_of_mind", ["i need to change the delivery address",
             "three four five six seven", "twenty two mill lane sheffield s one two ab",
             "thanks bye"], "will now be delivered to"),
    resolved("cancel after another task", "second_question", ["where is order three four five "
             "six seven", "can you cancel it", "yes please", "no thats all"], "is cancelled"),
    resolved("status after cancelling", "second_question", ["where is order three four five six "
             "seven", "bye"], "was cancelled"),
    # -- off topic -----------------------------------------------------------------------
    resolved("weather", "off_topic", ["whats the weather doing tomorrow", "oh ok bye"],
             "can't help with that"),
    resolved("recipe then order", "off_topic", ["how long do i cook a chicken for",
             "ok where is order one two three four five", "bye"], "can't help with that",
             "was shipped"),
    resolved("flight", "off_topic", ["my flight to spain has been delayed", "right bye"],
             "can't help with that"),
    resolved("bank", "off_topic", ["i need to transfer money to my savings account", "bye"],
             "can't help with that"),
    resolved("tax", "off_topic", ["how do i fill in my self assessment tax return", "goodbye"],
             "can't help with that"),
    resolved("energy bill", "off_topic", ["my gas bill is far too high", "ok bye"],
             "can't help with that"),
    resolved("doctor", "off_topic", ["i need an appointment with my gp", "bye"],
             "can't help with that"),
    resolved("football", "off_topic", ["who won the football last night", "fine bye"],
             "can't help with that"),
    escalated("off topic twice", "off_topic", ["can you book me a hotel in paris",
               "then can you get me a train ticket"], "repeated_fallback"),
    # -- anger and serious complaints --------------------------------------------------
    escalated("frustrated", "anger", ["where is my order its ridiculous",
              "this is useless i've been waiting for weeks"], "caller_frustrated"),
    escalated("solicitor", "anger", ["i want to make a complaint",
              "the heater you sold me caught fire and i'm calling my solicitor"],
              "complaint", "caller_frustrated"),
    escalated("angry about late parcel", "anger", ["my parcel is late again this is "
              "ridiculous", "six seven eight nine oh", "thats useless i want it today"],
              "caller_frustrated"),
    # -- people who want a person --------------------------------------------------------
    escalated("person first", "wants_person", ["can i speak to a real person please"],
              "explicit_request"),
    escalated("person mid form", "wants_person", ["where is my order",
              "actually just put me through to someone"], "explicit_request"),
    escalated("robot then person", "wants_person", ["am i talking to a robot", "yes"],
              "explicit_request"),
    escalated("callback", "wants_person", ["can someone call me back", "oh seven seven double oh "
              "nine oh oh four five six"], "callback_requested"),
    escalated("billing team", "wants_person", ["my payment was declined", "yes please"],
              "explicit_request"),
]  # fmt: skip
