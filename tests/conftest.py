"""Shared fixtures: the project, its trained dialogue model, text calls."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

PROJECT_DIR = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def project_dir() -> Path:
    return PROJECT_DIR


@pytest.fixture(scope="session")
def dialogue_model(project_dir: Path) -> Path:
    """The model for the current data, trained now if `make` has not already."""
    from bot.model_store import train_model

    return train_model(project_dir, project_dir / "models").path


@dataclass
class ChatRun:
    returncode: int
    turns: list[dict]
    stderr: str

    def calls(self) -> list[list[dict]]:
        """Turns grouped by call, in order."""
        grouped: list[list[dict]] = []
        for turn in self.turns:
            if not grouped or grouped[-1][0]["call_id"] != turn["call_id"]:
                grouped.append([])
            grouped[-1].append(turn)
        return grouped


ChatRunner = Callable[..., ChatRun]


def chat_runner(tmp_path: Path, project_dir: Path) -> ChatRunner:
    """Runs `voicebot chat --json` with the given caller lines on a fresh demo backend."""

    def run(
        lines: Sequence[str],
        extra_args: Sequence[str] = (),
        env: dict[str, str] | None = None,
        timeout: float = 600,
    ) -> ChatRun:
        # Calls, queue, backend and logs in the test's folder, never the project's var/.
        full_env = {**os.environ, **isolated_env(tmp_path), **(env or {})}
        proc = subprocess.run(
            [sys.executable, "-m", "bot", "chat", "--json", *extra_args],
            input="".join(f"{line}\n" for line in lines),
            capture_output=True,
            text=True,
            cwd=project_dir,
            env=full_env,
            timeout=timeout,
        )
        turns = [json.loads(line) for line in proc.stdout.splitlines()]
        return ChatRun(proc.returncode, turns, proc.stderr)

    return run


@pytest.fixture
def run_chat(tmp_path: Path, project_dir: Path, dialogue_model: Path) -> ChatRunner:
    return chat_runner(tmp_path, project_dir)


def isolated_env(tmp: Path) -> dict[str, str]:
    """Environment that keeps a test's calls, backend, queue and caches in ``tmp``."""
    return {
        "VOICEBOT_BACKEND_DATABASE": str(tmp / "backend.sqlite3"),
        "VOICEBOT_STORE_URL": f"sqlite:///{tmp / 'calls.sqlite3'}",
        "VOICEBOT_STORE_RECORDINGS_DIR": str(tmp / "recordings"),
        "VOICEBOT_PATHS_VAR_DIR": str(tmp / "var"),
        "VOICEBOT_LOGGING_FILE": str(tmp / "voicebot.log"),
    }


@pytest.fixture(scope="module")
def isolated_settings(tmp_path_factory: pytest.TempPathFactory, project_dir: Path):  # type: ignore[no-untyped-def]
    """Settings for one test module, everything it writes in a temporary folder."""
    from bot.settings import load_settings

    tmp = tmp_path_factory.mktemp("isolated")
    return load_settings(project_dir, env={**os.environ, **isolated_env(tmp)})


@pytest.fixture(scope="module")
def call_engine(isolated_settings, dialogue_model: Path):  # type: ignore[no-untyped-def]
    """A started call engine (dialogue model, action server, store, queue)."""
    from bot.call import CallEngine

    engine = CallEngine(isolated_settings)
    engine.start()
    yield engine
    engine.close()
