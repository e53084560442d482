"""The actions that run when a form is complete and do the caller's task.

Each first checks whether the form ended because the caller got nowhere
(hand over: no_progress) or because the backend failed (the form has already
apologised). Every sentence is written to be spoken.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from datetime import date

from rasa_sdk import Action, Tracker
from rasa_sdk.events import EventType, SlotSet
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.types import DomainDict

from actions.backend import (
    ORDER_NUMBER_DIGITS,
    Backend,
    BackendError,
    Order,
    Refund,
    RequestRefused,
    open_backend,
    return_deadline,
)
from actions.conversation import (
    ESCALATION_REASON,
    FAILED_ATTEMPTS,
    escalate,
    latest_entity,
    out_of_attempts,
)
from actions.lookup import heard_wrong_shape
from actions.speech import speak_date, speak_digits, speak_email, speak_money, speak_phone

logger = logging.getLogger(__name__)

ANYTHING_ELSE = "utter_anything_else"


def form_failed_this_turn(tracker: Tracker) -> bool:
    """Whether the form just ended on a backend failure (and told the caller so)."""
    for event in reversed(tracker.events):
        if event.get("event") == "user":
            return False
        if (
            event.get("event") == "slot"
            and event.get("name") == ESCALATION_REASON
            and event.get("value") == "action_failure"
        ):
            return True
    return False


class TaskAction(Action, ABC):
    """Runs after a form: escalation checks, backend errors and slot clean-up."""

    @abstractmethod
    def name(self) -> str: ...

    @abstractmethod
    def complete(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, backend: Backend
    ) -> list[EventType]:
        """Does the task; may raise BackendError."""

    def cleared_slots(self) -> list[str]:
        """Slots that belong to this one task and must not leak into the next."""
        return []

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> list[EventType]:
        clean_up = [SlotSet(slot, None) for slot in self.cleared_slots()]
        if out_of_attempts(tracker):
            return escalate(dispatcher, "no_progress") + clean_up
        if form_failed_this_turn(tracker):
            return clean_up + [SlotSet(FAILED_ATTEMPTS, 0.0)]
        first_message = len(dispatcher.messages)
        try:
            events = self.complete(dispatcher, tracker, open_backend())
        except BackendError:
            logger.exception("%s: the backend failed", self.name())
            del dispatcher.messages[first_message:]
            return escalate(dispatcher, "action_failure") + clean_up
        return events + clean_up + [SlotSet(FAILED_ATTEMPTS, 0.0)]


# -- order task --------------------------------------------------------------


class OrderTask:
    """Builds what to say about one order for one task."""

    def __init__(self, backend: Backend, order: Order, today: date) -> None:
        self.backend = backend
        self.order = order
        self.today = today
        self.spoken = f"order {speak_digits(order.order_id)}"
        self.events: list[EventType] = []

    def date(self, day: date) -> str:
        return speak_date(day, self.today)

    def status(self) -> str:
        o, name = self.order, self.spoken.capitalize()
        if o.status == "processing":
            sentence = f"{name} is being prepared and hasn't been shipped yet."
            if o.expected_delivery is not None:
                sentence += f" It should arrive by {self.date(o.expected_delivery)}."
            return sentence
        if o.status == "shipped":
            if o.expected_delivery is None:
                return f"{name} was shipped with {o.carrier}."
            if self.is_late():
                return (
                    f"{name} was shipped with {o.carrier}. It was due on "
                    f"{self.date(o.expected_delivery)}, so it's running late."
                )
            return (
                f"{name} was shipped with {o.carrier} and should arrive on "
                f"{self.date(o.expected_delivery)}."
            )
        if o.status == "delivered" and o.delivered_on is not None:
            return f"{name} was delivered on {self.date(o.delivered_on)}."
        if o.status == "cancelled":
            return f"{name} was cancelled."
        if o.status == "returned":
            return f"{name} was returned to us."
        return f"{name} is {o.status}."

    def is_late(self) -> bool:
        due = self.order.expected_delivery
        return self.order.status == "shipped" and due is not None and due < self.today

    def refund_sentence(self, refund: Refund, lead: str = "") -> str:
        money, when = speak_money(refund.amount_pence), self.date(refund.refund_date)
        if refund.status == "issued":
            return f"{lead}{'we' if lead else 'We'} refunded {money} on {when}."
        return f"{lead}{'your' if lead else 'Your'} refund of {money} is on its way " + (
            f"and should reach you by {when}."
        )

    def ticket(self, number: str) -> str:
        self.events.append(SlotSet("ticket_id", number))
        return f"Your ticket number is {speak_digits(number)}."

    # One method per task; each returns the sentences to say.

    def order_status(self) -> list[str]:
        refund = None
        if self.order.status in {"cancelled", "returned"}:
            refund = self.backend.find_refund(self.order.order_id)
        return [self.status()] + ([self.refund_sentence(refund)] if refund else [])

    def delivery_problem(self) -> list[str]:
        o = self.order
        if self.is_late():
            ticket = self.backend.open_delivery_investigation(o.order_id, "parcel running late")
            return [
                self.status(),
                f"I've asked {o.carrier} to look into it.",
                self.ticket(ticket.ticket_number),
                "We'll update you within two working days.",
            ]
        if o.status == "shipped":
            return [self.status(), "If it hasn't arrived by then, please call us again."]
        if o.status == "delivered":
            ticket = self.backend.open_delivery_investigation(o.order_id, "parcel not received")
            return [
                f"Our records show {self.spoken} was delivered on {self.date(o.delivered_on)}."
                if o.delivered_on
                else self.status(),
                "I've opened an investigation into the missing parcel.",
                self.ticket(ticket.ticket_number),
                "A member of our team will contact you within two working days.",
            ]
        return [self.status()]

    def cancel_order(self, confirmed: bool | None) -> list[str]:
        o, name = self.order, self.spoken.capitalize()
        if o.status == "processing":
            if confirmed is not True:
                return [f"No problem. {name} has not been cancelled."]
            try:
                self.backend.cancel_order(o.order_id)
            except RequestRefused:
                return [f"Sorry, I couldn't cancel {self.spoken}. It may have just been shipped."]
            return [
                f"{name} is cancelled.",
                f"You'll get a full refund of {speak_money(o.total_pence)} "
                "within five working days.",
            ]
        if o.status == "shipped":
            return [
                f"{name} has already been shipped, so it can't be cancelled.",
                "Once it arrives, you can return it for a refund.",
            ]
        if o.status == "delivered":
            deadline = return_deadline(o)
            can_return = deadline is not None and self.today <= deadline
            return [f"{name} has already been delivered, so it can't be cancelled."] + (
                ["You can still return it for a refund."] if can_return else []
            )
        if o.status == "cancelled":
            return [f"{name} is already cancelled."]
        return [f"{name} has already been returned, so there's nothing to cancel."]

    def change_address(self, new_address: str | None) -> list[str]:
        o, name = self.order, self.spoken.capitalize()
        if o.status == "processing":
            if not new_address:
                return [f"The delivery address for {self.spoken} hasn't been changed."]
            try:
                changed = self.backend.change_address(o.order_id, new_address)
            except RequestRefused:
                return [
                    f"Sorry, I couldn't change the address for {self.spoken}. "
                    "It may have just been shipped."
                ]
            return [f"Done. {name} will now be delivered to {changed.delivery_address}."]
        if o.status == "shipped":
            return [
                f"{name} has already been shipped, so it's too late to change the delivery address."
            ]
        if o.status == "delivered":
            return [f"{name} has already been delivered, so the address can't be changed."]
        return [f"{name} was {o.status}, so there's no delivery to change."]

    def return_item(self) -> list[str]:
        o, name = self.order, self.spoken.capitalize()
        if o.status == "delivered":
            deadline = return_deadline(o)
            if deadline is None or self.today > deadline or o.delivered_on is None:
                return [
                    f"{name} was delivered on {self.date(o.delivered_on or self.today)}, "
                    "more than thirty days ago, so it's outside our return window."
                ]
            try:
                info = self.backend.start_return(o.order_id)
            except RequestRefused:
                return [f"Sorry, I couldn't start a return for {self.spoken}."]
            return [
                f"I've started a return for {self.spoken}.",
                f"We've emailed a returns label to {speak_email(info.label_sent_to)}.",
                "Please drop the parcel off at a post office within fourteen days, "
                f"by {self.date(info.drop_off_by)}.",
                "Your refund will follow once we receive it.",
            ]
        if o.status == "shipped":
            return [f"{name} hasn't been delivered yet. You can start a return once it arrives."]
        if o.status == "processing":
            return [
                f"{name} hasn't been shipped yet, so there's nothing to return.",
                "You can cancel it instead.",
            ]
        if o.status == "cancelled":
            return [f"{name} was cancelled, so there's nothing to return."]
        return [f"{name} has already been returned."]

    def refund_status(self) -> list[str]:
        refund = self.backend.find_refund(self.order.order_id)
        if refund is None:
            return [f"There's no refund on {self.spoken}."]
        sentences = [self.refund_sentence(refund, lead=f"For {self.spoken}, ")]
        if refund.status == "issued":
            sentences.append("It can take up to five working days to show on your statement.")
        return sentences

    def billing_question(self) -> list[str]:
        o = self.order
        return [
            f"For {self.spoken}, we charged {speak_money(o.total_pence)} on "
            f"{self.date(o.charged_on)}, to the card ending {speak_digits(o.card_last4)}."
        ]


class ActionOrderTask(TaskAction):
    def name(self) -> str:
        return "action_order_task"

    def cleared_slots(self) -> list[str]:
        # order_id and order_spoken stay, so the caller needn't repeat the number.
        return ["task", "confirm_cancel", "new_address"]

    def complete(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, backend: Backend
    ) -> list[EventType]:
        order_id = tracker.get_slot("order_id")
        order = backend.find_order(str(order_id)) if order_id else None
        if order is None:
            dispatcher.utter_message(text="Sorry, I couldn't find that order.")
            dispatcher.utter_message(response=ANYTHING_ELSE)
            return []
        task = OrderTask(backend, order, backend.today())
        name = tracker.get_slot("task") or "order_status"
        if name == "cancel_order":
            sentences = task.cancel_order(tracker.get_slot("confirm_cancel"))
        elif name == "change_address":
            sentences = task.change_address(tracker.get_slot("new_address"))
        elif name in {"delivery_problem", "return_item", "refund_status", "billing_question"}:
            sentences = getattr(task, name)()
        else:
            sentences = task.order_status()
        dispatcher.utter_message(text=" ".join(sentences))
        dispatcher.utter_message(response=ANYTHING_ELSE)
        return task.events


# -- other tasks -------------------------------------------------------------


class ActionFileComplaint(TaskAction):
    def name(self) -> str:
        return "action_file_complaint"

    def cleared_slots(self) -> list[str]:
        return ["complaint_text"]

    def complete(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, backend: Backend
    ) -> list[EventType]:
        text = tracker.get_slot("complaint_text") or ""
        order_id = tracker.get_slot("order_id")
        ticket = backend.file_complaint(text, order_id, tracker.get_slot("email"))
        dispatcher.utter_message(
            text="Thank you. I've filed your complaint. Your ticket number is "
            f"{speak_digits(ticket.ticket_number)}. "
            "A member of our team will contact you within two working days."
        )
        dispatcher.utter_message(response=ANYTHING_ELSE)
        return [SlotSet("ticket_id", ticket.ticket_number)]


class ActionAccountHelp(TaskAction):
    def name(self) -> str:
        return "action_account_help"

    def complete(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, backend: Backend
    ) -> list[EventType]:
        email = str(tracker.get_slot("email") or "")
        customer = backend.find_customer_by_email(email) if email else None
        if customer is None:
            dispatcher.utter_message(text=f"I can't find an account for {speak_email(email)}.")
        else:
            backend.send_password_reset(customer)
            dispatcher.utter_message(
                text=f"I've sent a password reset email to {speak_email(customer.email)}. "
                "Please follow the instructions in it."
            )
        dispatcher.utter_message(response=ANYTHING_ELSE)
        return []


class ActionRequestCallback(TaskAction):
    def name(self) -> str:
        return "action_request_callback"

    def complete(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, backend: Backend
    ) -> list[EventType]:
        phone = tracker.get_slot("phone_number")
        if not phone:
            # Nothing to call back on: put the caller through instead.
            return escalate(dispatcher, "explicit_request")
        backend.request_callback(str(phone), callback_reason(tracker))
        dispatcher.utter_message(
            response="utter_callback_confirmed", phone_spoken=speak_phone(phone)
        )
        return [SlotSet(ESCALATION_REASON, "callback_requested")]


def callback_reason(tracker: Tracker) -> str:
    """A note for the colleague who calls back: what the caller was doing."""
    parts = ["caller asked for a callback"]
    if tracker.get_slot("task"):
        parts.append(f"task {tracker.get_slot('task')}")
    if tracker.get_slot("order_id"):
        parts.append(f"order {tracker.get_slot('order_id')}")
    return "; ".join(parts)


class ActionNotedDetails(Action):
    """Details given when the bot asked for none: a bare order number.

    A known order is kept for the task the caller names next ("I have order
    three four five six seven. What would you like to do with it?"); a number
    of another shape, or one not found, is read back with what the bot needs.
    """

    def name(self) -> str:
        return "action_noted_details"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> list[EventType]:
        digits = latest_entity(tracker, "order_id") or latest_entity(tracker, "number")
        if not digits:
            dispatcher.utter_message(response="utter_inform_ack")
            return []
        forget = [SlotSet("order_id", None), SlotSet("order_spoken", None)]
        if len(digits) != ORDER_NUMBER_DIGITS:
            dispatcher.utter_message(text=heard_wrong_shape(digits))
            dispatcher.utter_message(response="utter_what_can_i_help_with")
            return forget
        try:
            order = open_backend().find_order(digits)
        except BackendError:
            logger.exception("%s: the backend failed", self.name())
            return escalate(dispatcher, "action_failure")
        if order is None:
            dispatcher.utter_message(
                text=f"I can't find order {speak_digits(digits)}. "
                "Please check the number in your confirmation email."
            )
            dispatcher.utter_message(response="utter_what_can_i_help_with")
            return forget
        spoken = speak_digits(digits)
        dispatcher.utter_message(response="utter_what_to_do_with_order", order_spoken=spoken)
        return [SlotSet("order_id", digits), SlotSet("order_spoken", spoken)]
