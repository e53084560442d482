"""The trainers' loop in a real browser (Debian's chromium through Playwright)
against the console, with a bot running in this process on a private copy of
the project: callers say something the model gets wrong; the trainer assigns
the right intent in the inbox, retrains from the models page, reads the
comparison and deploys; the running bot answers new calls with the new model;
rollback restores the old behaviour."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from bot.call import CallEngine
from bot.console import ConsoleServer, ConsoleSettings
from bot.queue import AgentQueue
from bot.settings import Settings, load_settings
from tests.e2e.test_console_browser import CHROMIUM, CHROMIUM_ARGS
from tests.training_project import copy_project, project_env

pytestmark = [pytest.mark.slow, pytest.mark.retrain]

# The shipped model does not understand these (nlu_fallback); they mean refund_status.
DOSH = "when do i get my dosh back"
VARIANTS = (DOSH, "er when do i get my dosh back", "when will i get my dosh back")
PASSWORD = "a trainer's password"
# Generous: these tests run at low CPU priority beside the others (scripts/test.sh).
RETRAIN_TIMEOUT_MS = 1_800_000


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory, dialogue_model: Path) -> Settings:
    tmp = tmp_path_factory.mktemp("training-browser")
    project = copy_project(tmp / "project", dialogue_model)
    env = {**project_env(project, tmp / "var"), "VOICEBOT_DIALOGUE_MODEL_POLL_SECONDS": "1"}
    return load_settings(project, env=env)


@pytest.fixture(scope="module")
def bot(settings: Settings) -> Iterator[CallEngine]:
    """The running bot: it follows deployments like any bot process."""
    engine = CallEngine(settings)
    engine.start()
    yield engine
    engine.close()


@pytest.fixture(scope="module")
def console_url(settings: Settings) -> Iterator[str]:
    queue = AgentQueue(settings.store_url)
    queue.add_agent("tina", PASSWORD, "trainer", ["general"])
    queue.close()
    console = ConsoleSettings(database_url=settings.store_url, port=0, project=settings)
    with ConsoleServer(console) as server:
        yield server.url


@pytest.fixture(scope="module")
def page(console_url: str) -> Iterator[Page]:
    with sync_playwright() as playwright:
        browser: Browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        found = context.new_page()
        found.goto(console_url + "/login")
        found.get_by_label("Name").fill("tina")
        found.get_by_label("Password").fill(PASSWORD)
        found.get_by_role("button", name="Log in").click()
        expect(found).to_have_url(re.compile(r"/training$"))
        yield found
        context.close()
        browser.close()


def understood(bot: CallEngine, text: str) -> str:
    """The intent a new call's first turn gets; the call then ends. (The call
    runs on a thread of its own: Playwright's loop holds this one.)"""

    def one_call() -> str:
        call = bot.new_call()
        try:
            return asyncio.run(bot.turn(call, text)).intent
        finally:
            bot.end_call(call, "caller_hang_up")

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(one_call).result(timeout=300)


def wait_for_model(bot: CallEngine, name: str, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while bot.model_name != name:
        assert time.monotonic() < deadline, f"the bot still runs {bot.model_name}, not {name}"
        time.sleep(0.5)


def test_the_trainer_fixes_a_misunderstanding_in_the_browser(
    bot: CallEngine, page: Page, console_url: str, dialogue_model: Path
) -> None:
    shipped = dialogue_model.name.removesuffix(".tar.gz")
    for variant in VARIANTS:
        assert understood(bot, variant) != "refund_status"
    assert bot.store is not None
    bot.store.flush()

    page.goto(console_url + "/training")
    row = page.locator("tr[data-item-id]", has_text=DOSH)
    expect(row).to_have_count(1)
    expect(row.locator("td").nth(2)).to_have_text("3")  # three turns, one item
    expect(row).to_contain_text("fallback")
    row.locator("input[name=item_ids]").check()
    page.get_by_label("Assign an existing intent").check()
    page.get_by_label("Existing intent", exact=True).select_option("refund_status")
    page.get_by_role("button", name="Save decision").click()
    expect(page.locator("tr[data-item-id]", has_text=DOSH)).to_have_count(0)
    expect(page.locator("#validation")).to_contain_text("passes", timeout=600_000)

    page.goto(console_url + "/training/models")
    expect(page.locator(f"tr[data-model='{shipped}']")).to_have_class(re.compile("production"))
    page.locator("#retrain").click()
    expect(page).to_have_url(re.compile(r"/training/jobs/\d+$"))
    expect(page.locator("#job-state")).to_have_text("succeeded", timeout=RETRAIN_TIMEOUT_MS)
    expect(page.locator("#job-progress")).to_have_attribute("value", re.compile(r"^1(\.0)?$"))
    page.locator("#job-result").click()

    expect(page).to_have_url(re.compile(r"/training/models/dialogue-[0-9a-f]+$"))
    candidate = page.url.rsplit("/", 1)[1]
    assert candidate != shipped
    expect(page.locator("#comparison")).to_contain_text(shipped)
    expect(page.locator("#verdict")).to_be_visible()
    expect(page.locator("#intent-scores")).to_contain_text("refund_status")
    drawn = page.locator("#confusion").first.evaluate("img => img.complete && img.naturalWidth")
    assert drawn and drawn > 100
    page.locator("#deploy-form button[type=submit]").click()

    expect(page).to_have_url(re.compile(r"/training/models"))
    expect(page.locator(f"tr[data-model='{candidate}']")).to_have_class(re.compile("production"))
    wait_for_model(bot, candidate)
    for variant in VARIANTS:
        assert understood(bot, variant) == "refund_status"

    page.locator("#rollback").click()
    expect(page.locator(f"tr[data-model='{shipped}']")).to_have_class(re.compile("production"))
    wait_for_model(bot, shipped)
    assert understood(bot, DOSH) != "refund_status"
