"""Actions that steer the call itself: hand-over, fallback and repeat.

Also holds the small pieces of conversation state the form and task actions
share: the failed-answer counter and the escalation slot.
"""

from __future__ import annotations

import logging
from typing import Any

from rasa_sdk import Action, Tracker
from rasa_sdk.events import EventType, SlotSet
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.types import DomainDict

logger = logging.getLogger(__name__)

FAILED_ATTEMPTS = "failed_attempts"
ESCALATION_REASON = "escalation_reason"
# The same question asked this many times without progress goes to a person.
MAX_FAILED_ATTEMPTS = 3
# Two misunderstood or off-topic requests in a row go to a person.
MAX_FALLBACKS = 2
FALLBACK_INTENTS = frozenset({"nlu_fallback", "out_of_scope"})
# Intents a caller may use while a form waits for an answer; rules handle them.
INTERRUPTION_INTENTS = frozenset(
    {"request_human", "request_callback", "repeat", "goodbye", "bot_challenge"}
)

NOTHING_SAID_YET = "I haven't said anything yet. How can I help you?"


def failed_attempts(tracker: Tracker) -> int:
    """The failed-answer counter as an int (the slot is a float, maybe unset)."""
    value = tracker.get_slot(FAILED_ATTEMPTS)
    try:
        return int(float(value)) if value is not None else 0
    except (TypeError, ValueError):
        return 0


def out_of_attempts(tracker: Tracker) -> bool:
    return failed_attempts(tracker) >= MAX_FAILED_ATTEMPTS


def latest_intent(tracker: Tracker) -> str | None:
    intent = tracker.latest_message.get("intent") or {}
    return intent.get("name")


def latest_entity(tracker: Tracker, name: str) -> str | None:
    """The first value of an entity in the caller's latest message."""
    value = next(tracker.get_latest_entity_values(name), None)
    return None if value is None else str(value)


def slot_before_message(tracker: Tracker, name: str) -> Any:
    """A slot's value before the caller's latest message was taken in."""
    events = list(tracker.events)
    last_user = max((i for i, e in enumerate(events) if e.get("event") == "user"), default=0)
    value = None
    for event in events[:last_user]:
        if event.get("event") == "slot" and event.get("name") == name:
            value = event.get("value")
    return value


def escalate(dispatcher: CollectingDispatcher, reason: str) -> list[EventType]:
    """Tells the caller they're being put through and records why.

    The voice front end watches `escalation_reason` to transfer the call.
    """
    dispatcher.utter_message(response=f"utter_escalate_{reason}")
    return [SlotSet(ESCALATION_REASON, reason), SlotSet(FAILED_ATTEMPTS, 0.0)]


def _user_intent(event: dict[str, Any]) -> str | None:
    parse_data = event.get("parse_data") or {}
    intent = parse_data.get("intent") or {}
    return intent.get("name")


class ActionEscalate(Action):
    """The caller asked for a person."""

    def name(self) -> str:
        return "action_escalate"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> list[EventType]:
        return escalate(dispatcher, "explicit_request")


def consecutive_fallbacks(tracker: Tracker) -> int:
    """How many of the latest user messages in a row were not understood or off topic."""
    count = 0
    for event in reversed(tracker.applied_events()):
        kind = event.get("event")
        if kind == "session_started":
            break  # a new call starts with a clean slate
        if kind != "user":
            continue
        if _user_intent(event) not in FALLBACK_INTENTS:
            break
        count += 1
    return count


class ActionFallback(Action):
    """Asks the caller to rephrase, or hands over after repeated misunderstandings."""

    def name(self) -> str:
        return "action_fallback"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> list[EventType]:
        if consecutive_fallbacks(tracker) >= MAX_FALLBACKS:
            return escalate(dispatcher, "repeated_fallback")
        if latest_intent(tracker) == "out_of_scope":
            dispatcher.utter_message(response="utter_out_of_scope")
        else:
            dispatcher.utter_message(response="utter_please_rephrase")
        return []


def last_bot_turn(tracker: Tracker) -> list[str]:
    """Texts the bot said between the caller's last two messages.

    The caller's latest message is the request to repeat, so the turn before it
    is what they want to hear again. Before the caller's first message, the
    greeting counts as the bot's turn.
    """
    texts: list[str] = []
    users_seen = 0
    for event in reversed(tracker.applied_events()):
        kind = event.get("event")
        if kind == "user":
            users_seen += 1
            if users_seen == 2:
                break
        elif kind == "bot" and users_seen == 1 and event.get("text"):
            texts.append(event["text"])
    texts.reverse()
    return texts


class ActionRepeat(Action):
    """Says the bot's last turn again, word for word."""

    def name(self) -> str:
        return "action_repeat"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> list[EventType]:
        texts = last_bot_turn(tracker)
        if not texts:
            dispatcher.utter_message(text=NOTHING_SAID_YET)
        for text in texts:
            dispatcher.utter_message(text=text)
        return []


# Responses that end with "is there anything else I can help you with?":
# after them a plain no means the caller is done.
ANYTHING_ELSE_QUESTIONS = frozenset(
    {
        "utter_anything_else",
        "utter_anything_at_all",
        "utter_you_are_welcome",
        "utter_opening_hours",
    }
)


def last_bot_response(tracker: Tracker) -> str | None:
    """The domain response the bot said last, if its last words were one."""
    for event in reversed(tracker.events):
        if event.get("event") == "bot":
            return (event.get("metadata") or {}).get("utter_action")
    return None


class ActionCallerDeclined(Action):
    """A plain "no" with no yes-or-no question pending.

    Only after "anything else?" does it mean the caller is done; anywhere else
    the bot asks once more what they need rather than hanging up on them.
    """

    def name(self) -> str:
        return "action_caller_declined"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> list[EventType]:
        if last_bot_response(tracker) in ANYTHING_ELSE_QUESTIONS:
            dispatcher.utter_message(response="utter_goodbye")
        else:
            dispatcher.utter_message(response="utter_anything_at_all")
        return []
