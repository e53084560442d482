"""The agents' console in a real browser: Debian's chromium driven by Playwright
against uvicorn on 127.0.0.1 with a fresh SQLite queue and call store. Calls
are queued and talked over from the test, as the bot would."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect, sync_playwright

from bot.console import ConsoleServer, ConsoleSettings
from bot.events import BotTurn, CallStarted
from bot.queue import Agent, AgentQueue, QueueItem
from bot.store import CallStore

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-gpu",
]
# The page should update within a second; allow twice that before failing.
LIVE_TIMEOUT_MS = 2000
PASSWORD = "correct horse"
HANDOFF = {
    "intents": [
        {"name": "order_status", "confidence": 0.41},
        {"name": "request_refund", "confidence": 0.33},
    ],
    "details": {"order_id": "58213", "email": "pat@example.org"},
    "transcript": [
        {"t_ms": 1200, "speaker": "bot", "text": "Hello, how can I help?"},
        {"t_ms": 4300, "speaker": "caller", "text": "my parcel never came I want a person"},
    ],
}
SUMMARY = "Order 58213 has not arrived; the caller wants a refund and asked for a person."


@dataclass
class Console:
    url: str
    queue: AgentQueue
    calls: CallStore
    agents: dict[str, Agent]

    def waiting_call(self, call_id: str) -> QueueItem:
        return self.queue.enqueue(
            call_id, "call", "explicit_request", 1, "orders", "+15550123", HANDOFF, SUMMARY
        )


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.fail("chromium is missing: apt-get install chromium")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        yield browser
        browser.close()


@pytest.fixture
def console(tmp_path: Path) -> Iterator[Console]:
    database_url = f"sqlite:///{tmp_path / 'console.sqlite3'}"
    queue = AgentQueue(database_url)
    calls = CallStore(database_url)
    agents = {
        "ann": queue.add_agent("ann", PASSWORD, "agent", ["orders"]),
        "bob": queue.add_agent("bob", PASSWORD, "agent", ["orders"]),
        "cat": queue.add_agent("cat", PASSWORD, "agent", ["orders"]),
        "sue": queue.add_agent("sue", PASSWORD, "supervisor", ["orders"]),
    }
    settings = ConsoleSettings(database_url=database_url, port=0)
    try:
        with ConsoleServer(settings) as server:
            yield Console(server.url, queue, calls, agents)
    finally:
        calls.close()
        queue.close()


@pytest.fixture
def contexts(browser: Browser) -> Iterator[list[BrowserContext]]:
    """Separate browser profiles (cookies), one per person; closed at the end."""
    opened: list[BrowserContext] = []
    yield opened
    for context in opened:
        context.close()


def log_in(browser: Browser, contexts: list[BrowserContext], console: Console, name: str) -> Page:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    contexts.append(context)
    page = context.new_page()
    page.goto(console.url + "/login")
    page.get_by_label("Name").fill(name)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(re.compile(r"/queue$"))
    return page


def live(page: Page) -> None:
    """Waits until the page's event stream is connected."""
    expect(page.locator("#live-status")).to_have_text("Live", timeout=5000)


def test_an_agent_takes_a_call_talks_to_the_caller_and_resolves_it(
    browser: Browser, console: Console, contexts: list[BrowserContext], tmp_path: Path
) -> None:
    page = log_in(browser, contexts, console, "ann")
    live(page)
    expect(page.locator("#queue-body")).to_contain_text("No one is waiting.")
    page.evaluate("window.stillTheSamePage = true")

    item = console.waiting_call("call-7")
    row = page.locator(f'#queue-body tr[data-item-id="{item.id}"]')
    expect(row).to_contain_text(SUMMARY, timeout=LIVE_TIMEOUT_MS)
    expect(row).to_contain_text("explicit request")
    expect(row).to_contain_text("+15550123")
    expect(row).to_contain_text("high (1)")
    assert page.evaluate("window.stillTheSamePage") is True  # no reload
    expect(page.locator("#waiting-count")).to_have_text("1")
    page.screenshot(path=str(tmp_path / "queue.png"), full_page=True)

    row.get_by_role("button", name=re.compile("^Take call")).click()
    expect(page).to_have_url(re.compile(rf"/calls/{item.id}$"))
    expect(page.locator("#handoff-reason")).to_have_text("explicit request")
    expect(page.locator("#handoff-number")).to_have_text("+15550123")
    expect(page.locator("#handoff-summary")).to_have_text(SUMMARY)
    intents = page.locator("#handoff-intents")
    expect(intents.locator("tr", has_text="order_status")).to_contain_text("41%")
    expect(intents.locator("tr", has_text="request_refund")).to_contain_text("33%")
    details = page.locator("#handoff-details")
    expect(details).to_contain_text("58213")
    expect(details).to_contain_text("pat@example.org")
    transcript = page.locator("#handoff-transcript")
    expect(transcript).to_contain_text("0:04 Caller: my parcel never came I want a person")
    expect(page.get_by_label(re.compile("is$"))).to_have_value("on_call")

    # The caller keeps talking to the bot; the agent reads along.
    page.evaluate("window.stillTheSamePage = true")
    console.calls.listener(CallStarted("call-7", 0, "voice"))
    console.calls.listener(
        BotTurn("call-7", 16_000, user="it was a blue box", intent="inform",
                bot=("Thanks, an agent is reading this.",))
    )  # fmt: skip
    console.calls.flush()
    live_transcript = page.locator("#live-transcript")
    expect(live_transcript).to_contain_text("it was a blue box", timeout=LIVE_TIMEOUT_MS)
    expect(live_transcript).to_contain_text("0:16 Bot: Thanks, an agent is reading this.")
    assert page.evaluate("window.stillTheSamePage") is True
    page.screenshot(path=str(tmp_path / "call.png"), full_page=True)

    page.get_by_label("The bot speaks this to the caller").fill("Your refund is on its way.")
    page.get_by_role("button", name="Say", exact=True).click()
    expect(page.locator("#notice")).to_have_text("Sent: the bot will say it to the caller.")
    pending = console.queue.pending_messages("call-7")
    assert [(m.text, m.agent_id) for m in pending] == [
        ("Your refund is on its way.", console.agents["ann"].id)
    ]
    expect(page.locator("#sent-messages")).to_contain_text("Your refund is on its way.")

    page.get_by_label("Disposition").select_option("refund_issued")
    page.get_by_label("Notes").fill("Refunded order 58213.")
    page.get_by_role("button", name="Resolve").click()
    expect(page).to_have_url(re.compile(r"/queue\?notice=resolved$"))
    expect(page.locator("#notice")).to_have_text("Call resolved.")
    resolved = console.queue.item(item.id)
    assert resolved is not None
    assert (resolved.status, resolved.disposition, resolved.notes) == (
        "resolved",
        "refund_issued",
        "Refunded order 58213.",
    )
    assert resolved.claimed_by == console.agents["ann"].id

    # After a call the agent wraps up, then says when they are free again.
    state = page.get_by_label(re.compile("is$"))
    expect(state).to_have_value("wrap_up")
    state.select_option("available")
    page.get_by_role("button", name="Set state").click()
    expect(page.locator("#notice")).to_have_text("Your state is updated.")
    agent = console.queue.agent(console.agents["ann"].id)
    assert agent is not None and agent.state == "available"


def test_a_call_taken_by_one_agent_is_refused_to_another(
    browser: Browser, console: Console, contexts: list[BrowserContext]
) -> None:
    item = console.waiting_call("call-8")
    ann = log_in(browser, contexts, console, "ann")
    bob = log_in(browser, contexts, console, "bob")
    # Cat's page is stale: its event stream is cut, as on a bad network, so it
    # still offers the call after someone else took it.
    cat_context = browser.new_context()
    contexts.append(cat_context)
    cat_context.route("**/queue/events", lambda route: route.abort())
    cat = cat_context.new_page()
    cat.goto(console.url + "/login")
    cat.get_by_label("Name").fill("cat")
    cat.get_by_label("Password").fill(PASSWORD)
    cat.get_by_role("button", name="Log in").click()
    expect(cat).to_have_url(re.compile(r"/queue$"))
    live(bob)
    for page in (ann, bob, cat):
        expect(page.locator(f'tr[data-item-id="{item.id}"]')).to_be_visible()

    ann.locator(f'tr[data-item-id="{item.id}"]').get_by_role("button").click()
    expect(ann).to_have_url(re.compile(rf"/calls/{item.id}$"))
    # A live page drops the taken call by itself.
    expect(bob.locator(f'tr[data-item-id="{item.id}"]')).to_have_count(0, timeout=LIVE_TIMEOUT_MS)
    expect(bob.locator("#queue-body")).to_contain_text("No one is waiting.")

    cat.locator(f'tr[data-item-id="{item.id}"]').get_by_role("button").click()
    expect(cat.locator("#notice")).to_have_text("Someone else already took that call.")
    expect(cat.locator("#notice")).to_have_attribute("role", "alert")
    claimed = console.queue.item(item.id)
    assert claimed is not None
    assert (claimed.status, claimed.claimed_by) == ("claimed", console.agents["ann"].id)


def test_the_supervisor_sees_todays_figures_and_chart(
    browser: Browser, console: Console, contexts: list[BrowserContext], tmp_path: Path
) -> None:
    queue, ann = console.queue, console.agents["ann"]
    for number in range(3):
        done = console.waiting_call(f"call-{number}")
        assert queue.claim(done.id, ann.id) is not None
        queue.resolve(done.id, ann.id, "resolved", "")
    console.waiting_call("call-gone")
    queue.abandon("call-gone")
    console.waiting_call("call-waiting")

    page = log_in(browser, contexts, console, "sue")
    page.get_by_role("link", name="Dashboard").click()
    expect(page).to_have_url(re.compile(r"/dashboard$"))
    metrics = page.locator("#metrics")
    expect(metrics.locator('[data-metric="queue_length"] dd')).to_have_text("1")
    expect(metrics.locator('[data-metric="calls_handled"] dd')).to_have_text("3")
    expect(metrics.locator('[data-metric="abandonment_rate"] dd')).to_have_text("25%")
    expect(metrics.locator('[data-metric="service_level"] dd')).to_have_text("75%")
    chart = page.get_by_role("img", name="Calls and callbacks queued per hour today")
    expect(chart).to_be_visible()
    expect(chart.locator("rect.bar")).to_have_count(1)
    expect(chart.locator("rect.bar")).to_have_attribute("data-count", "5")
    page.screenshot(path=str(tmp_path / "dashboard.png"), full_page=True)

    # The figures follow the queue without a reload.
    expect(page.locator("#live-status")).to_have_text("Live", timeout=5000)
    page.evaluate("window.stillTheSamePage = true")
    console.waiting_call("call-new")
    waiting_now = metrics.locator('[data-metric="queue_length"] dd')
    expect(waiting_now).to_have_text("2", timeout=LIVE_TIMEOUT_MS)
    expect(chart.locator("rect.bar")).to_have_attribute("data-count", "6")
    assert page.evaluate("window.stillTheSamePage") is True
