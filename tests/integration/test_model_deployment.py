"""A running bot follows deployments: new calls get the newly deployed model,
calls in progress finish on theirs, and a rollback is one step back.

The second model is the shipped archive under another name (an identical
twin): which model a call runs on is seen from the model file it loaded.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.call import CallEngine
from bot.settings import Settings, load_settings
from bot.training import deploy
from tests.training_project import copy_project, project_env

TWIN = "dialogue-feedfacefeedface"


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory, dialogue_model: Path) -> Settings:
    tmp = tmp_path_factory.mktemp("deployment")
    project = copy_project(tmp / "project", dialogue_model)
    twin = project / "models" / f"{TWIN}.tar.gz"
    shutil.copy2(dialogue_model, twin)
    # Older than the shipped model, so the bot's own choice stays the shipped one.
    os.utime(twin, (dialogue_model.stat().st_mtime - 60,) * 2)
    env = {**project_env(project, tmp / "var"), "VOICEBOT_DIALOGUE_MODEL_POLL_SECONDS": "0"}
    return load_settings(project, env=env)


@pytest.fixture(scope="module")
def engine(settings: Settings) -> Iterator[CallEngine]:
    found = CallEngine(settings)
    found.start()
    yield found
    found.close()


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.new_event_loop().run_until_complete(coro)


def test_new_calls_switch_while_a_call_in_progress_keeps_its_model(
    engine: CallEngine, settings: Settings, dialogue_model: Path
) -> None:
    assert engine.store is not None
    shipped = dialogue_model.name.removesuffix(".tar.gz")
    assert engine.model_name == shipped
    assert not engine.refresh_model()  # nothing deployed yet

    in_progress = engine.new_call()
    asked = run(engine.turn(in_progress, "where is my order"))
    assert asked.requested_slot == "order_id"

    initial = deploy.ensure_production_recorded(
        engine.store.engine, settings.project_dir, settings.models_dir
    )
    assert initial is not None
    assert initial.model_name == shipped and initial.action == "initial"
    deploy.record(engine.store.engine, TWIN, "deploy", "tess")
    assert engine.refresh_model()
    assert engine.model_name == TWIN

    # The call that started before the deploy goes on with its own model and
    # its own conversation: the order number answers the question it was asked.
    assert engine.dialogue_of(in_progress).model_path.name == dialogue_model.name
    answered = run(engine.turn(in_progress, "one two three four five"))
    assert answered.entities.get("order_id") == "12345"
    assert any("12345" in line or "shipped" in line.lower() for line in answered.bot)
    # The old model is released (its connections closed) when its last call ends.
    assert engine.retired_models == [shipped]
    engine.end_call(in_progress, "caller_hang_up")
    assert engine.retired_models == []

    fresh = engine.new_call()
    assert engine.dialogue_of(fresh).model_path.name == f"{TWIN}.tar.gz"
    assert run(engine.turn(fresh, "where is my order")).intent == "order_status"

    target = deploy.rollback_target(engine.store.engine)
    assert target == shipped
    deploy.record(engine.store.engine, target, "rollback", "tess")
    assert engine.refresh_model()
    assert engine.model_name == shipped
    assert engine.dialogue_of(engine.new_call()).model_path.name == dialogue_model.name
    assert [d.action for d in deploy.history(engine.store.engine)] == [
        "rollback",
        "deploy",
        "initial",
    ]


def test_a_deployed_model_missing_here_leaves_the_bot_on_its_model(engine: CallEngine) -> None:
    assert engine.store is not None
    before = engine.model_name
    deploy.record(engine.store.engine, "dialogue-0000000000000000", "deploy", "tess")
    assert not engine.refresh_model()
    assert engine.model_name == before
    call = engine.new_call()
    assert run(engine.turn(call, "where is my order")).intent == "order_status"
    deploy.record(engine.store.engine, before, "rollback", "tess")


def test_an_explicitly_configured_model_is_never_switched(
    settings: Settings, engine: CallEngine, dialogue_model: Path
) -> None:
    assert engine.store is not None
    pinned = dataclasses.replace(
        settings, dialogue=dataclasses.replace(settings.dialogue, model=str(dialogue_model))
    )
    other = CallEngine(pinned)
    other.start()
    try:
        deploy.record(engine.store.engine, TWIN, "deploy", "tess")
        assert not other.refresh_model()
        assert other.model_name == dialogue_model.name.removesuffix(".tar.gz")
    finally:
        other.close()


def test_a_new_engine_starts_on_the_deployed_model(settings: Settings) -> None:
    fresh = CallEngine(settings)
    fresh.start()
    try:
        assert fresh.store is not None
        assert fresh.model_name == deploy.deployed_model_name(fresh.store.engine)
    finally:
        fresh.close()


def test_rollback_needs_an_earlier_model(tmp_path: Path) -> None:
    from bot.store import create_db_engine

    db = create_db_engine(f"sqlite:///{tmp_path / 'calls.sqlite3'}")
    with pytest.raises(deploy.DeployError, match="nothing has been deployed"):
        deploy.rollback_target(db)
    deploy.record(db, "dialogue-aaaa", "initial", "system")
    with pytest.raises(deploy.DeployError, match="only ever run"):
        deploy.rollback_target(db)
    with pytest.raises(deploy.DeployError, match="was never in production"):
        deploy.rollback_target(db, "dialogue-bbbb")
    assert deploy.rollback_target(db, "dialogue-aaaa") == "dialogue-aaaa"
    assert deploy.deployed_model_name(db) == "dialogue-aaaa"


def test_a_copy_of_a_loaded_model_is_not_loaded_again(
    engine: CallEngine, settings: Settings, dialogue_model: Path, tmp_path: Path
) -> None:
    """The twin is the shipped archive under another name: a second agent on
    it gets the graph already loaded (no half-minute load), its own trackers,
    and its own model file; a file that differs loads on its own."""
    from bot.dialogue import Dialogue, DialogueError
    from bot.model_cache import MAX_MODELS, loaded_models

    twin = settings.models_dir / f"{TWIN}.tar.gz"
    first = engine.dialogue
    second = Dialogue(twin, settings.dialogue.actions_url or "http://127.0.0.1:1/webhook")
    try:
        shared = second._agent.processor.graph_runner
        assert shared is first._agent.processor.graph_runner
        assert second.model_path == twin and first.model_path != twin
        assert second._agent.tracker_store is not first._agent.tracker_store
        assert second._agent.domain.responses == first._agent.domain.responses
        assert 1 <= loaded_models() <= MAX_MODELS
    finally:
        second.close()

    broken = tmp_path / "dialogue-0123456789abcdef.tar.gz"
    broken.write_bytes(dialogue_model.read_bytes()[:1000])  # another file: loaded, and fails
    with pytest.raises(DialogueError, match="cannot load dialogue model"):
        Dialogue(broken, "http://127.0.0.1:1/webhook")
