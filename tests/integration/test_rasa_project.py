"""The Rasa project at the root, checked with Rasa's own tools."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.slow

# The held-out set must be classified at least this well (intent accuracy).
NLU_ACCURACY_FLOOR = 0.95


def _rasa(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "rasa", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=1200,
    )


def test_data_validates(project_dir: Path) -> None:
    proc = _rasa(["data", "validate"], project_dir)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]


def test_stories_pass(project_dir: Path, dialogue_model: Path, tmp_path: Path) -> None:
    proc = _rasa(
        [
            "test",
            "core",
            "--stories",
            "tests/test_stories.yml",
            "--model",
            str(dialogue_model),
            "--out",
            str(tmp_path),
            "--fail-on-prediction-errors",
            "--no-plot",
        ],  # fmt: skip
        project_dir,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    failed = tmp_path / "failed_test_stories.yml"
    assert not failed.exists() or "story:" not in failed.read_text()


def _examples(path: Path) -> set[str]:
    data = yaml.safe_load(path.read_text())
    found: set[str] = set()
    for block in data.get("nlu", []):
        for line in str(block.get("examples", "")).splitlines():
            text = line.strip().removeprefix("- ").strip()
            if text:
                found.add(" ".join(text.lower().split()))
    return found


def test_holdout_is_kept_apart_from_training(project_dir: Path) -> None:
    training: set[str] = set()
    for path in (project_dir / "data").rglob("*.yml"):
        training |= _examples(path)
    holdout = _examples(project_dir / "tests" / "nlu" / "holdout.yml")
    assert len(holdout) >= 300
    assert not training & holdout


def test_nlu_holdout_accuracy(project_dir: Path, dialogue_model: Path, tmp_path: Path) -> None:
    proc = _rasa(
        [
            "test",
            "nlu",
            "--nlu",
            "tests/nlu/holdout.yml",
            "--model",
            str(dialogue_model),
            "--out",
            str(tmp_path),
            "--no-plot",
        ],  # fmt: skip
        project_dir,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    report = json.loads((tmp_path / "intent_report.json").read_text())
    assert report["accuracy"] >= NLU_ACCURACY_FLOOR, {
        name: round(v["f1-score"], 2)
        for name, v in report.items()
        if isinstance(v, dict) and v.get("f1-score", 1) < 0.9
    }
