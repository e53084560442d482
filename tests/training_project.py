"""A private copy of the Rasa project for tests that change training data,
retrain, deploy and roll back, so the real project and its models stay as
they are."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from tests.conftest import PROJECT_DIR, isolated_env

PROJECT_FILES = ("domain.yml", "config.yml", "endpoints.yml", "credentials.yml", "voicebot.yml")
PROJECT_DIRS = ("data", "actions", "audio")


def copy_rasa_files(target: Path) -> Path:
    """Copies the domain, config, training data and held-out set into ``target``:
    enough to annotate, validate and evaluate, not to run calls."""
    target.mkdir(parents=True, exist_ok=True)
    for name in ("domain.yml", "config.yml"):
        shutil.copy2(PROJECT_DIR / name, target / name)
    shutil.copytree(PROJECT_DIR / "data", target / "data")
    (target / "tests" / "nlu").mkdir(parents=True)
    shutil.copy2(PROJECT_DIR / "tests/nlu/holdout.yml", target / "tests/nlu/holdout.yml")
    return target


def copy_project(target: Path, model: Path) -> Path:
    """Copies the project's Rasa files, actions and the held-out set into
    ``target``, with ``model`` as the one trained model. Rasa's training cache
    is shared with the real project, so a retrain after a small data change
    reuses what it can."""
    copy_rasa_files(target)
    for name in PROJECT_FILES:
        shutil.copy2(PROJECT_DIR / name, target / name)
    for name in PROJECT_DIRS:
        if name != "data":
            shutil.copytree(
                PROJECT_DIR / name, target / name, ignore=shutil.ignore_patterns("__pycache__")
            )
    models = target / "models"
    models.mkdir()
    if _same_device(model, models):
        os.link(model, models / model.name)
    else:
        shutil.copy2(model, models / model.name)
    meta = model.with_name(model.name.removesuffix(".tar.gz") + ".json")
    if meta.is_file():
        shutil.copy2(meta, models / meta.name)
    (PROJECT_DIR / ".rasa").mkdir(exist_ok=True)
    (target / ".rasa").symlink_to(PROJECT_DIR / ".rasa")
    return target


def _same_device(a: Path, b: Path) -> bool:
    return a.stat().st_dev == b.stat().st_dev


def project_env(project: Path, var: Path) -> dict[str, str]:
    """Environment for ``voicebot`` run in the copy: its calls, queue and logs in ``var``."""
    return {**os.environ, **isolated_env(var)}
