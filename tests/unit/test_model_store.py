from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from bot.model_store import (
    ModelError,
    data_fingerprint,
    list_models,
    resolve_model,
    train_model,
)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "data" / "nlu").mkdir(parents=True)
    (tmp_path / "config.yml").write_text("pipeline: []\n")
    (tmp_path / "domain.yml").write_text('version: "3.1"\n')
    (tmp_path / "data" / "nlu" / "a.yml").write_text("nlu: []\n")
    return tmp_path


def fake_model(models: Path, fingerprint: str, age_seconds: float = 0) -> Path:
    models.mkdir(exist_ok=True)
    path = models / f"dialogue-{fingerprint}.tar.gz"
    path.write_bytes(b"model")
    (models / f"dialogue-{fingerprint}.json").write_text(
        json.dumps({"fingerprint": fingerprint, "trained_at": "2026-01-01T00:00:00+00:00"})
    )
    stamp = path.stat().st_mtime - age_seconds
    os.utime(path, (stamp, stamp))
    return path


def test_fingerprint_follows_the_data(project: Path) -> None:
    first = data_fingerprint(project)
    assert first == data_fingerprint(project)
    (project / "data" / "nlu" / "a.yml").write_text("nlu: [changed]\n")
    second = data_fingerprint(project)
    assert second != first
    (project / "data" / "nlu" / "b.yml").write_text("nlu: []\n")
    assert data_fingerprint(project) != second


def test_fingerprint_ignores_files_that_do_not_shape_the_model(project: Path) -> None:
    before = data_fingerprint(project)
    (project / "README.md").write_text("words")
    (project / "data" / "notes.txt").write_text("words")
    assert data_fingerprint(project) == before


def test_the_current_data_model_is_preferred(project: Path) -> None:
    models = project / "models"
    current = fake_model(models, data_fingerprint(project), age_seconds=100)
    fake_model(models, "0123456789abcdef")
    assert resolve_model(project, models) == current
    assert [m.fingerprint for m in list_models(models)][0] == "0123456789abcdef"


def test_newest_model_is_used_when_none_matches(project: Path) -> None:
    models = project / "models"
    fake_model(models, "aaaaaaaaaaaaaaaa", age_seconds=100)
    newest = fake_model(models, "bbbbbbbbbbbbbbbb")
    assert resolve_model(project, models) == newest


def test_no_model_names_the_command(project: Path) -> None:
    with pytest.raises(ModelError, match="voicebot models train"):
        resolve_model(project, project / "models")


def test_an_explicit_model_must_exist(project: Path) -> None:
    with pytest.raises(ModelError, match="does not exist"):
        resolve_model(project, project / "models", "models/nothing.tar.gz")


def test_training_is_skipped_when_the_data_has_a_model(project: Path) -> None:
    models = project / "models"
    existing = fake_model(models, data_fingerprint(project))
    # No Rasa project here could train; finding the model means nothing ran.
    assert train_model(project, models).path == existing
