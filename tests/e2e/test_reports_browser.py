"""The supervisors' report in a real browser (Debian's chromium through
Playwright) against the console on 127.0.0.1: three days of calls stored by
the real call store and queue (tests/integration/test_reports.py), a
supervisor chooses the period and reads the figures, the daily chart, the top
reason, the agents and the survey answers, and downloads the JSON."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect, sync_playwright

from bot.console import ConsoleServer, ConsoleSettings
from bot.queue import AgentQueue, QueueSettings
from bot.store import CallStore
from tests.e2e.test_console_browser import CHROMIUM, CHROMIUM_ARGS
from tests.integration.test_reports import EXPECTED, PASSWORD, ZONE, CallCentre, run_the_days
from tests.queue_databases import ManualClock


@pytest.fixture
def console_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    database_url = f"sqlite:///{tmp_path / 'console.sqlite3'}"
    clock = ManualClock()
    # The store stamps rows with the wall clock: it follows the test's clock instead.
    monkeypatch.setattr("bot.store._now", clock)
    store = CallStore(database_url, redact_after_call=False)
    queue = AgentQueue(database_url, clock=clock)
    try:
        ann = queue.add_agent("ann", PASSWORD, "agent", ["general"]).id
        bob = queue.add_agent("bob", PASSWORD, "agent", ["general"]).id
        queue.add_agent("sue", PASSWORD, "supervisor", ["general"])
        run_the_days(CallCentre(store, queue, clock), ann, bob)
        store.flush()
    finally:
        store.close()
        queue.close()
    monkeypatch.undo()
    settings = ConsoleSettings(
        database_url=database_url, port=0, queue=QueueSettings(day_timezone=ZONE)
    )
    with ConsoleServer(settings) as server:
        yield server.url


@pytest.fixture
def page(console_url: str) -> Iterator[Page]:
    if not CHROMIUM.exists():
        pytest.fail("chromium is missing: apt-get install chromium")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        context = browser.new_context(
            viewport={"width": 1280, "height": 900}, accept_downloads=True
        )
        opened = context.new_page()
        yield opened
        context.close()
        browser.close()


def test_a_supervisor_reads_the_report_of_a_chosen_period(
    page: Page, console_url: str, tmp_path: Path
) -> None:
    errors: list[str] = []
    page.on("console", lambda message: message.type == "error" and errors.append(message.text))
    page.goto(console_url + "/login")
    page.get_by_label("Name").fill("sue")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.get_by_role("link", name="Dashboard").click()
    expect(page.locator("#report-period")).to_contain_text("(1 day)")  # today, by default

    page.get_by_label("From").fill("2025-03-29")
    page.get_by_label("To (not counted)").fill("2025-04-01")
    page.get_by_role("button", name="Show").click()
    expect(page).to_have_url(re.compile(r"/dashboard\?from=2025-03-29&to=2025-04-01$"))
    expect(page.locator("#report-period")).to_have_text("29 Mar 2025 – 31 Mar 2025 (3 days)")

    cards = page.locator("#report-cards")
    for key, shown in {
        "calls": "8",
        "resolved_by_bot": "2",
        "containment_rate": "25%",
        "escalated": "5",
        "abandoned": "1",
        "service_level": "50%",
        "average_handle": "2:22",  # 142.5 s
        "bot_average_handle": "1:00",
        "csat_average": "3.7",  # (5 + 4 + 2) / 3
    }.items():
        expect(cards.locator(f'[data-report="{key}"] dd')).to_have_text(shown)

    chart = page.get_by_role("img", name="Calls per day: resolved by the bot and went to people")
    expect(chart).to_be_visible()
    bars = chart.locator("rect[data-day]")
    expect(bars).to_have_count(5)  # no bar for Sunday's bot-resolved calls: there were none
    for day in EXPECTED["daily"]:
        for series in ("resolved_by_bot", "escalated"):
            bar = chart.locator(f'rect[data-day="{day["date"]}"][data-series="{series}"]')
            if day[series]:
                expect(bar).to_have_attribute("data-count", str(day[series]))
            else:
                expect(bar).to_have_count(0)

    top = page.locator("#report-reasons tbody tr").first
    expect(top).to_have_attribute("data-reason", "explicit_request")
    expect(top).to_contain_text("explicit request")
    expect(top.locator("td").nth(2)).to_have_text("40%")
    ann = page.locator('#report-agents tr[data-agent="ann"] td')
    expect(ann).to_have_text(["ann", "3", "1:30", re.compile(r"^4\.0\s+\(1\)$")])
    survey = page.locator('#report-surveys tr[data-call-id="bob-1"] td')
    expect(survey).to_have_text(["bob-1", "2", "text", "30 Mar 2025 10:06"])  # BST
    page.screenshot(path=str(tmp_path / "report.png"), full_page=True)

    with page.expect_download() as download:
        page.get_by_role("link", name="Download as JSON").click()
    downloaded = json.loads(Path(download.value.path()).read_text(encoding="utf-8"))
    assert {key: downloaded[key] for key in EXPECTED} == EXPECTED

    page.get_by_role("link", name="Last 7 days").click()
    expect(page.locator("#report-period")).to_contain_text("(7 days)")
    expect(page.get_by_role("link", name="Last 7 days")).to_have_attribute("aria-current", "true")
    assert not [text for text in errors if "Content Security Policy" in text], errors
