"""Training jobs: progress read from Rasa's output, and the job record."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import sqlalchemy as sa

from bot.store import create_db_engine
from bot.training.jobs import JobError, JobLog, RasaTrainProgress
from bot.training.schema import jobs

# Lines as `rasa train` prints them (progress bars redraw with carriage returns);
# config.yml's classifier and policy are bot.quick_load's.
RASA_OUTPUT = [
    "2026-11-27 23:52:40 INFO     rasa.engine.training.hooks  - Starting to train component "
    "'WhitespaceTokenizer'.",
    "2026-11-27 23:52:49 INFO     rasa.engine.training.hooks  - Starting to train component "
    "'QuickDIETClassifier'.",
    "Epochs:   0%|          | 0/150 [00:00<?, ?it/s]",
    "Epochs:  50%|█████     | 75/150 [00:36<00:43,  2.21it/s, t_loss=3.06, i_acc=1]",
    "Epochs: 100%|██████████| 150/150 [01:10<00:00,  2.1it/s, t_loss=3.0, i_acc=1]",
    "2026-11-27 23:54:01 INFO     rasa.engine.training.hooks  - Starting to train component "
    "'QuickTEDPolicy'.",
    "Epochs:  40%|████      | 40/100 [00:10<00:15,  4it/s, t_loss=1.2, loss=0.9, acc=0.95]",
    "Your Rasa model is trained and saved at 'models/dialogue-0123.tar.gz'.",
]


@pytest.mark.parametrize("rasas_own", [False, True])
def test_progress_follows_the_classifier_and_policy_epochs(rasas_own: bool) -> None:
    seen: list[tuple[str, float]] = []
    reader = RasaTrainProgress(lambda stage, f: seen.append((stage, f)), share=1.0)
    for line in RASA_OUTPUT:
        # A project may name Rasa's own DIETClassifier and TEDPolicy instead.
        reader(line.replace("'Quick", "'") if rasas_own else line)
    fractions = [f for _stage, f in seen]
    assert fractions == sorted(fractions)
    stages = [stage for stage, _f in seen]
    assert "training the intent classifier: epoch 75 of 150" in stages
    assert "training the dialogue policy: epoch 40 of 100" in stages
    assert dict(seen)["training the intent classifier: epoch 150 of 150"] == pytest.approx(0.6)
    assert seen[-1] == ("model trained", 1.0)
    assert reader.tail[-1].startswith("Your Rasa model is trained")


def test_progress_is_scaled_to_the_training_share() -> None:
    seen: list[float] = []
    reader = RasaTrainProgress(lambda _stage, f: seen.append(f), share=0.5)
    for line in RASA_OUTPUT:
        reader(line)
    assert max(seen) == pytest.approx(0.5)


@pytest.fixture
def log(tmp_path: Path) -> JobLog:
    return JobLog(create_db_engine(f"sqlite:///{tmp_path / 'jobs.sqlite3'}"))


def test_a_job_records_progress_result_and_failure(log: JobLog) -> None:
    printed: list[str] = []

    def work(progress):  # type: ignore[no-untyped-def]
        progress("halfway", 0.5)
        return {"model": "dialogue-x"}, "dialogue-x"

    job = log.run("evaluate", "tess", work, on_progress=lambda s, f: printed.append(s))
    assert job.state == "succeeded" and job.progress == 1.0
    assert job.result == {"model": "dialogue-x"} and job.model_name == "dialogue-x"
    assert printed == ["halfway"]

    def broken(progress):  # type: ignore[no-untyped-def]
        raise RuntimeError("rasa train failed")

    with pytest.raises(RuntimeError):
        log.run("retrain", "tess", broken)
    failed = log.recent(1)[0]
    assert failed.state == "failed" and "rasa train failed" in (failed.error or "")
    assert [j.kind for j in log.recent(kind="evaluate")] == ["evaluate"]


def test_a_second_retrain_waits_for_the_running_one(log: JobLog) -> None:
    release = threading.Event()
    started = threading.Event()

    def slow(progress):  # type: ignore[no-untyped-def]
        started.set()
        release.wait(30)
        return {}, None

    first = log.run_in_background("retrain", "tess", slow)
    assert started.wait(30)
    with pytest.raises(JobError, match="already running"):
        log.start("retrain", "sam")
    assert log.start("validate", "sam").state == "running"  # other kinds may run
    release.set()
    for _ in range(300):
        found = log.get(first.id)
        if found is not None and not found.running:
            break
        threading.Event().wait(0.1)
    assert log.get(first.id).state == "succeeded"  # type: ignore[union-attr]
    assert log.start("retrain", "sam").state == "running"


def test_a_retrain_whose_process_died_is_marked_interrupted(log: JobLog) -> None:
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    job = log.start("retrain", "tess")
    log.update(job.id, pid=int(dead.stdout))
    assert int(dead.stdout) != os.getpid()
    fresh = log.start("retrain", "sam")
    assert fresh.state == "running"
    with log.engine.connect() as conn:
        state = conn.execute(sa.select(jobs.c.state).where(jobs.c.id == job.id)).scalar_one()
    assert state == "interrupted"
