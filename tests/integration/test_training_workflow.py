"""The training workflow's rules, on a copy of the project's data and a real
call store: what is written, what is refused, and what two trainers at once
do. No model is trained here."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from bot.events import BotTurn, CallEnded, CallStarted, EndReason, TranscriptFinal
from bot.settings import load_settings
from bot.store import CallStore
from bot.training import data_files
from bot.training.deploy import DeployError, record, rollback_target
from bot.training.inbox import InboxFilter
from bot.training.service import TrainingWorkflow, WorkflowError
from tests.conftest import PROJECT_DIR, isolated_env
from tests.training_project import copy_rasa_files


@pytest.fixture
def workflow(tmp_path: Path) -> Iterator[TrainingWorkflow]:
    project = copy_rasa_files(tmp_path / "project")
    settings = load_settings(project, env=isolated_env(tmp_path / "var"))
    found = TrainingWorkflow(settings)
    yield found
    found.close()


def said(workflow: TrainingWorkflow, call_id: str, text: str, intent: str = "nlu_fallback") -> None:
    store = CallStore(workflow.settings.store_url)
    store.listener(CallStarted(call_id, 0, "text"))
    store.listener(TranscriptFinal(call_id, 10, text, 1.0))
    store.listener(BotTurn(call_id, 20, user=text, intent=intent, confidence=0.3))
    store.listener(CallEnded(call_id, 30, EndReason.CALLER_HANG_UP))
    store.close()


def test_an_item_keeps_its_id_whatever_the_date_filter(workflow: TrainingWorkflow) -> None:
    said(workflow, "a", "when do i get my dosh back")
    said(workflow, "b", "um when do i get my dosh back")
    (everything,) = workflow.items()
    today = datetime.now(timezone.utc) - timedelta(hours=1)
    (filtered,) = workflow.items(InboxFilter(since=today))
    assert filtered.id == everything.id
    assert workflow.item(filtered.id).count == 2


def test_examples_in_the_test_set_never_become_training_data(workflow: TrainingWorkflow) -> None:
    held_out = "ive got a question about a charge"  # a held-out billing sentence
    assert held_out in (PROJECT_DIR / "tests/nlu/holdout.yml").read_text(encoding="utf-8")
    said(workflow, "a", held_out)
    (item,) = workflow.items()
    (decision,) = workflow.annotate([item.id], "intent", "tess", intent="billing_question")
    assert decision.examples == () and decision.duplicates == (held_out,)
    assert data_files.example_key(held_out) not in data_files.training_examples(
        workflow.project_dir
    )


def test_two_trainers_deciding_the_same_item_both_get_an_answer(
    workflow: TrainingWorkflow,
) -> None:
    said(workflow, "a", "when do i get my dosh back")
    (item,) = workflow.items()
    first = workflow._audit(item, "discard", "", data_files.WriteResult((), (), ()), "tess")
    second = workflow._audit(item, "discard", "", data_files.WriteResult((), (), ()), "sam")
    assert [r.decided_by for r in workflow.decisions()] == ["sam", "tess"]
    assert first.id != second.id
    assert workflow.items() == []


def test_a_correction_of_an_example_already_taught_is_refused(workflow: TrainingWorkflow) -> None:
    said(workflow, "a", "i want to change my password", intent="account_help")
    (item,) = workflow.items(InboxFilter(include_routine=True))
    with pytest.raises(WorkflowError, match="already an example of account_help"):
        workflow.annotate(
            [item.id], "entities", "tess", intent="account_help", entities=[("email", "password")]
        )


def test_only_answers_of_intents_made_here_can_be_written(workflow: TrainingWorkflow) -> None:
    with pytest.raises(WorkflowError, match="not the answer of an intent created here"):
        workflow.set_response("queue_position", "You are next.")
    said(workflow, "a", "do you sell gift cards")
    (item,) = workflow.items()
    workflow.annotate([item.id], "new_intent", "tess", intent="gift_cards")
    assert data_files.unfilled_stubs(workflow.project_dir) == ["utter_gift_cards"]
    with pytest.raises(WorkflowError, match="cannot contain"):
        workflow.set_response("gift_cards", "Yes, {amount} at a time.")
    workflow.set_response("gift_cards", "We do: any amount from ten pounds, online or by phone.")
    assert data_files.unfilled_stubs(workflow.project_dir) == []


def test_rollback_only_returns_to_a_model_production_ran(workflow: TrainingWorkflow) -> None:
    record(workflow.engine, "dialogue-aaaaaaaaaaaaaaaa", "initial", "system")
    record(workflow.engine, "dialogue-bbbbbbbbbbbbbbbb", "deploy", "tess")
    assert rollback_target(workflow.engine) == "dialogue-aaaaaaaaaaaaaaaa"
    with pytest.raises(DeployError, match="was never in production"):
        rollback_target(workflow.engine, "dialogue-cccccccccccccccc")
