"""A small SQLite stand-in for a retailer's systems, for demos and tests.

The database is created and seeded the first time it is used. Seeding is
idempotent and runs in one write transaction, so two processes starting at
once (action server and a test run, say) end up with the same data. Seed
dates are relative to the day of seeding so the demo orders stay plausible.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

from actions.backend import (
    REFUND_WORKING_DAYS,
    RETURN_DROP_OFF_DAYS,
    BackendError,
    Customer,
    Order,
    Refund,
    RequestRefused,
    ReturnInfo,
    Ticket,
    add_working_days,
    national_phone,
    return_deadline,
)

logger = logging.getLogger(__name__)

FIRST_TICKET_NUMBER = 1001

_SCHEMA = """
CREATE TABLE IF NOT EXISTS customers (
    customer_id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    email TEXT NOT NULL UNIQUE,
    phone TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS orders (
    order_id TEXT PRIMARY KEY,
    customer_id INTEGER NOT NULL REFERENCES customers (customer_id),
    status TEXT NOT NULL CHECK (
        status IN ('processing', 'shipped', 'delivered', 'cancelled', 'returned')
    ),
    items TEXT NOT NULL,
    total_pence INTEGER NOT NULL,
    placed_on TEXT NOT NULL,
    carrier TEXT,
    expected_delivery TEXT,
    delivered_on TEXT,
    delivery_address TEXT NOT NULL,
    card_last4 TEXT NOT NULL,
    charged_on TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS refunds (
    order_id TEXT PRIMARY KEY REFERENCES orders (order_id),
    amount_pence INTEGER NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('pending', 'issued')),
    refund_date TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS returns (
    order_id TEXT PRIMARY KEY REFERENCES orders (order_id),
    started_on TEXT NOT NULL,
    drop_off_by TEXT NOT NULL,
    label_sent_to TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS tickets (
    ticket_number INTEGER PRIMARY KEY,
    kind TEXT NOT NULL,
    description TEXT NOT NULL,
    order_id TEXT,
    customer_email TEXT,
    created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS callback_requests (
    request_id INTEGER PRIMARY KEY AUTOINCREMENT,
    phone_number TEXT NOT NULL,
    reason TEXT NOT NULL,
    requested_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS password_resets (
    reset_id INTEGER PRIMARY KEY AUTOINCREMENT,
    customer_id INTEGER NOT NULL REFERENCES customers (customer_id),
    email TEXT NOT NULL,
    requested_at TEXT NOT NULL
);
"""

_ORDER_COLUMNS = (
    "o.order_id, o.status, o.items, o.total_pence, o.placed_on, o.delivery_address, "
    "o.card_last4, o.charged_on, c.email, o.carrier, o.expected_delivery, o.delivered_on"
)


def _seed_rows(today: date) -> dict[str, list[tuple[Any, ...]]]:
    """The demo data, dated relative to `today`."""

    def day(offset: int) -> str:
        return (today + timedelta(days=offset)).isoformat()

    jane, john, priya, tom = 1, 2, 3, 4
    jane_home = "12 High Street, Manchester, M1 1AA"
    john_home = "45 Station Road, Leeds, LS1 4DY"
    priya_home = "8 Mill Lane, Bristol, BS1 5AB"
    tom_home = "3 Park Road, Cardiff, CF10 1AA"
    # order_id, customer, status, items, total, placed, carrier, expected,
    # delivered, address, card, charged
    orders = [
        # In transit, on time.
        ("12345", jane, "shipped", "a pair of running shoes", 4999, day(-3), "Royal Mail",
         day(2), None, jane_home, "4242", day(-3)),
        # Delivered yesterday: inside the return window.
        ("23456", john, "delivered", "a coffee machine", 8950, day(-6), "DPD",
         day(-1), day(-1), john_home, "1881", day(-6)),
        # Not yet shipped: can be cancelled or redirected.
        ("34567", jane, "processing", "a winter coat", 12000, day(0), None,
         day(4), None, jane_home, "4242", day(0)),
        # Returned, refund issued.
        ("45678", john, "returned", "a bluetooth speaker", 3499, day(-30), "DPD",
         day(-26), day(-26), john_home, "1881", day(-30)),
        # Delivered long ago: outside the return window.
        ("56789", jane, "delivered", "a table lamp", 2599, day(-45), "Royal Mail",
         day(-40), day(-40), jane_home, "4242", day(-45)),
        # In transit and two days late.
        ("67890", john, "shipped", "a set of saucepans", 6500, day(-8), "Evri",
         day(-2), None, john_home, "1881", day(-8)),
        # Cancelled by the customer, refund issued.
        ("78901", jane, "cancelled", "a phone case", 1299, day(-5), None,
         None, None, jane_home, "4242", day(-5)),
        # Priya has several orders and rarely keeps the numbers.
        ("81234", priya, "shipped", "a kettle", 3999, day(-2), "DPD",
         day(1), None, priya_home, "5555", day(-2)),
        ("82345", priya, "delivered", "a pair of headphones", 7999, day(-9), "Royal Mail",
         day(-6), day(-6), priya_home, "5555", day(-9)),
        ("83456", priya, "processing", "a blender", 5499, day(0), None,
         day(5), None, priya_home, "5555", day(0)),
        # Tom has just one order.
        ("91234", tom, "shipped", "a garden hose", 2499, day(-4), "Evri",
         day(1), None, tom_home, "7777", day(-4)),
    ]  # fmt: skip
    return {
        "customers": [
            (jane, "Jane Doe", "jane.doe@example.com", "07700900123"),
            (john, "John Smith", "john.smith@example.com", "07700900456"),
            (priya, "Priya Shah", "priya.shah@example.com", "07700900789"),
            (tom, "Tom Evans", "tom.evans@example.com", "07700900321"),
        ],
        "orders": orders,
        "refunds": [
            ("45678", 3499, "issued", day(-10)),
            ("78901", 1299, "issued", day(-4)),
        ],
    }


def _as_date(value: str | None) -> date | None:
    return date.fromisoformat(value) if value else None


def _order_from_row(row: sqlite3.Row) -> Order:
    placed_on = _as_date(row["placed_on"])
    charged_on = _as_date(row["charged_on"])
    assert placed_on is not None and charged_on is not None  # NOT NULL columns
    return Order(
        order_id=row["order_id"],
        status=row["status"],
        items=row["items"],
        total_pence=row["total_pence"],
        placed_on=placed_on,
        delivery_address=row["delivery_address"],
        card_last4=row["card_last4"],
        charged_on=charged_on,
        customer_email=row["email"],
        carrier=row["carrier"],
        expected_delivery=_as_date(row["expected_delivery"]),
        delivered_on=_as_date(row["delivered_on"]),
    )


class DemoBackend:
    """`Backend` backed by one SQLite file. Opens a connection per operation."""

    def __init__(self, path: str | Path, today: Callable[[], date] = date.today) -> None:
        # Nothing is opened here: a broken path should surface as a
        # BackendError when the caller actually needs the data.
        self.path = Path(path)
        self._today = today
        self._ready = False

    # -- plumbing ---------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise BackendError(f"cannot create the folder for {self.path}: {exc}") from exc
        try:
            # isolation_level=None: transactions are begun explicitly below.
            connection = sqlite3.connect(self.path, timeout=10, isolation_level=None)
        except sqlite3.Error as exc:
            raise BackendError(f"cannot open the demo database {self.path}: {exc}") from exc
        connection.row_factory = sqlite3.Row
        return connection

    @contextmanager
    def _transaction(self, prepare: bool = True) -> Iterator[sqlite3.Connection]:
        """A write-locked transaction; any SQLite failure becomes a BackendError."""
        if prepare:
            self._ensure_ready()
        connection = self._connect()
        try:
            # IMMEDIATE takes the write lock up front, so concurrent seeders
            # and ticket counters queue instead of racing.
            connection.execute("BEGIN IMMEDIATE")
            yield connection
            connection.execute("COMMIT")
        except sqlite3.Error as exc:
            if connection.in_transaction:
                connection.execute("ROLLBACK")
            raise BackendError(f"demo database {self.path} failed: {exc}") from exc
        except BaseException:
            if connection.in_transaction:
                connection.execute("ROLLBACK")
            raise
        finally:
            connection.close()

    def _ensure_ready(self) -> None:
        if self._ready:
            return
        with self._transaction(prepare=False) as db:
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    db.execute(statement)
            for table, rows in _seed_rows(self._today()).items():
                marks = ", ".join("?" * len(rows[0]))
                db.executemany(f"INSERT OR IGNORE INTO {table} VALUES ({marks})", rows)
        self._ready = True

    def _order(self, db: sqlite3.Connection, order_id: str) -> Order | None:
        row = db.execute(
            f"SELECT {_ORDER_COLUMNS} FROM orders o JOIN customers c USING (customer_id) "
            "WHERE o.order_id = ?",
            (str(order_id),),
        ).fetchone()
        return _order_from_row(row) if row else None

    def _require_order(self, db: sqlite3.Connection, order_id: str) -> Order:
        order = self._order(db, order_id)
        if order is None:
            raise RequestRefused(f"order {order_id} does not exist")
        return order

    def _now(self) -> str:
        return datetime.now().isoformat(timespec="seconds")

    # -- Backend ----------------------------------------------------------

    def today(self) -> date:
        return self._today()

    def find_order(self, order_id: str) -> Order | None:
        with self._transaction() as db:
            return self._order(db, order_id)

    def cancel_order(self, order_id: str) -> Order:
        with self._transaction() as db:
            order = self._require_order(db, order_id)
            if order.status != "processing":
                raise RequestRefused(f"order {order_id} is {order.status}, not processing")
            db.execute("UPDATE orders SET status = 'cancelled' WHERE order_id = ?", (order_id,))
            due = add_working_days(self._today(), REFUND_WORKING_DAYS)
            db.execute(
                "INSERT OR REPLACE INTO refunds VALUES (?, ?, 'pending', ?)",
                (order_id, order.total_pence, due.isoformat()),
            )
            return self._require_order(db, order_id)

    def change_address(self, order_id: str, address: str) -> Order:
        with self._transaction() as db:
            order = self._require_order(db, order_id)
            if order.status != "processing":
                raise RequestRefused(f"order {order_id} is {order.status}, not processing")
            db.execute(
                "UPDATE orders SET delivery_address = ? WHERE order_id = ?",
                (address.strip(), order_id),
            )
            return self._require_order(db, order_id)

    def start_return(self, order_id: str) -> ReturnInfo:
        today = self._today()
        with self._transaction() as db:
            order = self._require_order(db, order_id)
            deadline = return_deadline(order)
            if deadline is None or today > deadline:
                raise RequestRefused(f"order {order_id} cannot be returned")
            existing = db.execute(
                "SELECT * FROM returns WHERE order_id = ?", (order_id,)
            ).fetchone()
            if existing is None:
                # A second call about the same return gets the same details.
                drop_off_by = today + timedelta(days=RETURN_DROP_OFF_DAYS)
                db.execute(
                    "INSERT INTO returns VALUES (?, ?, ?, ?)",
                    (order_id, today.isoformat(), drop_off_by.isoformat(), order.customer_email),
                )
                existing = db.execute(
                    "SELECT * FROM returns WHERE order_id = ?", (order_id,)
                ).fetchone()
            return ReturnInfo(
                order_id=order_id,
                started_on=date.fromisoformat(existing["started_on"]),
                drop_off_by=date.fromisoformat(existing["drop_off_by"]),
                label_sent_to=existing["label_sent_to"],
            )

    def find_refund(self, order_id: str) -> Refund | None:
        with self._transaction() as db:
            row = db.execute("SELECT * FROM refunds WHERE order_id = ?", (order_id,)).fetchone()
        if row is None:
            return None
        return Refund(
            order_id=row["order_id"],
            amount_pence=row["amount_pence"],
            status=row["status"],
            refund_date=date.fromisoformat(row["refund_date"]),
        )

    def find_customer_by_email(self, email: str) -> Customer | None:
        with self._transaction() as db:
            row = db.execute(
                "SELECT * FROM customers WHERE email = ?", (email.strip().lower(),)
            ).fetchone()
        if row is None:
            return None
        return Customer(row["customer_id"], row["name"], row["email"], row["phone"])

    def find_customer_by_phone(self, phone: str) -> Customer | None:
        wanted = national_phone(phone)
        if not wanted:
            return None
        with self._transaction() as db:
            # The demo keeps phone numbers as national digits.
            row = db.execute("SELECT * FROM customers WHERE phone = ?", (wanted,)).fetchone()
        if row is None:
            return None
        return Customer(row["customer_id"], row["name"], row["email"], row["phone"])

    def orders_of(self, customer: Customer) -> list[Order]:
        with self._transaction() as db:
            rows = db.execute(
                f"SELECT {_ORDER_COLUMNS} FROM orders o JOIN customers c USING (customer_id) "
                "WHERE o.customer_id = ? ORDER BY o.placed_on DESC, o.order_id DESC",
                (customer.customer_id,),
            ).fetchall()
        return [_order_from_row(row) for row in rows]

    def send_password_reset(self, customer: Customer) -> None:
        # The demo only records the request; a real system would send the email.
        with self._transaction() as db:
            db.execute(
                "INSERT INTO password_resets (customer_id, email, requested_at) VALUES (?, ?, ?)",
                (customer.customer_id, customer.email, self._now()),
            )

    def _new_ticket(
        self, kind: str, text: str, order_id: str | None, customer_email: str | None
    ) -> Ticket:
        with self._transaction() as db:
            # Numbering under the write lock, so numbers never repeat.
            (number,) = db.execute(
                "SELECT COALESCE(MAX(ticket_number) + 1, ?) FROM tickets",
                (FIRST_TICKET_NUMBER,),
            ).fetchone()
            db.execute(
                "INSERT INTO tickets VALUES (?, ?, ?, ?, ?, ?)",
                (number, kind, text, order_id, customer_email, self._now()),
            )
        return Ticket(str(number), kind, order_id, self._today())

    def file_complaint(self, text: str, order_id: str | None, customer_email: str | None) -> Ticket:
        return self._new_ticket("complaint", text, order_id, customer_email)

    def open_delivery_investigation(self, order_id: str, problem: str) -> Ticket:
        return self._new_ticket("delivery_investigation", problem, order_id, None)

    def request_callback(self, phone_number: str, reason: str) -> None:
        with self._transaction() as db:
            db.execute(
                "INSERT INTO callback_requests (phone_number, reason, requested_at) "
                "VALUES (?, ?, ?)",
                (phone_number, reason, self._now()),
            )

    # -- for tests and demos ----------------------------------------------

    def count_rows(self, table: str) -> int:
        """Rows in one of the demo tables (callbacks, resets and so on)."""
        allowed = {"customers", "orders", "refunds", "returns", "tickets",
                   "callback_requests", "password_resets"}  # fmt: skip
        if table not in allowed:
            raise ValueError(f"unknown table {table!r}")
        with self._transaction() as db:
            (count,) = db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()
        return int(count)
