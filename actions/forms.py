"""Slot validation for the four forms, with the shared "no progress" rule.

`failed_attempts` counts answers in a row that did not fill the question being
asked. A caller who gets nowhere three times is handed to a person: the
validation sets `escalation_reason` and ends the form, and the form's
completion action does the hand-over.

Interruptions (asking for a person, a callback, a repeat, whether this is a
machine, or saying goodbye) are never counted and never produce events, so
Rasa rejects the form and the interruption rules run.
"""

from __future__ import annotations

import logging
import re
from abc import ABC, abstractmethod
from typing import Any

from rasa_sdk import Tracker
from rasa_sdk.events import EventType, SlotSet
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.forms import REQUESTED_SLOT, FormValidationAction
from rasa_sdk.types import DomainDict

from actions.backend import ORDER_NUMBER_DIGITS, BackendError, Order, open_backend
from actions.conversation import (
    ESCALATION_REASON,
    FAILED_ATTEMPTS,
    INTERRUPTION_INTENTS,
    MAX_FAILED_ATTEMPTS,
    failed_attempts,
    latest_entity,
    latest_intent,
    out_of_attempts,
    slot_before_message,
)
from actions.lookup import (
    describe_orders,
    heard_wrong_shape,
    item_name,
    names_none,
    pick_orders,
)
from actions.speech import (
    digits_from_speech,
    email_from_speech,
    postcode_from_speech,
    speak_digits,
    speak_email,
    speak_phone,
)

logger = logging.getLogger(__name__)

# Extraction results the SDK would drop (they are not form slots) but we need.
_BOOKKEEPING_SLOTS = frozenset({FAILED_ATTEMPTS, ESCALATION_REASON, "order_lookup"})
# Actions that may sit between the caller's message and a fresh validation.
_TURN_PLUMBING = frozenset({"action_listen", "action_extract_slots"})

Slots = dict[str, Any]


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, list | tuple) else [value]


def _mapping_fits(mapping: dict[str, Any], tracker: Tracker) -> bool:
    """Whether one domain slot mapping would take a value from the latest message."""
    intent = latest_intent(tracker)
    wanted = _as_list(mapping.get("intent"))
    if (wanted and intent not in wanted) or intent in _as_list(mapping.get("not_intent")):
        return False
    kind = mapping.get("type")
    if kind == "from_entity":
        entities = tracker.latest_message.get("entities") or []
        return any(e.get("entity") == mapping.get("entity") for e in entities)
    if kind == "from_text":
        return bool(tracker.latest_message.get("text"))
    return kind in {"from_intent", "from_trigger_intent"}


def answered_this_turn(slot: str, tracker: Tracker, domain: DomainDict) -> bool:
    """Whether the caller's latest message gave the slot a value (valid or not)."""
    # Rasa appends the slot candidates it extracted after the form's events.
    if slot in tracker.slots_to_validate():
        return True
    mappings = (domain.get("slots", {}).get(slot) or {}).get("mappings") or []
    return any(_mapping_fits(mapping, tracker) for mapping in mappings)


def _drop_candidates(tracker: Tracker, slots: set[str]) -> None:
    """Withdraws slot candidates so the SDK doesn't validate them.

    On activation Rasa offers every required slot that already has a value as a
    candidate, including stale values the form is about to clear.
    """
    start = len(tracker.events)
    while start and tracker.events[start - 1].get("event") == "slot":
        start -= 1
    tracker.events[start:] = [e for e in tracker.events[start:] if e.get("name") not in slots]


def _say(*sentences: str | None) -> str:
    return " ".join(s for s in sentences if s)


class HotlineFormValidation(FormValidationAction, ABC):
    """Shared behaviour of the hotline's forms. Abstract, so it isn't registered."""

    @abstractmethod
    def name(self) -> str: ...

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> list[EventType]:
        first_message = len(dispatcher.messages)
        try:
            return await self._validate(dispatcher, tracker, domain)
        except BackendError:
            logger.exception("%s: the backend failed", self.name())
            # Half-finished explanations would only confuse the caller.
            del dispatcher.messages[first_message:]
            dispatcher.utter_message(response="utter_escalate_action_failure")
            return [SlotSet(ESCALATION_REASON, "action_failure"), SlotSet(REQUESTED_SLOT, None)]

    async def _validate(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> list[EventType]:
        events: list[EventType] = []
        if tracker.get_slot(REQUESTED_SLOT) is None:
            # The form is starting (Rasa passes no requested slot on activation):
            # trouble in an earlier form or a stale answer must not carry over.
            fresh = self.fresh_start_slots()
            for slot, value in fresh.items():
                if tracker.get_slot(slot) != value:
                    tracker.slots[slot] = value
                    events.append(SlotSet(slot, value))
            _drop_candidates(tracker, set(fresh))
        extraction = await self.get_extraction_events(dispatcher, tracker, domain)
        tracker.add_slots(extraction)
        validation = await self._extract_validation_events(dispatcher, tracker, domain)
        # The SDK only returns extracted form slots; the counter must survive too.
        kept = [event for event in extraction if event.get("name") in _BOOKKEEPING_SLOTS]
        return events + kept + validation

    def fresh_start_slots(self) -> Slots:
        return {FAILED_ATTEMPTS: 0.0}

    async def required_slots(
        self,
        domain_slots: list[str],
        dispatcher: CollectingDispatcher,
        tracker: Tracker,
        domain: DomainDict,
    ) -> list[str]:
        # No slots left to fill ends the form; the completion action escalates.
        if out_of_attempts(tracker):
            return []
        return await self.form_slots(list(domain_slots), tracker)

    async def form_slots(self, domain_slots: list[str], tracker: Tracker) -> list[str]:
        return domain_slots

    # -- counting failed answers ------------------------------------------

    def _fresh_answer(self, tracker: Tracker) -> bool:
        """True when the form runs right after the caller spoke.

        When the form resumes after an interruption was handled, the caller's
        latest message was already dealt with and must not be counted again.
        """
        own_names = {self.name(), self.form_name()} | _TURN_PLUMBING
        for event in reversed(tracker.events):
            kind = event.get("event")
            if kind == "user":
                return True
            if kind == "action" and event.get("name") not in own_names:
                return False
        return False

    def _count_failure(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, reason: str, hint: str | None
    ) -> Slots:
        count = failed_attempts(tracker) + 1
        if count >= MAX_FAILED_ATTEMPTS:
            # No "please try again" when we are about to hand over.
            dispatcher.utter_message(text=reason)
            return {
                FAILED_ATTEMPTS: float(count),
                ESCALATION_REASON: "no_progress",
                REQUESTED_SLOT: None,
            }
        dispatcher.utter_message(text=_say(reason, hint))
        return {FAILED_ATTEMPTS: float(count)}

    def no_answer(
        self,
        slot: str,
        reason: str,
        dispatcher: CollectingDispatcher,
        tracker: Tracker,
        domain: DomainDict,
    ) -> Slots:
        """For extract_<slot>: counts a fresh answer that didn't address the question."""
        if (
            tracker.get_slot(REQUESTED_SLOT) != slot
            or latest_intent(tracker) in INTERRUPTION_INTENTS
            or not self._fresh_answer(tracker)
            or answered_this_turn(slot, tracker, domain)
        ):
            return {}
        intent = latest_intent(tracker)
        if intent == "dont_know":
            return self.hand_over(dispatcher)
        if intent in self.changes_of_task(domain) and intent != slot_before_message(
            tracker, "task"
        ):
            # Another task for the same question (the task slot follows the
            # intent): asked again, not counted, no "didn't catch that".
            return {FAILED_ATTEMPTS: float(failed_attempts(tracker))}
        if intent == "out_of_scope":
            reason = OUT_OF_SCOPE
        return self._count_failure(dispatcher, tracker, reason, None)

    def changes_of_task(self, domain: DomainDict) -> frozenset[str]:
        """Intents that change what the form is for rather than fail to answer it."""
        return frozenset()

    def hand_over(self, dispatcher: CollectingDispatcher) -> Slots:
        """The caller can't give what the form needs: a person takes over
        (the form's completion action says so and escalates)."""
        dispatcher.utter_message(text="No problem.")
        return {
            FAILED_ATTEMPTS: float(MAX_FAILED_ATTEMPTS),
            ESCALATION_REASON: "no_progress",
            REQUESTED_SLOT: None,
        }

    def invalid(
        self,
        slot: str,
        dispatcher: CollectingDispatcher,
        tracker: Tracker,
        reason: str,
        hint: str | None = None,
    ) -> Slots:
        """For validate_<slot>: rejects a value; counts it if it answered the question."""
        if tracker.get_slot(REQUESTED_SLOT) == slot:
            return {slot: None, **self._count_failure(dispatcher, tracker, reason, hint)}
        # A value offered before we asked (say, at the start) isn't a failed answer.
        dispatcher.utter_message(text=_say(reason, hint))
        return {slot: None}

    def accept(self, tracker: Tracker, **slots: Any) -> Slots:
        """A valid answer: stores it and clears the failure count."""
        if failed_attempts(tracker):
            slots[FAILED_ATTEMPTS] = 0.0
        return slots


# -- order form --------------------------------------------------------------

_NUMBER_WORDS = frozenset(
    "one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
    "fifteen sixteen seventeen eighteen nineteen twenty thirty forty fifty sixty seventy "
    "eighty ninety hundred".split()
)
# Extra questions the order form asks for some tasks, if the order is still processing.
_TASK_SLOTS = {"cancel_order": "confirm_cancel", "change_address": "new_address"}
# Questions asked only to find an order without its number.
_LOOKUP_SLOTS = ("account_contact", "order_choice")
_LOOKUP_STATE = ("order_lookup", "order_candidates", "order_list")
# Answers to "what's your order number?" that mean "I haven't got it".
_NO_NUMBER_INTENTS = frozenset({"dont_know", "deny"})
NO_ORDER_NUMBER = "Sorry, I didn't catch an order number."
OUT_OF_SCOPE = "Sorry, I can't help with that on this line."
# Changes to an order found by the account, not by its number, need one more check.
_CHECKED_TASKS = frozenset({"cancel_order", "change_address"})
NO_POSTCODE_MATCH = "Sorry, that postcode doesn't match the order's delivery address."
MIN_POSTCODE_CHARS = 5  # the shortest UK postcode, "M1 1AA"


NO_CONTACT = "Sorry, I didn't catch an email address or a phone number."
NO_NUMBER_OFFER = "If you don't have it, I can find your order with your email or phone number."
NEED_FULL_ADDRESS = "Sorry, I need the full address, with the house number and postcode."


def looks_like_address(text: str) -> bool:
    words = re.findall(r"[\w']+", text.lower())
    has_number = any(any(c.isdigit() for c in w) or w in _NUMBER_WORDS for w in words)
    return len(words) >= 3 and has_number


class ValidateOrderForm(HotlineFormValidation):
    def name(self) -> str:
        return "validate_order_form"

    def changes_of_task(self, domain: DomainDict) -> frozenset[str]:
        # The tasks the order form serves: the values of the task slot.
        return frozenset((domain.get("slots", {}).get("task") or {}).get("values") or [])

    def fresh_start_slots(self) -> Slots:
        # A confirmation or address left from an interrupted form must be
        # asked again; so must a search for an order by account.
        fresh: Slots = {"confirm_cancel": None, "new_address": None, "security_postcode": None}
        fresh.update({slot: None for slot in (*_LOOKUP_SLOTS, *_LOOKUP_STATE)})
        return {**super().fresh_start_slots(), **fresh}

    async def form_slots(self, domain_slots: list[str], tracker: Tracker) -> list[str]:
        # The domain lists every slot the order form may ask for; the task and
        # the order's state decide which of the task-specific ones it asks,
        # and a caller without the order number is asked for their account
        # instead.
        skipped = {*_TASK_SLOTS.values(), *_LOOKUP_SLOTS, "security_postcode"}
        base = [slot for slot in domain_slots if slot not in skipped]
        task = str(tracker.get_slot("task"))
        if tracker.get_slot("order_lookup"):
            base = [*_LOOKUP_SLOTS, *base]
            if task in _CHECKED_TASKS:
                # Knowing an e-mail address is not enough to change an order.
                base.append("security_postcode")
        extra = _TASK_SLOTS.get(task)
        order_id = tracker.get_slot("order_id")
        if extra and order_id:
            order = open_backend().find_order(str(order_id))
            if order is not None and order.status == "processing":
                return [*base, extra]
        return base

    def extract_order_id(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> Slots:
        if (
            tracker.get_slot(REQUESTED_SLOT) == "order_id"
            and self._fresh_answer(tracker)
            and latest_intent(tracker) not in INTERRUPTION_INTENTS
        ):
            # A reference of another shape answers the question too: it is
            # read back with what the bot needs.
            number = latest_entity(tracker, "number")
            if number and not latest_entity(tracker, "order_id"):
                return {"order_id": number}
            if latest_intent(tracker) in _NO_NUMBER_INTENTS and not answered_this_turn(
                "order_id", tracker, domain
            ):
                if tracker.get_slot("order_lookup") is False:
                    # A search by account was tried and left already.
                    return self.hand_over(dispatcher)
                return {"order_lookup": True}
        return self.no_answer("order_id", NO_ORDER_NUMBER, dispatcher, tracker, domain)

    # -- finding the order by the caller's account --------------------------

    def extract_account_contact(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> Slots:
        if tracker.get_slot(REQUESTED_SLOT) != "account_contact" or not self._fresh_answer(tracker):
            return {}
        if latest_entity(tracker, "order_id"):
            # The caller found the number after all: no search needed.
            return {"order_lookup": False}
        contact = latest_entity(tracker, "email") or latest_entity(tracker, "phone_number")
        if contact:
            return {"account_contact": contact}
        if latest_intent(tracker) in _NO_NUMBER_INTENTS:
            return self.hand_over(dispatcher)
        return self.no_answer("account_contact", NO_CONTACT, dispatcher, tracker, domain)

    def validate_account_contact(
        self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> Slots:
        contact = str(value or "")
        backend = open_backend()
        if "@" in contact:
            customer, spoken = backend.find_customer_by_email(contact), speak_email(contact)
        else:
            customer, spoken = backend.find_customer_by_phone(contact), speak_phone(contact)
        if customer is None:
            return self.invalid(
                "account_contact",
                dispatcher,
                tracker,
                f"I can't find an account with {spoken}.",
                "Please check it and say it again, or ask for a colleague.",
            )
        orders = backend.orders_of(customer)
        if not orders:
            return self.invalid(
                "account_contact",
                dispatcher,
                tracker,
                f"I found your account, but there are no orders on {spoken}.",
                "If you ordered with another email address or phone number, please tell me that.",
            )
        ids = [order.order_id for order in orders]
        if len(orders) == 1:
            only = orders[0]
            dispatcher.utter_message(
                text=f"I found one order on your account: {item_name(only)}, "
                f"order {speak_digits(only.order_id)}."
            )
            return self.accept(
                tracker,
                account_contact=contact,
                order_candidates=ids,
                order_choice=only.order_id,
                order_id=only.order_id,
                order_spoken=speak_digits(only.order_id),
            )
        return self.accept(
            tracker,
            account_contact=contact,
            order_candidates=ids,
            order_list=describe_orders(orders, backend.today()),
        )

    def extract_order_choice(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> Slots:
        if tracker.get_slot(REQUESTED_SLOT) != "order_choice" or not self._fresh_answer(tracker):
            return {}
        if latest_intent(tracker) in INTERRUPTION_INTENTS:
            return {}
        text = tracker.latest_message.get("text") or ""
        if names_none(text):
            # None of those: a colleague can look further.
            return self.hand_over(dispatcher)
        return {"order_choice": latest_entity(tracker, "order_id") or text}

    def validate_order_choice(
        self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> Slots:
        backend = open_backend()
        ids = [str(i) for i in tracker.get_slot("order_candidates") or []]
        orders = [o for o in (backend.find_order(i) for i in ids) if o is not None]
        said = str(value or "")
        chosen: list[Order]
        if said.isdigit() and len(said) < ORDER_NUMBER_DIGITS:
            # "2": a place in the list read out.
            position = int(said) - 1
            chosen = [orders[position]] if 0 <= position < len(orders) else []
        elif said.isdigit():
            # An order number said outright, listed or not.
            found = backend.find_order(said)
            chosen = [found] if found is not None else []
        else:
            chosen = pick_orders(said, orders, backend.today())
        if not chosen and latest_intent(tracker) in _NO_NUMBER_INTENTS:
            # "No", "I don't know": it isn't one of those.
            return {"order_choice": None, **self.hand_over(dispatcher)}
        if len(chosen) != 1:
            reason = (
                "Sorry, more than one order matches that."
                if chosen
                else "Sorry, I didn't catch which order you mean."
            )
            hint = "You can say the item, or first, second or third."
            return self.invalid("order_choice", dispatcher, tracker, reason, hint)
        order_id = chosen[0].order_id
        return self.accept(
            tracker,
            order_choice=order_id,
            order_id=order_id,
            order_spoken=speak_digits(order_id),
        )

    def extract_confirm_cancel(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> Slots:
        reason = "Sorry, I didn't catch a yes or a no."
        return self.no_answer("confirm_cancel", reason, dispatcher, tracker, domain)

    def extract_new_address(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> Slots:
        return self.no_answer("new_address", NEED_FULL_ADDRESS, dispatcher, tracker, domain)

    def validate_order_id(
        self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> Slots:
        digits = digits_from_speech(str(value)) if value is not None else None
        if not digits:
            return self.invalid("order_id", dispatcher, tracker, NO_ORDER_NUMBER)
        spoken = speak_digits(digits)
        if len(digits) != ORDER_NUMBER_DIGITS:
            # The question asked again says where to find the number.
            heard = heard_wrong_shape(digits, say_where=False)
            return self.invalid("order_id", dispatcher, tracker, heard, NO_NUMBER_OFFER)
        if open_backend().find_order(digits) is None:
            return self.invalid(
                "order_id",
                dispatcher,
                tracker,
                f"I can't find order {spoken}.",
                "Please check the number and say it again.",
            )
        return self.accept(tracker, order_id=digits, order_spoken=spoken)

    def validate_confirm_cancel(
        self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> Slots:
        if isinstance(value, str) and value.lower() in {"true", "false"}:
            value = value.lower() == "true"
        if not isinstance(value, bool):
            reason = "Sorry, I didn't catch a yes or a no."
            return self.invalid("confirm_cancel", dispatcher, tracker, reason)
        return self.accept(tracker, confirm_cancel=value)

    def validate_new_address(
        self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> Slots:
        if not isinstance(value, str) or not looks_like_address(value):
            return self.invalid("new_address", dispatcher, tracker, NEED_FULL_ADDRESS)
        return self.accept(tracker, new_address=" ".join(value.split()))

    def extract_security_postcode(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> Slots:
        if (
            tracker.get_slot(REQUESTED_SLOT) != "security_postcode"
            or not self._fresh_answer(tracker)
            or latest_intent(tracker) in INTERRUPTION_INTENTS
        ):
            return {}
        if latest_intent(tracker) in _NO_NUMBER_INTENTS:
            return self.hand_over(dispatcher)
        return {"security_postcode": tracker.latest_message.get("text") or ""}

    def validate_security_postcode(
        self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> Slots:
        order = open_backend().find_order(str(tracker.get_slot("order_id") or ""))
        said = postcode_from_speech(str(value or ""))
        # Addresses end with their postcode, typed ("M1 1AA") or as said
        # when a caller changed it ("... m one one a a").
        address = postcode_from_speech(order.delivery_address) if order else ""
        if len(said) < MIN_POSTCODE_CHARS or not address.endswith(said):
            return self.invalid("security_postcode", dispatcher, tracker, NO_POSTCODE_MATCH)
        return self.accept(tracker, security_postcode=said)


# -- complaint form ----------------------------------------------------------


class ValidateComplaintForm(HotlineFormValidation):
    def name(self) -> str:
        return "validate_complaint_form"

    def extract_complaint_text(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> Slots:
        reason = "Sorry, I didn't catch that."
        return self.no_answer("complaint_text", reason, dispatcher, tracker, domain)

    def validate_complaint_text(
        self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> Slots:
        text = " ".join(str(value or "").split())
        if len(text.split()) < 3:
            reason = "Sorry, I need a little more detail to file your complaint."
            return self.invalid("complaint_text", dispatcher, tracker, reason)
        return self.accept(tracker, complaint_text=text)


# -- account form ------------------------------------------------------------

_EMAIL_PATTERN = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
NO_EMAIL = "Sorry, I didn't catch an email address."


class ValidateAccountForm(HotlineFormValidation):
    def name(self) -> str:
        return "validate_account_form"

    def extract_email(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> Slots:
        return self.no_answer("email", NO_EMAIL, dispatcher, tracker, domain)

    def validate_email(
        self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> Slots:
        email = email_from_speech(str(value or ""))
        if not _EMAIL_PATTERN.match(email):
            return self.invalid("email", dispatcher, tracker, NO_EMAIL)
        if open_backend().find_customer_by_email(email) is None:
            reason = f"I can't find an account for {speak_email(email)}."
            return self.invalid("email", dispatcher, tracker, reason)
        return self.accept(tracker, email=email)


# -- callback form -----------------------------------------------------------

_PHONE_PATTERN = re.compile(r"^\+?\d{10,13}$")
NO_PHONE = "Sorry, I didn't catch a phone number."
NEED_FULL_PHONE = "Sorry, I need the full phone number, including the area code."


def normalise_phone(value: str) -> str | None:
    """ "+44 7700 900123", "07700-900123" or "oh seven seven ..." -> digits, maybe with +."""
    text = value.strip().lower()
    plus = text.startswith("+") or text.startswith("plus")
    digits = digits_from_speech(re.sub(r"^\+|^plus", "", text))
    if digits is None:
        return None
    return ("+" if plus else "") + digits


class ValidateCallbackForm(HotlineFormValidation):
    def name(self) -> str:
        return "validate_callback_form"

    def extract_phone_number(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> Slots:
        return self.no_answer("phone_number", NO_PHONE, dispatcher, tracker, domain)

    def validate_phone_number(
        self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> Slots:
        number = normalise_phone(str(value or ""))
        if number is None:
            return self.invalid("phone_number", dispatcher, tracker, NO_PHONE)
        if not _PHONE_PATTERN.match(number):
            return self.invalid("phone_number", dispatcher, tracker, NEED_FULL_PHONE)
        return self.accept(tracker, phone_number=number)
