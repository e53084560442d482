"""Escalated text calls end up in the agent queue with their handoff package."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bot.queue import AgentQueue
from tests.conftest import chat_runner

pytestmark = pytest.mark.slow


def queue_list(project_dir: Path, env: dict[str, str]) -> list[dict]:
    proc = subprocess.run(
        [sys.executable, "-m", "bot", "queue", "list", "--json"],
        capture_output=True, text=True, cwd=project_dir, env={**os.environ, **env}, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return [json.loads(line) for line in proc.stdout.splitlines()]


def test_asking_for_a_person_queues_the_call(
    project_dir: Path, dialogue_model: Path, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'calls.sqlite3'}"
    env = {"VOICEBOT_STORE_URL": url}
    run = chat_runner(tmp_path, project_dir)
    first = run(
        ["where is my order one two three four five", "can i speak to a real person please"],
        env=env,
    )
    assert first.returncode == 0, first.stderr[-2000:]
    said = " ".join(first.turns[-1]["bot"])
    assert first.turns[-1]["escalation_reason"] == "explicit_request"
    assert "You're number 1 in the queue" in said
    second = run(["i want to complain", "the heater you sent caught fire"], env=env)
    assert second.turns[-1]["escalation_reason"] == "complaint"
    callback = run(
        ["please call me back", "oh seven seven double oh nine oh oh four five six"], env=env
    )
    assert callback.turns[-1]["escalation_reason"] == "callback_requested"

    items = queue_list(project_dir, env)
    assert {k for item in items for k in item} == {
        "call_id", "kind", "reason", "priority", "position", "waiting_seconds", "summary",
    }  # fmt: skip
    by_reason = {item["reason"]: item for item in items}
    # The serious complaint (priority 4) is listed ahead of the earlier request
    # for a person; each is first in line for the agents with its skill.
    reasons = [item["reason"] for item in items]
    assert reasons.index("complaint") < reasons.index("explicit_request")
    assert by_reason["complaint"]["position"] == 1
    assert by_reason["explicit_request"]["position"] == 1
    assert by_reason["callback_requested"]["kind"] == "callback"
    request = by_reason["explicit_request"]
    assert request["call_id"] == first.turns[0]["call_id"]
    assert "order 12345" in request["summary"] and "asked for a person" in request["summary"]

    queue = AgentQueue(url)
    try:
        item = next(i for i in queue.waiting() if i.reason == "explicit_request")
    finally:
        queue.close()
    handoff = item.handoff
    assert item.skill == "orders"
    assert [i["intent"] for i in handoff["intents"]] == ["order_status", "request_human"]
    assert handoff["details"]["order_id"] == "12345"
    speakers = [line["speaker"] for line in handoff["transcript"]]
    assert speakers[0] == "caller" and "bot" in speakers
    assert handoff["transcript"][0]["text"] == "where is my order one two three four five"
    callback_item = by_reason["callback_requested"]
    assert callback_item["summary"].startswith("The caller called about a callback")


def test_a_call_queued_just_before_the_bot_dies_is_still_there(
    project_dir: Path, dialogue_model: Path, tmp_path: Path
) -> None:
    """The bot process is killed (SIGKILL) right after it escalated: the queued
    call survives, and a restarted bot process lists it."""
    import signal

    env = {
        **os.environ,
        "VOICEBOT_STORE_URL": f"sqlite:///{tmp_path / 'calls.sqlite3'}",
        "VOICEBOT_BACKEND_DATABASE": str(tmp_path / "backend.sqlite3"),
        "VOICEBOT_LOGGING_FILE": str(tmp_path / "voicebot.log"),
    }
    bot = subprocess.Popen(
        [sys.executable, "-m", "bot", "chat", "--json"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        text=True, cwd=project_dir, env=env,
    )  # fmt: skip
    assert bot.stdin is not None and bot.stdout is not None
    bot.stdin.write("i need to speak to a human\n")
    bot.stdin.flush()
    turn = json.loads(bot.stdout.readline())
    assert turn["escalation_reason"] == "explicit_request"
    bot.send_signal(signal.SIGKILL)
    bot.wait(timeout=30)
    items = queue_list(project_dir, {"VOICEBOT_STORE_URL": env["VOICEBOT_STORE_URL"]})
    assert [(i["call_id"], i["reason"], i["position"]) for i in items] == [
        (turn["call_id"], "explicit_request", 1)
    ]
