"""The seam between the bot and the retailer's own systems.

A company deploying the bot implements `Backend` against its order, CRM and
ticketing systems and returns it from `open_backend`. The actions only ever
talk to this interface. The default is the SQLite demo in `demo_backend`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Literal, Protocol

OrderStatus = Literal["processing", "shipped", "delivered", "cancelled", "returned"]
RefundStatus = Literal["pending", "issued"]

# Company policy the demo and the actions agree on.
ORDER_NUMBER_DIGITS = 5
RETURN_WINDOW_DAYS = 30
RETURN_DROP_OFF_DAYS = 14
REFUND_WORKING_DAYS = 5

BACKEND_DB_ENV = "VOICEBOT_BACKEND_DB"
PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DB_PATH = PROJECT_ROOT / "var" / "demo_backend.sqlite3"


class BackendError(Exception):
    """The backing system failed (unreachable, corrupt, misconfigured).

    Actions answer it by handing the caller to a person.
    """


class RequestRefused(Exception):
    """The backing system worked but declined the request.

    For example the order was not found or has moved on (shipped) since the
    bot last looked. The message says why, for the logs.
    """


@dataclass(frozen=True)
class Order:
    order_id: str
    status: OrderStatus
    items: str
    total_pence: int
    placed_on: date
    delivery_address: str
    card_last4: str
    charged_on: date
    customer_email: str
    carrier: str | None = None
    expected_delivery: date | None = None
    delivered_on: date | None = None


@dataclass(frozen=True)
class Refund:
    order_id: str
    amount_pence: int
    status: RefundStatus
    # When it was issued, or, while pending, when it should arrive.
    refund_date: date


@dataclass(frozen=True)
class ReturnInfo:
    order_id: str
    started_on: date
    drop_off_by: date
    label_sent_to: str


@dataclass(frozen=True)
class Customer:
    customer_id: int
    name: str
    email: str
    phone: str


@dataclass(frozen=True)
class Ticket:
    # Kept as text: it is read to the caller digit by digit, never added up.
    ticket_number: str
    kind: str
    order_id: str | None
    created_on: date


class Backend(Protocol):
    """What the bot needs from the retailer's systems.

    Every method raises `BackendError` when the system itself fails. Methods
    that change an order raise `RequestRefused` when the order does not exist
    or is no longer in a state that allows the change.
    """

    def today(self) -> date:
        """The business day, in the retailer's time zone: dates spoken to callers count from it."""
        ...

    def find_order(self, order_id: str) -> Order | None: ...

    def cancel_order(self, order_id: str) -> Order:
        """Cancels a processing order and queues a full refund."""
        ...

    def change_address(self, order_id: str, address: str) -> Order:
        """Changes the delivery address of a processing order."""
        ...

    def start_return(self, order_id: str) -> ReturnInfo:
        """Starts a return of a delivered order inside the return window."""
        ...

    def find_refund(self, order_id: str) -> Refund | None: ...

    def find_customer_by_email(self, email: str) -> Customer | None: ...

    def find_customer_by_phone(self, phone: str) -> Customer | None:
        """The customer with this phone number, in national (07...) or +44 form."""
        ...

    def orders_of(self, customer: Customer) -> list[Order]:
        """The customer's orders, most recently placed first."""
        ...

    def send_password_reset(self, customer: Customer) -> None: ...

    def file_complaint(
        self, text: str, order_id: str | None, customer_email: str | None
    ) -> Ticket: ...

    def open_delivery_investigation(self, order_id: str, problem: str) -> Ticket:
        """Opens a ticket for a late or missing parcel."""
        ...

    def request_callback(self, phone_number: str, reason: str) -> None: ...


def return_deadline(order: Order) -> date | None:
    """Last day a return can be started, or None if the order isn't delivered."""
    if order.status != "delivered" or order.delivered_on is None:
        return None
    return order.delivered_on + timedelta(days=RETURN_WINDOW_DAYS)


def add_working_days(start: date, days: int) -> date:
    """`days` working days (Monday to Friday) after `start`."""
    current = start
    while days > 0:
        current += timedelta(days=1)
        if current.weekday() < 5:
            days -= 1
    return current


def national_phone(number: str) -> str:
    """A UK number as its national digits: "+44 7700 900123" -> "07700900123"."""
    digits = "".join(ch for ch in number if ch.isdigit())
    if number.strip().startswith("+") and digits.startswith("44"):
        return "0" + digits[2:]
    if digits.startswith("0044"):
        return "0" + digits[4:]
    return digits


def backend_path() -> Path:
    """Where the demo database lives; read on every call so tests can redirect it."""
    configured = os.environ.get(BACKEND_DB_ENV, "").strip()
    return Path(configured).expanduser() if configured else DEFAULT_DB_PATH


# One backend per database path, so schema checks run once per process.
_backends: dict[Path, Backend] = {}


def open_backend() -> Backend:
    """The backend the actions use. Replace the body to plug in real systems."""
    # Imported here: demo_backend imports this module for the data classes.
    from actions.demo_backend import DemoBackend

    path = backend_path()
    backend = _backends.get(path)
    if backend is None:
        backend = _backends[path] = DemoBackend(path)
    return backend
