"""Calling hours and what a called-back customer hears first."""

from __future__ import annotations

from datetime import datetime, time, timedelta, timezone

import pytest

from bot.queue import QueueItem
from bot.telephony.callbacks import callback_intro, calling_hours, until_opening, within_hours

UTC = timezone.utc


def test_calling_hours_are_read_and_checked() -> None:
    assert calling_hours("09:00-20:00") == (time(9), time(20))
    assert calling_hours(" 8:30 - 24:00 ")[1] == time(23, 59, 59)
    for bad in ("9-20", "25:00-26:00", "09:00"):
        with pytest.raises(ValueError, match="calling_hours"):
            calling_hours(bad)


def test_within_and_until_the_hours() -> None:
    hours = calling_hours("09:00-20:00")
    morning = datetime(2026, 3, 2, 8, 30, tzinfo=UTC)
    assert not within_hours(morning, hours, "UTC")
    assert until_opening(morning, hours, "UTC") == timedelta(minutes=30)
    assert within_hours(morning.replace(hour=12), hours, "UTC")
    evening = morning.replace(hour=21)
    assert until_opening(evening, hours, "UTC") == timedelta(hours=11, minutes=30)
    # In London's summer time 08:30 UTC is 09:30 there: open.
    assert within_hours(datetime(2026, 7, 1, 8, 30, tzinfo=UTC), hours, "Europe/London")
    night = calling_hours("22:00-06:00")
    assert within_hours(morning.replace(hour=23), night, "UTC")
    assert not within_hours(morning.replace(hour=12), night, "UTC")


def _item(handoff: dict) -> QueueItem:
    now = datetime(2026, 3, 2, tzinfo=UTC)
    return QueueItem(1, "c", "callback", "callback_requested", 1, "general", "waiting", now,
                     None, None, None, None, None, "+447700900123", handoff, "", None)  # fmt: skip


def test_the_customer_hears_who_calls_and_about_what() -> None:
    said = callback_intro(_item({"intents": [{"intent": "delivery_problem"}]}))
    assert "calling you back about a delivery problem" in said
    plain = callback_intro(_item({"intents": [{"intent": "request_callback"}]}))
    assert "calling you back, as you asked" in plain
