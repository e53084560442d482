"""The Rasa project at the root, checked with Rasa's own tools."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.slow

# The held-out set must be classified at least this well (intent accuracy),
# its paraphrases (wordings never trained on) at least PARAPHRASE_FLOOR, and
# its off-topic requests from other worlds handled (out_of_scope, or not
# understood) at least OFF_TOPIC_FLOOR.
NLU_ACCURACY_FLOOR = 0.95
PARAPHRASE_FLOOR = 0.90
OFF_TOPIC_FLOOR = 0.90
OFF_TOPIC_HANDLED = frozenset({"out_of_scope", "nlu_fallback"})


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


def _sections(path: Path) -> dict[str, dict[str, str]]:
    """Held-out examples by section (``metadata: section``), each text to its intent."""
    found: dict[str, dict[str, str]] = {}
    for block in yaml.safe_load(path.read_text()).get("nlu", []):
        section = (block.get("metadata") or {}).get("section", "main")
        for line in str(block.get("examples", "")).splitlines():
            text = line.strip().removeprefix("- ").strip()
            if text:
                found.setdefault(section, {})[text] = block["intent"]
    return found


def test_holdout_is_kept_apart_from_training(project_dir: Path) -> None:
    training: set[str] = set()
    for path in (project_dir / "data").rglob("*.yml"):
        training |= _examples(path)
    holdout = _examples(project_dir / "tests" / "nlu" / "holdout.yml")
    assert len(holdout) >= 300
    assert not training & holdout


def test_holdout_has_paraphrase_and_off_topic_sections(project_dir: Path) -> None:
    path = project_dir / "tests" / "nlu" / "holdout.yml"
    sections = _sections(path)
    domain = yaml.safe_load((project_dir / "domain.yml").read_text())
    assert set(sections["paraphrase"].values()) == set(domain["intents"])
    assert len(sections["off_topic"]) >= 150
    assert set(sections["off_topic"].values()) == {"out_of_scope"}
    worlds = {
        (block.get("metadata") or {}).get("domain")
        for block in yaml.safe_load(path.read_text())["nlu"]
        if (block.get("metadata") or {}).get("section") == "off_topic"
    }
    assert len(worlds - {None}) >= 8


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
            "--successes",
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
    predicted = {
        row["text"]: row["intent_prediction"]["name"]
        for name in ("intent_successes.json", "intent_errors.json")
        if (tmp_path / name).exists()
        for row in json.loads((tmp_path / name).read_text())
    }
    sections = _sections(project_dir / "tests" / "nlu" / "holdout.yml")
    paraphrases = sections["paraphrase"]
    wrong = {t: predicted[t] for t, intent in paraphrases.items() if predicted[t] != intent}
    assert 1 - len(wrong) / len(paraphrases) >= PARAPHRASE_FLOOR, wrong
    off_topic = sections["off_topic"]
    missed = {t: predicted[t] for t in off_topic if predicted[t] not in OFF_TOPIC_HANDLED}
    assert 1 - len(missed) / len(off_topic) >= OFF_TOPIC_FLOOR, missed
