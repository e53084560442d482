"""The SQLite demo backend: seeding, every seed order, changes and failures."""

from __future__ import annotations

import sqlite3
import threading
from datetime import date, timedelta
from pathlib import Path

import pytest

from actions.backend import (
    BACKEND_DB_ENV,
    DEFAULT_DB_PATH,
    PROJECT_ROOT,
    BackendError,
    RequestRefused,
    add_working_days,
    backend_path,
    open_backend,
)
from actions.demo_backend import DemoBackend

# The backend's clock is pinned: the expected dates stay right across midnight.
TODAY = date.today()


def days(offset: int) -> date:
    return TODAY + timedelta(days=offset)


@pytest.fixture
def backend(tmp_path: Path) -> DemoBackend:
    return DemoBackend(tmp_path / "demo.sqlite3", today=lambda: TODAY)


def test_nothing_is_opened_until_used(tmp_path: Path) -> None:
    path = tmp_path / "later" / "demo.sqlite3"
    demo = DemoBackend(path)
    assert not path.exists()
    assert demo.find_order("12345") is not None
    assert path.is_file()


def test_seeding_is_idempotent(tmp_path: Path) -> None:
    path = tmp_path / "demo.sqlite3"
    first = DemoBackend(path)
    counts = {t: first.count_rows(t) for t in ("customers", "orders", "refunds")}
    assert counts == {"customers": 4, "orders": 11, "refunds": 2}
    second = DemoBackend(path)  # a second process, say
    assert {t: second.count_rows(t) for t in counts} == counts


def test_seeding_from_two_starts_at_once(tmp_path: Path) -> None:
    path = tmp_path / "demo.sqlite3"
    errors: list[BaseException] = []

    def start() -> None:
        try:
            DemoBackend(path).find_order("12345")
        except BaseException as exc:  # noqa: BLE001 - collected for the assertion
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert DemoBackend(path).count_rows("orders") == 11


def test_seed_customers(backend: DemoBackend) -> None:
    jane = backend.find_customer_by_email("jane.doe@example.com")
    john = backend.find_customer_by_email("John.Smith@Example.com ")
    assert jane is not None and (jane.name, jane.phone) == ("Jane Doe", "07700900123")
    assert john is not None and (john.name, john.phone) == ("John Smith", "07700900456")
    assert backend.find_customer_by_email("nobody@example.com") is None


def test_order_in_transit(backend: DemoBackend) -> None:
    order = backend.find_order("12345")
    assert order is not None
    assert order.status == "shipped"
    assert order.carrier == "Royal Mail"
    assert order.expected_delivery == days(2)
    assert order.delivered_on is None
    assert order.customer_email == "jane.doe@example.com"


def test_order_delivered_yesterday(backend: DemoBackend) -> None:
    order = backend.find_order("23456")
    assert order is not None
    assert (order.status, order.delivered_on) == ("delivered", days(-1))
    assert order.customer_email == "john.smith@example.com"


def test_order_processing(backend: DemoBackend) -> None:
    order = backend.find_order("34567")
    assert order is not None
    assert (order.status, order.carrier, order.total_pence) == ("processing", None, 12000)


def test_order_returned_with_refund(backend: DemoBackend) -> None:
    order = backend.find_order("45678")
    refund = backend.find_refund("45678")
    assert order is not None and order.status == "returned"
    assert refund is not None
    assert (refund.amount_pence, refund.status, refund.refund_date) == (3499, "issued", days(-10))


def test_order_outside_return_window(backend: DemoBackend) -> None:
    order = backend.find_order("56789")
    assert order is not None and order.delivered_on is not None
    assert order.status == "delivered"
    assert (TODAY - order.delivered_on).days > 30


def test_order_running_late(backend: DemoBackend) -> None:
    order = backend.find_order("67890")
    assert order is not None and order.expected_delivery is not None
    assert order.status == "shipped"
    assert order.expected_delivery < TODAY


def test_order_cancelled_with_refund(backend: DemoBackend) -> None:
    order = backend.find_order("78901")
    refund = backend.find_refund("78901")
    assert order is not None and order.status == "cancelled"
    assert refund is not None and refund.amount_pence == order.total_pence


def test_billing_fields(backend: DemoBackend) -> None:
    order = backend.find_order("12345")
    assert order is not None
    assert (order.total_pence, order.card_last4, order.charged_on) == (4999, "4242", days(-3))


def test_unknown_order(backend: DemoBackend) -> None:
    assert backend.find_order("99999") is None
    assert backend.find_refund("12345") is None


def test_cancel_changes_state_and_queues_refund(backend: DemoBackend) -> None:
    order = backend.cancel_order("34567")
    assert order.status == "cancelled"
    stored = backend.find_order("34567")
    assert stored is not None and stored.status == "cancelled"
    refund = backend.find_refund("34567")
    assert refund is not None
    assert (refund.amount_pence, refund.status) == (12000, "pending")
    assert refund.refund_date == add_working_days(TODAY, 5)
    with pytest.raises(RequestRefused):
        backend.cancel_order("34567")


def test_cannot_cancel_a_shipped_or_unknown_order(backend: DemoBackend) -> None:
    with pytest.raises(RequestRefused):
        backend.cancel_order("12345")
    with pytest.raises(RequestRefused):
        backend.cancel_order("99999")
    order = backend.find_order("12345")
    assert order is not None and order.status == "shipped"


def test_change_address(backend: DemoBackend) -> None:
    order = backend.change_address("34567", "  1 New Road,  York YO1 7HH ")
    assert order.delivery_address == "1 New Road,  York YO1 7HH"
    with pytest.raises(RequestRefused):
        backend.change_address("12345", "1 New Road, York YO1 7HH")


def test_start_return(backend: DemoBackend) -> None:
    info = backend.start_return("23456")
    assert info.label_sent_to == "john.smith@example.com"
    assert (info.started_on, info.drop_off_by) == (TODAY, days(14))
    assert backend.start_return("23456") == info  # asking twice changes nothing
    assert backend.count_rows("returns") == 1
    for order_id in ("56789", "12345", "34567"):
        with pytest.raises(RequestRefused):
            backend.start_return(order_id)


def test_ticket_numbers_increase_from_1001(backend: DemoBackend) -> None:
    first = backend.file_complaint("the box was crushed", "12345", "jane.doe@example.com")
    second = backend.open_delivery_investigation("67890", "late")
    third = backend.file_complaint("rude driver", None, None)
    assert [t.ticket_number for t in (first, second, third)] == ["1001", "1002", "1003"]
    assert (first.kind, first.order_id) == ("complaint", "12345")
    assert second.kind == "delivery_investigation"
    assert DemoBackend(backend.path).file_complaint("again", None, None).ticket_number == "1004"


def test_password_reset_and_callback_are_recorded(backend: DemoBackend) -> None:
    jane = backend.find_customer_by_email("jane.doe@example.com")
    assert jane is not None
    backend.send_password_reset(jane)
    backend.request_callback("07700900123", "caller asked for a callback")
    assert backend.count_rows("password_resets") == 1
    assert backend.count_rows("callback_requests") == 1
    with pytest.raises(ValueError):
        backend.count_rows("sqlite_master")


def test_corrupt_file_raises_backend_error(tmp_path: Path) -> None:
    path = tmp_path / "demo.sqlite3"
    path.write_bytes(b"this is not a database at all" * 100)
    with pytest.raises(BackendError, match="demo.sqlite3"):
        DemoBackend(path).find_order("12345")


def test_file_corrupted_after_seeding_raises_backend_error(tmp_path: Path) -> None:
    path = tmp_path / "demo.sqlite3"
    demo = DemoBackend(path)
    assert demo.find_order("12345") is not None
    path.write_bytes(b"\x00garbage" * 1000)
    with pytest.raises(BackendError):
        demo.find_order("12345")
    with pytest.raises(BackendError):
        demo.file_complaint("a b c", None, None)


def test_impossible_path_raises_backend_error(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(BackendError):
        DemoBackend(blocker / "sub" / "demo.sqlite3").find_order("12345")


def test_directory_as_database_raises_backend_error(tmp_path: Path) -> None:
    with pytest.raises(BackendError):
        DemoBackend(tmp_path).find_order("12345")


def test_missing_table_raises_backend_error(tmp_path: Path) -> None:
    path = tmp_path / "demo.sqlite3"
    demo = DemoBackend(path)
    demo.find_order("12345")
    with sqlite3.connect(path) as db:
        db.execute("DROP TABLE tickets")
    with pytest.raises(BackendError, match="tickets"):
        demo.file_complaint("a b c", None, None)


def test_open_backend_uses_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "env.sqlite3"
    monkeypatch.setenv(BACKEND_DB_ENV, str(path))
    assert backend_path() == path
    demo = open_backend()
    assert isinstance(demo, DemoBackend) and demo.path == path
    assert open_backend() is demo
    monkeypatch.delenv(BACKEND_DB_ENV)
    assert backend_path() == DEFAULT_DB_PATH == PROJECT_ROOT / "var" / "demo_backend.sqlite3"
    assert (PROJECT_ROOT / "actions" / "backend.py").is_file()


def test_add_working_days_skips_weekends() -> None:
    friday = date(2024, 12, 6)
    assert add_working_days(friday, 1) == date(2024, 12, 9)
    assert add_working_days(friday, 5) == date(2024, 12, 13)
