"""Bad input and broken parts in text calls: a reply or a clear error, never a crash."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ChatRunner

pytestmark = pytest.mark.slow


def test_bad_lines_get_sensible_replies(run_chat: ChatRunner) -> None:
    long_line = "where is my order " + "blah " * 2000
    lines = [
        "",
        "   ",
        long_line,
        "wo ist meine bestellung bitte",
        "我的订单在哪里",
        "where\x00 is\x1b[31m my\x07 order",
        "goodbye",
    ]
    run = run_chat(lines)
    assert run.returncode == 0, run.stderr[-3000:]
    assert len(run.turns) == len(lines)
    silent, blank, long_turn, german, chinese, control, bye = run.turns
    for turn in (silent, blank):
        assert turn["user"] == ""
        assert turn["intent"] == ""
        assert turn["bot"] == ["Sorry, I didn't hear anything. How can I help you?"]
    assert len(long_turn["user"]) <= 500
    assert long_turn["bot"], long_turn
    for turn in (german, chinese):
        assert turn["bot"], turn
        assert turn["intent"] in {"nlu_fallback", "out_of_scope"}, turn
    # Handed to a person after the two lines above: the caller now waits.
    assert control["user"] == "where is my order"
    assert control["intent"] == "on_hold" and control["bot"] == []
    assert bye["intent"] == "on_hold"
    # Two unanswerable lines in a row are escalated as repeated_fallback.
    assert chinese["escalation_reason"] == "repeated_fallback"


def test_backend_failure_escalates_as_action_failure(run_chat: ChatRunner, tmp_path: Path) -> None:
    broken = tmp_path / "broken.sqlite3"
    broken.write_bytes(b"this is not a database" * 100)
    run = run_chat(
        ["where is my order one two three four five"],
        env={"VOICEBOT_BACKEND_DATABASE": str(broken)},
    )
    assert run.returncode == 0, run.stderr[-3000:]
    (turn,) = run.turns
    assert turn["escalated"] is True
    assert turn["escalation_reason"] == "action_failure"
    assert "trouble reaching our systems" in " ".join(turn["bot"])


def test_dead_action_server_escalates_as_action_failure(run_chat: ChatRunner) -> None:
    run = run_chat(
        ["where is my order one two three four five", "goodbye"],
        extra_args=["--actions-url", "http://127.0.0.1:9/webhook"],
    )
    assert run.returncode == 0, run.stderr[-3000:]
    first, bye = run.turns
    assert first["escalation_reason"] == "action_failure"
    assert first["bot"][0] == (
        "I'm sorry, I'm having trouble reaching our systems right now. "
        "Let me put you through to a colleague."
    )
    assert "in the queue" in first["bot"][-1]
    assert bye["intent"] == "on_hold"  # waiting for a person: the goodbye ends the wait


def _voicebot(
    args: list[str], project_dir: Path, env: dict[str, str]
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "bot", *args],
        input="hello\n",
        capture_output=True,
        text=True,
        cwd=project_dir,
        env={**os.environ, **env},
        timeout=300,
    )


def test_missing_model_names_the_command(project_dir: Path, tmp_path: Path) -> None:
    proc = _voicebot(
        ["chat", "--json"],
        project_dir,
        {
            "VOICEBOT_PATHS_MODELS_DIR": str(tmp_path / "empty"),
            "VOICEBOT_LOGGING_FILE": str(tmp_path / "log"),
        },
    )
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert "voicebot models train" in proc.stderr


def test_corrupt_model_names_the_command(project_dir: Path, tmp_path: Path) -> None:
    corrupt = tmp_path / "dialogue-corrupt.tar.gz"
    corrupt.write_bytes(b"\x1f\x8b not really gzip")
    proc = _voicebot(
        ["chat", "--json", "--model", str(corrupt)],
        project_dir,
        {"VOICEBOT_LOGGING_FILE": str(tmp_path / "log")},
    )
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert "voicebot models train" in proc.stderr
