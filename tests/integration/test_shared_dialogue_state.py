"""Several bot processes sharing calls: Rasa's conversation state in a SQL
tracker store on the real PostgreSQL server, turns serialised by a Redis lock
store on the real Redis server. One engine starts a call, another (after the
first is gone) takes its next turn and the conversation carries on."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import socket
import uuid
from pathlib import Path

import pytest

from bot.call import Call, CallEngine
from bot.settings import Settings, load_settings

pytestmark = pytest.mark.slow

POSTGRES_URL = os.environ.get(
    "VOICEBOT_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
REDIS_URL = os.environ.get("VOICEBOT_TEST_REDIS_URL", "redis://127.0.0.1:6379/3")


def reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=2):
            return True
    except OSError:
        return False


@pytest.fixture(scope="module")
def shared_settings(tmp_path_factory: pytest.TempPathFactory, project_dir: Path) -> Settings:
    if not (reachable("127.0.0.1", 5432) and reachable("127.0.0.1", 6379)):
        if os.environ.get("CI"):
            pytest.fail("PostgreSQL and Redis must run in CI (127.0.0.1:5432, :6379)")
        pytest.skip("needs PostgreSQL on 127.0.0.1:5432 and Redis on 127.0.0.1:6379")
    tmp = tmp_path_factory.mktemp("shared")
    settings = load_settings(
        project_dir,
        env={
            **os.environ,
            "VOICEBOT_BACKEND_DATABASE": str(tmp / "backend.sqlite3"),
            "VOICEBOT_STORE_URL": f"sqlite:///{tmp / 'calls.sqlite3'}",
        },
    )
    dialogue = dataclasses.replace(
        settings.dialogue, tracker_store_url=POSTGRES_URL, lock_store_url=REDIS_URL
    )
    return dataclasses.replace(settings, dialogue=dialogue)


def turn(settings: Settings, call_id: str, text: str) -> tuple[list[str], str]:
    async def one() -> tuple[list[str], str]:
        engine = CallEngine(settings)
        engine.start()
        try:
            lock_store = type(engine.dialogue._agent.lock_store).__name__
            result = await engine.turn(Call(call_id=call_id), text)
            return list(result.bot), lock_store
        finally:
            engine.close()

    return asyncio.run(one())


def test_another_process_continues_the_call(
    shared_settings: Settings, dialogue_model: Path
) -> None:
    call_id = f"shared-{uuid.uuid4().hex[:8]}"
    first, lock_store = turn(shared_settings, call_id, "where is my order")
    assert lock_store == "RedisLockStore"
    assert "order number" in " ".join(first)
    # A different engine, as on another machine: the form waits for the number.
    second, _ = turn(shared_settings, call_id, "one two three four five")
    assert "shipped" in " ".join(second)
