"""What the trainer pages make of URLs and numbers: notices, dates, deltas."""

from __future__ import annotations

from datetime import datetime, timezone
from urllib.parse import parse_qsl, urlsplit

import pytest

from bot.console.training_views import (
    delta_class,
    delta_text,
    inbox_filter,
    notice_url,
    training_notice,
    when_text,
)


def _query(url: str) -> dict[str, str]:
    return dict(parse_qsl(urlsplit(url).query))


def test_a_decision_notice_counts_what_was_written() -> None:
    url = notice_url("/training", "decided", items=2, written=3, duplicates=1)
    assert url == "/training?notice=decided&items=2&written=3&duplicates=1"
    notice = training_notice(_query(url))
    assert notice is not None and notice.kind == "ok"
    assert notice.text == "Saved for 2 items: 3 examples written, 1 already in the training data."
    one = training_notice({"notice": "decided", "items": "1", "written": "1", "duplicates": "0"})
    assert one is not None and one.text == "Saved for 1 item: 1 example written."


def test_a_notice_repeats_only_names_from_its_url() -> None:
    deployed = training_notice({"notice": "deployed", "model": "dialogue-0123abcd"})
    assert deployed is not None
    assert deployed.text == "dialogue-0123abcd is production; new calls use it."
    # Anything but a model or intent name is not shown, nor is a notice made of it.
    assert training_notice({"notice": "deployed", "model": "You won! Call 555"}) is None
    assert training_notice({"notice": "response_set", "intent": "<b>x</b>"}) is None
    garbled = training_notice({"notice": "decided", "items": "-1", "written": "x"})
    assert garbled is not None and garbled.text == "Saved for 0 items: 0 examples written."
    # The console's other notices still work on the trainer pages.
    state_set = training_notice({"notice": "state_set"})
    assert state_set is not None and state_set.text == "Your state is updated."
    assert training_notice({}) is None


def test_the_inbox_filter_reads_the_forms_dates_as_whole_utc_days() -> None:
    wanted = inbox_filter(
        "fallback", " order_status ", "2026-11-01", "2026-11-27", " parcel ", True
    )
    assert wanted.since == datetime(2026, 11, 1, tzinfo=timezone.utc)
    assert wanted.until == datetime(2026, 11, 28, tzinfo=timezone.utc)
    assert (wanted.reason, wanted.intent, wanted.search) == ("fallback", "order_status", "parcel")
    assert wanted.include_routine
    assert inbox_filter("", "", "", "", "", False).since is None
    with pytest.raises(ValueError, match="is not a date like"):
        inbox_filter("", "", "27/11/2026", "", "", False)
    with pytest.raises(ValueError, match="unknown reason"):
        inbox_filter("bored", "", "", "", "", False)


def test_deltas_and_times_for_people() -> None:
    assert (delta_text(0.0123), delta_class(0.0123)) == ("+0.012", "better")
    assert (delta_text(-0.05), delta_class(-0.05)) == ("−0.050", "worse")
    assert (delta_text(0.0), delta_class(0.0)) == ("±0.000", "")
    assert when_text(datetime(2026, 11, 27, 23, 54, 42)) == "2026-11-27 23:54 UTC"
    assert when_text("2026-11-27T23:54:42+00:00") == "2026-11-27 23:54 UTC"
    assert when_text(None) == when_text("") == "—"
