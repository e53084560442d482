"""The supervised rasa_sdk action server: starts, answers, comes back after a crash."""

from __future__ import annotations

import json
import os
import signal
import urllib.request
from pathlib import Path

import pytest

from bot.action_server import ActionServer, ActionServerError, health_ok


@pytest.fixture
def server(project_dir: Path, tmp_path: Path):  # type: ignore[no-untyped-def]
    srv = ActionServer(project_dir, tmp_path / "backend.sqlite3", tmp_path / "actions.log")
    yield srv
    srv.stop()


def call_action(url: str, name: str) -> dict:
    body = {
        "next_action": name,
        "sender_id": "test",
        "tracker": {
            "sender_id": "test",
            "slots": {},
            "latest_message": {"intent": {"name": "request_human"}, "entities": [], "text": ""},
            "events": [],
            "active_loop": {},
            "latest_action_name": "action_listen",
        },
        "domain": {"responses": {}, "slots": {}, "intents": [], "entities": [], "forms": {}},
        "version": "3.6.2",
    }
    request = urllib.request.Request(
        url, json.dumps(body).encode(), {"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10) as reply:
        return json.loads(reply.read())


def test_server_runs_the_project_actions(server: ActionServer) -> None:
    server.start()
    assert health_ok(server.base_url)
    reply = call_action(server.webhook_url, "action_escalate")
    slots = {e["name"]: e["value"] for e in reply["events"] if e["event"] == "slot"}
    assert slots["escalation_reason"] == "explicit_request"
    assert reply["responses"][0]["response"] == "utter_escalate_explicit_request"


def test_a_killed_server_is_restarted_on_the_same_port(server: ActionServer) -> None:
    server.start()
    port, pid = server.port, server.pid
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    assert not server.alive()
    assert server.ensure_running() is True
    assert server.port == port and server.pid != pid
    assert health_ok(server.base_url)
    assert server.restarts == 1
    assert server.ensure_running() is False


def test_a_server_too_slow_to_start_is_reported_and_stopped(
    project_dir: Path, tmp_path: Path
) -> None:
    srv = ActionServer(project_dir, tmp_path / "b.sqlite3", tmp_path / "actions.log", 0.05)
    with pytest.raises(ActionServerError, match="did not answer within"):
        srv.start()
    assert not srv.alive()


def test_the_server_ends_when_the_bot_process_is_killed(project_dir: Path, tmp_path: Path) -> None:
    """A bot killed outright must not leave its action server running."""
    import subprocess
    import sys
    import time

    script = (
        "import sys, time; from pathlib import Path; from bot.action_server import ActionServer;"
        f"s = ActionServer(Path({str(project_dir)!r}), Path({str(tmp_path / 'b.sqlite3')!r}),"
        f" Path({str(tmp_path / 'a.log')!r})); s.start(); print(s.pid, flush=True); time.sleep(600)"
    )
    bot = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert bot.stdout is not None
    child = int(bot.stdout.readline())
    bot.send_signal(signal.SIGKILL)
    bot.wait(timeout=30)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    os.kill(child, signal.SIGKILL)
    raise AssertionError("the action server outlived the bot")
