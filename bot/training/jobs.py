"""Long training work (retrain, evaluate, validate) as recorded jobs.

A job is a row in ``training_jobs`` that its runner keeps up to date: stage,
progress from 0 to 1, then the result or the error. The console starts jobs
in a background thread and its pages poll the row; the CLI runs the same work
in the foreground and records it too, so a retrain started from a terminal
shows in the console. Only one retrain runs at a time per database.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from bot.training.schema import create_training_tables, jobs

log = logging.getLogger(__name__)

Progress = Callable[[str, float], None]


class JobError(RuntimeError):
    """A job that cannot start (another one of its kind is running)."""


@dataclass(frozen=True)
class Job:
    id: int
    kind: str
    state: str
    stage: str
    progress: float
    started_by: str
    started_at: datetime
    finished_at: datetime | None
    model_name: str | None
    result: dict[str, Any] | None
    error: str | None

    @property
    def running(self) -> bool:
        return self.state == "running"

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "state": self.state,
            "stage": self.stage,
            "progress": round(self.progress, 3),
            "started_by": self.started_by,
            "started_at": self.started_at.isoformat(timespec="seconds"),
            "finished_at": self.finished_at.isoformat(timespec="seconds")
            if self.finished_at
            else None,
            "model": self.model_name,
            "result": self.result,
            "error": self.error,
        }


def _job(row: Any) -> Job:
    return Job(
        id=row["id"],
        kind=row["kind"],
        state=row["state"],
        stage=row["stage"] or "",
        progress=float(row["progress"] or 0.0),
        started_by=row["started_by"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        model_name=row["model_name"],
        result=json.loads(row["result"]) if row["result"] else None,
        error=row["error"],
    )


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _alive(host: str, pid: int) -> bool:
    """Whether a job's process still runs (only knowable on its own host)."""
    if host != socket.gethostname():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# Serialises job starts within a process (a double-click starts one retrain).
_START_LOCK = threading.Lock()
# Any fixed number: the advisory lock that serialises job starts on PostgreSQL.
_PG_START_LOCK_KEY = 0x7472_6169_6E73


class JobLog:
    """Reads and writes the ``training_jobs`` table."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        create_training_tables(engine)

    def start(self, kind: str, started_by: str) -> Job:
        """A new running job; refuses a second retrain while one runs."""
        with _START_LOCK, self.engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_PG_START_LOCK_KEY)))
            if kind == "retrain":
                running = conn.execute(
                    jobs.select().where(jobs.c.kind == kind, jobs.c.state == "running")
                ).mappings()
                for row in running:
                    if _alive(row["host"], row["pid"]):
                        raise JobError(
                            f"a retrain started by {row['started_by']} is already running "
                            f"(job {row['id']}); wait for it to finish"
                        )
                    conn.execute(
                        jobs.update()
                        .where(jobs.c.id == row["id"])
                        .values(state="interrupted", finished_at=_now())
                    )
            values = {
                "kind": kind,
                "state": "running",
                "stage": "starting",
                "progress": 0.0,
                "started_by": started_by,
                "started_at": _now(),
                "host": socket.gethostname(),
                "pid": os.getpid(),
            }
            job_id = conn.execute(jobs.insert().values(**values)).inserted_primary_key[0]
        found = self.get(int(job_id))
        assert found is not None
        return found

    def update(self, job_id: int, **values: Any) -> None:
        with self.engine.begin() as conn:
            conn.execute(jobs.update().where(jobs.c.id == job_id).values(**values))

    def progress(self, job_id: int, stage: str, fraction: float) -> None:
        self.update(job_id, stage=stage[:500], progress=max(0.0, min(1.0, fraction)))

    def finish(self, job_id: int, result: dict[str, Any], model_name: str | None = None) -> None:
        self.update(
            job_id,
            state="succeeded",
            stage="done",
            progress=1.0,
            finished_at=_now(),
            result=json.dumps(result),
            model_name=model_name,
        )

    def fail(self, job_id: int, error: str) -> None:
        self.update(job_id, state="failed", finished_at=_now(), error=error[-4000:])

    def get(self, job_id: int) -> Job | None:
        with self.engine.connect() as conn:
            row = conn.execute(jobs.select().where(jobs.c.id == job_id)).mappings().first()
        return self._checked(row) if row else None

    def recent(self, limit: int = 20, kind: str = "") -> list[Job]:
        query = jobs.select().order_by(jobs.c.id.desc()).limit(limit)
        if kind:
            query = query.where(jobs.c.kind == kind)
        with self.engine.connect() as conn:
            rows = conn.execute(query).mappings().all()
        return [self._checked(row) for row in rows]

    def _checked(self, row: Any) -> Job:
        """The job, marked interrupted if it claims to run in a process that is gone."""
        job = _job(row)
        if job.running and not _alive(row["host"], row["pid"]):
            self.update(job.id, state="interrupted", finished_at=_now())
            job = dataclasses.replace(job, state="interrupted", finished_at=_now())
        return job

    def run(
        self,
        kind: str,
        started_by: str,
        work: Callable[[Progress], tuple[dict[str, Any], str | None]],
        on_progress: Progress | None = None,
    ) -> Job:
        """Runs ``work`` here and now as a recorded job. ``work`` gets a progress
        callback and returns (result, model name). Exceptions are recorded and re-raised."""
        job = self.start(kind, started_by)
        return self._execute(job, work, on_progress)

    def run_in_background(
        self,
        kind: str,
        started_by: str,
        work: Callable[[Progress], tuple[dict[str, Any], str | None]],
    ) -> Job:
        """Starts ``work`` on a thread and returns its job at once."""
        job = self.start(kind, started_by)

        def target() -> None:
            try:
                self._execute(job, work, None)
            except Exception:  # recorded in the job row; the thread just ends
                log.exception("training job %d (%s) failed", job.id, kind)

        threading.Thread(target=target, name=f"training-{kind}-{job.id}", daemon=True).start()
        return job

    def _execute(
        self,
        job: Job,
        work: Callable[[Progress], tuple[dict[str, Any], str | None]],
        on_progress: Progress | None,
    ) -> Job:
        last_fraction = [-1.0]
        last_stage = [""]

        def progress(stage: str, fraction: float) -> None:
            if on_progress is not None:
                on_progress(stage, fraction)
            # Progress bars redraw many times a second: write when it moved.
            if fraction - last_fraction[0] >= 0.01 or stage != last_stage[0]:
                last_fraction[0], last_stage[0] = fraction, stage
                try:
                    self.progress(job.id, stage, fraction)
                except sa.exc.SQLAlchemyError as exc:
                    log.warning("job %d progress not recorded: %s", job.id, exc)

        try:
            result, model_name = work(progress)
        except BaseException as exc:
            self.fail(job.id, f"{type(exc).__name__}: {exc}")
            raise
        self.finish(job.id, result, model_name)
        found = self.get(job.id)
        assert found is not None
        return found


_COMPONENT = re.compile(r"Starting to train component '(\w+)'")
_EPOCHS = re.compile(r"Epochs:\s+\d+%.*?\|\s*(\d+)/(\d+)")
# Shares of a retrain's time, measured on the shipped data: the intent
# classifier's epochs take about half, the dialogue policy's most of the rest.
_STAGES = {
    "DIETClassifier": (0.05, 0.6, "training the intent classifier"),
    "TEDPolicy": (0.6, 0.9, "training the dialogue policy"),
}
_STAGES.update({f"Quick{name}": stage for name, stage in list(_STAGES.items())})


class RasaTrainProgress:
    """Turns ``rasa train``'s output lines into (stage, fraction) of a retrain
    that spends ``share`` of its time training (the rest evaluating)."""

    def __init__(self, progress: Progress, share: float = 0.85) -> None:
        self._progress = progress
        self._share = share
        self._component = ""
        self.tail: list[str] = []

    def __call__(self, line: str) -> None:
        self.tail = [*self.tail[-40:], line]
        if found := _COMPONENT.search(line):
            self._component = found.group(1)
            start, _end, stage = _STAGES.get(self._component, (None, None, ""))
            if start is not None:
                self._progress(stage, start * self._share)
            else:
                self._progress(f"training {self._component}", self._last_start())
        elif (found := _EPOCHS.search(line)) and self._component in _STAGES:
            done, total = int(found.group(1)), max(1, int(found.group(2)))
            start, end, stage = _STAGES[self._component]
            fraction = start + (end - start) * done / total
            self._progress(f"{stage}: epoch {done} of {total}", fraction * self._share)
        elif "Your Rasa model is trained" in line:
            self._progress("model trained", self._share)

    def _last_start(self) -> float:
        if self._component and self._component in _STAGES:
            return _STAGES[self._component][0] * self._share
        return 0.02
