"""A caller's name and date of birth said in a real text call (real model, real
action server, real call store): agents read them while the call is live; once
it ends, neither the stored turn nor the trainers' inbox nor the training data
written from the inbox holds them."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.call import CallEngine
from bot.events import BotTurn, CallStarted, TranscriptFinal
from bot.privacy import Redactor
from bot.settings import load_settings
from bot.store import CallStore
from bot.training.inbox import InboxFilter, ReviewInbox
from bot.training.service import TrainingWorkflow
from tests.conftest import isolated_env
from tests.training_project import copy_rasa_files

pytestmark = pytest.mark.slow

THE_CALLER = (
    "my name is margaret thatcherington and my date of birth is the third of march nineteen eighty"
)
REDACTED = "my name is [name] and my date of birth is [date_of_birth]"


@pytest.fixture(scope="module")
def redactor() -> Redactor:
    return Redactor()


def test_the_call_store_and_the_inbox_keep_neither_name_nor_date_of_birth(
    call_engine: CallEngine, redactor: Redactor
) -> None:
    store = call_engine.store
    assert store is not None

    async def call() -> tuple[str, str]:
        call = call_engine.new_call([], "text")
        await call_engine.turn(call, THE_CALLER)
        store.flush()
        (live,) = store.turns(call.call_id)
        call_engine.end_call(call, "caller_hang_up")
        return call.call_id, live["transcript"]

    call_id, live = asyncio.run(call())
    assert live == THE_CALLER  # an agent taking the call reads what was said
    store.flush()
    (kept,) = store.turns(call_id)
    assert kept["transcript"] == REDACTED
    inbox = ReviewInbox(store.engine, redactor)
    said = [turn.text for turn in inbox.read_turns() if turn.call_id == call_id]
    assert said == [REDACTED]


@pytest.fixture
def workflow(tmp_path: Path, redactor: Redactor) -> Iterator[TrainingWorkflow]:
    project = copy_rasa_files(tmp_path / "project")
    settings = load_settings(project, env=isolated_env(tmp_path / "var"))
    found = TrainingWorkflow(settings, redactor=redactor)
    yield found
    found.close()


def test_training_data_written_from_the_inbox_holds_placeholders(
    workflow: TrainingWorkflow,
) -> None:
    from rasa.shared.nlu.training_data.loading import load_data

    # A call still in progress: its stored turn is not redacted yet.
    store = CallStore(workflow.settings.store_url)
    try:
        store.listener(CallStarted("live", 0, "text"))
        store.listener(TranscriptFinal("live", 10, THE_CALLER, 1.0))
        store.listener(BotTurn("live", 20, user=THE_CALLER, intent="nlu_fallback", confidence=0.3))
        store.flush()
    finally:
        store.close()
    (item,) = workflow.items(InboxFilter())
    assert item.text == REDACTED
    (decision,) = workflow.annotate([item.id], "intent", "tess", intent="account_help")
    assert decision.examples == (REDACTED,)
    (written,) = (workflow.project_dir / file for file in decision.files)
    assert "thatcherington" not in written.read_text(encoding="utf-8")
    # Rasa reads the placeholders as plain words, not as entity annotations.
    (example,) = [
        message
        for message in load_data(str(written)).intent_examples
        if message.get("text") == REDACTED
    ]
    assert example.get("intent") == "account_help"
    assert not example.get("entities")
