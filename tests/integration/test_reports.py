"""Reports on a few days of a call centre: calls stored by the real call store
(through its event listener) and escalations through the real queue, on
SQLite (one file, or the call store and the queue in two files) and on the
real PostgreSQL server; the same figures from ``voicebot report --json`` and
the console's report download.

The days are in Europe/London around the start of summer time (Sunday 30
March 2025 has 23 hours), so local days and UTC days differ by one hour.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pytest

from bot.console import ConsoleServer, ConsoleSettings
from bot.events import CallEnded, CallStarted, EndReason, Escalated, SurveyAnswered
from bot.queue import AgentQueue, QueueSettings
from bot.queue.schema import create_queue_engine
from bot.reporting import CallReports, Period, Report, ReportError, make_period
from bot.store import CallStore, create_db_engine
from tests.conftest import PROJECT_DIR, isolated_env
from tests.integration.test_console_http import WebClient
from tests.queue_databases import ManualClock, queue_database

ZONE = "Europe/London"
PERIOD = Period(date(2025, 3, 29), date(2025, 4, 1), ZONE)
PASSWORD = "a long enough password"


def utc(day: int, hour: int, minute: int = 0, second: int = 0, month: int = 3) -> datetime:
    return datetime(2025, month, day, hour, minute, second, tzinfo=timezone.utc)


class CallCentre:
    """Drives the store and the queue as the bot and the console would, on
    one manual clock."""

    def __init__(self, store: CallStore, queue: AgentQueue, clock: ManualClock) -> None:
        self.store, self.queue, self.clock = store, queue, clock
        self.started: dict[str, datetime] = {}

    def start(self, call_id: str, at: datetime) -> None:
        self.clock.now = at
        self.started[call_id] = at
        self.store.listener(CallStarted(call_id, 0, "phone"))

    def _t_ms(self, call_id: str) -> int:
        return int((self.clock.now - self.started[call_id]).total_seconds() * 1000)

    def escalate(self, call_id: str, reason: str, after_s: float, kind: str = "call") -> int:
        self.clock.now = self.started[call_id] + timedelta(seconds=after_s)
        self.store.listener(Escalated(call_id, self._t_ms(call_id), reason=reason))
        return self.queue.enqueue(call_id, kind, reason).id

    def agent_takes(self, item_id: int, agent_id: int, wait_s: float, handle_s: float) -> None:
        self.clock.advance(wait_s)
        assert self.queue.claim(item_id, agent_id) is not None
        self.clock.advance(handle_s)
        self.queue.resolve(item_id, agent_id, "resolved")

    def caller_gives_up(self, call_id: str, wait_s: float) -> None:
        self.clock.advance(wait_s)
        assert len(self.queue.abandon(call_id)) == 1

    def end(self, call_id: str, after_s: float, reason: EndReason, error: str = "") -> None:
        self.clock.now = self.started[call_id] + timedelta(seconds=after_s)
        ended = CallEnded(call_id, self._t_ms(call_id), reason, error=error or None)
        self.store.listener(ended)

    def survey(self, call_id: str, score: int, via: str) -> None:
        self.clock.advance(5)
        self.store.listener(SurveyAnswered(call_id, self._t_ms(call_id), score=score, via=via))


def run_the_days(centre: CallCentre, ann: int, bob: int) -> None:
    """Three days in London, and a call on either side of them."""
    # Friday 28 March, 23:59 GMT: before the period; its agent time is too.
    centre.start("before", utc(28, 23, 59))
    item = centre.escalate("before", "explicit_request", 10)
    centre.agent_takes(item, bob, wait_s=50, handle_s=100)
    centre.end("before", 170, EndReason.RESOLVED)

    # Saturday 29 March (GMT).
    centre.start("bot-1", utc(29, 10))
    centre.end("bot-1", 40, EndReason.BOT_HANG_UP)
    centre.survey("bot-1", 5, "keypad")
    centre.start("ann-1", utc(29, 11))
    item = centre.escalate("ann-1", "explicit_request", 20)
    centre.agent_takes(item, ann, wait_s=15, handle_s=120)  # within 20 s
    centre.end("ann-1", 160, EndReason.RESOLVED)
    centre.survey("ann-1", 4, "voice")

    # Sunday 30 March: the clocks go forward at 01:00 GMT.
    centre.start("bob-1", utc(30, 9))
    item = centre.escalate("bob-1", "complaint", 30)
    centre.agent_takes(item, bob, wait_s=45, handle_s=300)  # too late for the service level
    centre.end("bob-1", 380, EndReason.RESOLVED)
    centre.survey("bob-1", 2, "text")
    centre.start("error", utc(30, 12))
    centre.end("error", 3, EndReason.ERROR, "dialogue_failed")

    # Monday 31 March (BST); its first call came in at 23:30 UTC on Sunday.
    centre.start("bot-2", utc(30, 23, 30))
    centre.end("bot-2", 80, EndReason.CALLER_HANG_UP)
    centre.start("ann-2", utc(31, 14))
    item = centre.escalate("ann-2", "explicit_request", 10)
    centre.agent_takes(item, ann, wait_s=5, handle_s=60)
    centre.end("ann-2", 80, EndReason.RESOLVED)
    centre.start("gave-up", utc(31, 15))
    centre.escalate("gave-up", "repeated_fallback", 25)
    centre.caller_gives_up("gave-up", wait_s=30)
    centre.end("gave-up", 55, EndReason.CALLER_HANG_UP)
    centre.start("call-me", utc(31, 16))
    item = centre.escalate("call-me", "callback_requested", 40, kind="callback")
    centre.end("call-me", 50, EndReason.CALLBACK_ARRANGED)
    centre.agent_takes(item, ann, wait_s=600, handle_s=90)  # callbacks have no service level

    # Tuesday 1 April, 00:30 BST: after the period.
    centre.start("after", utc(31, 23, 30))
    centre.end("after", 30, EndReason.BOT_HANG_UP)


# What the days above come to.
EXPECTED = {
    "from": "2025-03-29",
    "to": "2025-04-01",
    "timezone": ZONE,
    "service_level_seconds": 20.0,
    "calls": 8,
    "resolved_by_bot": 2,
    "escalated": 5,
    "containment_rate": 0.25,
    "escalations_by_reason": {
        "explicit_request": 2,
        "callback_requested": 1,
        "complaint": 1,
        "repeated_fallback": 1,
    },
    "top_escalation_reasons": [
        {"reason": "explicit_request", "calls": 2, "share": 0.4},
        {"reason": "callback_requested", "calls": 1, "share": 0.2},
        {"reason": "complaint", "calls": 1, "share": 0.2},
        {"reason": "repeated_fallback", "calls": 1, "share": 0.2},
    ],
    "abandoned": 1,
    "service_level": 0.5,  # ann-1 and ann-2 in time, bob-1 late, gave-up gone
    "average_handle_seconds": (120 + 300 + 60 + 90) / 4,
    "bot_average_handle_seconds": (40 + 80) / 2,
    "csat_average": (5 + 4 + 2) / 3,
    "csat_responses": 3,
    "daily": [
        {"date": "2025-03-29", "resolved_by_bot": 1, "escalated": 1},
        {"date": "2025-03-30", "resolved_by_bot": 0, "escalated": 1},
        {"date": "2025-03-31", "resolved_by_bot": 1, "escalated": 3},
    ],
}
EXPECTED_AGENTS = [
    {"agent": "ann", "handled": 3, "average_handle_seconds": 90.0, "csat_average": 4.0,
     "csat_responses": 1},
    {"agent": "bob", "handled": 1, "average_handle_seconds": 300.0, "csat_average": 2.0,
     "csat_responses": 1},
]  # fmt: skip
# Latest first: bob-1's answer came on Sunday, the others on Saturday.
EXPECTED_ANSWERS = [
    ("bob-1", 2, "text", utc(30, 9, 6, 25)),
    ("ann-1", 4, "voice", utc(29, 11, 2, 45)),
    ("bot-1", 5, "keypad", utc(29, 10, 0, 45)),
]


@dataclass(frozen=True)
class World:
    backend: str
    calls_url: str
    queue_url: str
    queue_settings: QueueSettings

    def reports(self) -> CallReports:
        calls_engine = create_db_engine(self.calls_url)
        if self.queue_url == self.calls_url:
            return CallReports(calls_engine, calls_engine, owns_engines=True)
        return CallReports(calls_engine, create_queue_engine(self.queue_url), owns_engines=True)

    def report(self, period: Period = PERIOD) -> Report:
        reports = self.reports()
        try:
            return reports.report(period, 20.0)
        finally:
            reports.close()


@pytest.fixture(scope="module")
def world(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[World]:
    """The days above, stored once per database layout (``request.param``)."""
    folder = tmp_path_factory.mktemp("reports")
    backend = "postgresql" if request.param == "postgresql" else "sqlite"
    with queue_database(backend, folder) as database, pytest.MonkeyPatch.context() as patch:
        calls_url = database.url
        if request.param == "sqlite-two-files":
            calls_url = f"sqlite:///{folder / 'calls.sqlite3'}"
        clock = ManualClock()
        # The store stamps rows with the wall clock: it follows the test's clock instead.
        patch.setattr("bot.store._now", clock)
        store = CallStore(calls_url, redact_after_call=False)
        queue = AgentQueue(database.url, database.settings, clock=clock)
        try:
            ann = queue.add_agent("ann", PASSWORD, "agent", ["general"]).id
            bob = queue.add_agent("bob", PASSWORD, "agent", ["general"]).id
            queue.add_agent("sue", PASSWORD, "supervisor", ["general"])
            run_the_days(CallCentre(store, queue, clock), ann, bob)
            store.flush()
        finally:
            store.close()
            queue.close()
        yield World(request.param, calls_url, database.url, database.settings)


# Every database layout; those voicebot and the console use by default (one
# database for calls and queue); one of them.
EVERY_LAYOUT = pytest.mark.parametrize(
    "world", ["sqlite", "sqlite-two-files", "postgresql"], indirect=True
)
ONE_DATABASE = pytest.mark.parametrize("world", ["sqlite", "postgresql"], indirect=True)
ONE_FILE = pytest.mark.parametrize("world", ["sqlite"], indirect=True)


@EVERY_LAYOUT
def test_each_figure_of_the_period(world: World) -> None:
    report = world.report()
    shown = report.to_dict()
    assert {key: shown[key] for key in EXPECTED} == EXPECTED
    assert [{k: v for k, v in a.items() if k != "agent_id"} for a in shown["agents"]] == (
        EXPECTED_AGENTS
    )
    answers = [(a.call_id, a.score, a.via, a.answered_at) for a in report.latest_survey_answers]
    assert answers == EXPECTED_ANSWERS


@EVERY_LAYOUT
def test_days_are_the_zones_days(world: World) -> None:
    """In UTC, London's Monday starts an hour later: its first call (23:30 UTC
    on Sunday) is Sunday's, and Tuesday's 00:30 call is Monday's."""
    in_utc = world.report(Period(date(2025, 3, 29), date(2025, 4, 1), "UTC"))
    assert [(d.resolved_by_bot, d.escalated) for d in in_utc.daily] == [(1, 1), (1, 1), (1, 3)]
    assert in_utc.calls == 9  # the 8, and Tuesday's 00:30 call
    sunday = world.report(Period(date(2025, 3, 30), date(2025, 3, 31), ZONE))
    assert (sunday.calls, sunday.escalated, sunday.resolved_by_bot) == (2, 1, 0)
    assert [a.name for a in sunday.agents] == ["bob"]


@ONE_DATABASE
def test_a_quiet_period_has_no_averages(world: World) -> None:
    empty = world.report(Period(date(2025, 2, 1), date(2025, 2, 3), ZONE)).to_dict()
    assert {k: empty[k] for k in ("calls", "resolved_by_bot", "escalated", "abandoned")} == {
        "calls": 0, "resolved_by_bot": 0, "escalated": 0, "abandoned": 0,
    }  # fmt: skip
    for key in ("containment_rate", "service_level", "average_handle_seconds",
                "bot_average_handle_seconds", "csat_average"):  # fmt: skip
        assert empty[key] is None, key
    assert empty["agents"] == [] and empty["latest_survey_answers"] == []
    assert empty["daily"] == [
        {"date": "2025-02-01", "resolved_by_bot": 0, "escalated": 0},
        {"date": "2025-02-02", "resolved_by_bot": 0, "escalated": 0},
    ]


def _voicebot(tmp_path: Path, store_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **isolated_env(tmp_path), "VOICEBOT_STORE_URL": store_url}
    return subprocess.run(
        [sys.executable, "-m", "bot", *args],
        capture_output=True,
        text=True,
        cwd=PROJECT_DIR,
        env=env,
        timeout=120,
    )


@ONE_DATABASE
def test_voicebot_report_json_prints_the_report(world: World, tmp_path: Path) -> None:
    args = ("report", "--from", "2025-03-29", "--to", "2025-04-01", "--timezone", ZONE, "--json")
    run = _voicebot(tmp_path, world.calls_url, *args)
    assert run.returncode == 0, run.stderr
    assert len(run.stdout.splitlines()) == 1
    printed = json.loads(run.stdout)
    assert {key: printed[key] for key in EXPECTED} == EXPECTED
    assert [a["agent"] for a in printed["agents"]] == ["ann", "bob"]
    assert [a["call_id"] for a in printed["latest_survey_answers"]] == ["bob-1", "ann-1", "bot-1"]
    assert printed["latest_survey_answers"][0]["answered_at"] == "2025-03-30T09:06:25+00:00"

    table = _voicebot(tmp_path, world.calls_url, *args[:-1])
    assert table.returncode == 0, table.stderr
    assert "Report for 2025-03-29 to 2025-03-31 (3 days, Europe/London time)" in table.stdout
    assert "Containment" in table.stdout and "25%" in table.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--from", "2025-02-30"], "--from: expected a date like 2025-03-14, got '2025-02-30'"),
        (["--from", "2025-03-29", "--to", "2025-03-29"], "--to (2025-03-29) must come after"),
    ],
)
def test_voicebot_report_refuses_bad_input_in_one_line(
    tmp_path: Path, args: list[str], message: str
) -> None:
    run = _voicebot(tmp_path, f"sqlite:///{tmp_path / 'calls.sqlite3'}", "report", "--json", *args)
    assert run.returncode == 2
    assert run.stdout == ""
    assert len(run.stderr.strip().splitlines()) == 1
    assert run.stderr.startswith("voicebot: error: ") and message in run.stderr


def test_a_missing_call_store_is_an_error_not_an_empty_report(tmp_path: Path) -> None:
    """A mistyped store URL must not read as a quiet day."""
    run = _voicebot(tmp_path, f"sqlite:///{tmp_path / 'typo.sqlite3'}", "report")
    assert run.returncode == 2
    assert run.stderr.startswith("voicebot: error: no call store at")


def test_periods_from_dates() -> None:
    today = date(2025, 3, 31)
    assert make_period(None, None, ZONE, today=today) == Period(today, date(2025, 4, 1), ZONE)
    assert make_period("2025-03-01", None, today=today) == Period(
        date(2025, 3, 1), date(2025, 4, 1)
    )
    assert make_period(None, "2025-03-10", today=today) == Period(
        date(2025, 3, 9), date(2025, 3, 10)
    )
    assert [PERIOD.midnight(day).hour for day in PERIOD.days] == [0, 0, 23]  # GMT, GMT, BST
    with pytest.raises(ReportError, match="at most 366 days"):
        make_period("2024-01-01", "2025-03-01", today=today)
    with pytest.raises(ReportError, match="To: expected a date"):
        make_period("2025-03-01", "tomorrow", labels=("From", "To"))
    with pytest.raises(ReportError, match="unknown time zone 'Mars/Olympus'"):
        make_period(None, None, "Mars/Olympus")


@ONE_FILE
def test_the_console_offers_the_report_to_supervisors_only(world: World) -> None:
    settings = ConsoleSettings(
        database_url=world.queue_url, port=0, queue=QueueSettings(day_timezone=ZONE)
    )
    with ConsoleServer(settings) as server:
        sue = WebClient(server.url)
        assert sue.log_in("sue", PASSWORD).status == 303
        download = sue.get("/dashboard/report.json?from=2025-03-29&to=2025-04-01")
        assert download.status == 200
        assert download.headers.get("content-disposition") == (
            'attachment; filename="report-2025-03-29-to-2025-04-01.json"'
        )
        downloaded = json.loads(download.body)
        assert {key: downloaded[key] for key in EXPECTED} == EXPECTED

        refused = sue.get("/dashboard/report.json?from=2025-03-29&to=someday")
        assert refused.status == 400
        assert json.loads(refused.body) == {
            "error": "bad_date",
            "message": "To: expected a date like 2025-03-14, got 'someday'",
        }
        page = sue.get("/dashboard?from=2025-04-02&to=2025-03-29")
        assert page.status == 400
        assert "To (2025-03-29) must come after From (2025-04-02)" in page.body
        assert 'value="2025-04-02"' in page.body  # what was typed stays in the form

        ann = WebClient(server.url)
        assert ann.log_in("ann", PASSWORD).status == 303
        assert ann.get("/dashboard/report.json").status == 403
