"""Which model production runs: deployments as a history in the call store.

The newest row of ``model_deployments`` names the production model. Every bot
process (``CallEngine``) watches it and switches new calls to a newly deployed
model; calls in progress finish on the model they started with. Until anything
is deployed, production is the model the bot resolves by itself (the one
trained from the current data, else the newest); the training workflow records
that as the ``initial`` deployment before it first changes the data, so a
retrained model never reaches callers without a deploy.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from bot.model_store import ModelError, model_info, resolve_model
from bot.training.schema import create_training_tables, deployments

log = logging.getLogger(__name__)


class DeployError(RuntimeError):
    """A deploy or rollback that cannot happen; the message says why."""

    def __init__(self, message: str, code: str = "refused") -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Deployment:
    id: int
    model_name: str
    action: str
    deployed_by: str
    deployed_at: datetime
    override: bool
    comparison: dict[str, Any] | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "model": self.model_name,
            "action": self.action,
            "deployed_by": self.deployed_by,
            "deployed_at": self.deployed_at.isoformat(timespec="seconds"),
            "override": self.override,
        }


def _deployment(row: Any) -> Deployment:
    return Deployment(
        id=row["id"],
        model_name=row["model_name"],
        action=row["action"],
        deployed_by=row["deployed_by"],
        deployed_at=row["deployed_at"],
        override=bool(row["override"]),
        comparison=json.loads(row["comparison"]) if row["comparison"] else None,
    )


def history(engine: Engine, limit: int = 100) -> list[Deployment]:
    """Deployments, newest first."""
    create_training_tables(engine)
    with engine.connect() as conn:
        rows = conn.execute(
            deployments.select().order_by(deployments.c.id.desc()).limit(limit)
        ).mappings()
        return [_deployment(row) for row in rows]


def current(engine: Engine) -> Deployment | None:
    """The production deployment, or None when nothing was ever deployed."""
    found = history(engine, limit=1)
    return found[0] if found else None


def latest_deployment(engine: Engine) -> tuple[int, str] | None:
    """(id, model name) of the newest deployment; a cheap query for bots to
    poll. None when nothing was deployed or the table does not exist yet."""
    try:
        with engine.connect() as conn:
            row = conn.execute(
                sa.select(deployments.c.id, deployments.c.model_name)
                .order_by(deployments.c.id.desc())
                .limit(1)
            ).first()
    except (sa.exc.OperationalError, sa.exc.ProgrammingError):
        return None
    return (int(row[0]), str(row[1])) if row else None


def deployed_model_name(engine: Engine) -> str | None:
    """The production model's name, None when nothing was deployed."""
    latest = latest_deployment(engine)
    return latest[1] if latest else None


def record(
    engine: Engine,
    model_name: str,
    action: str,
    deployed_by: str,
    override: bool = False,
    comparison: dict[str, Any] | None = None,
) -> Deployment:
    create_training_tables(engine)
    values = {
        "model_name": model_name,
        "action": action,
        "deployed_by": deployed_by,
        "deployed_at": datetime.now(timezone.utc),
        "override": override,
        "comparison": json.dumps(comparison) if comparison is not None else None,
    }
    with engine.begin() as conn:
        new_id = conn.execute(deployments.insert().values(**values)).inserted_primary_key[0]
        row = conn.execute(deployments.select().where(deployments.c.id == new_id)).mappings()
        found = _deployment(row.one())
    log.info("%s: model %s by %s", action, model_name, deployed_by)
    return found


def production_model(
    engine: Engine, project_dir: Path, models_dir: Path, explicit: str = ""
) -> Path:
    """The model new calls use: an explicitly configured one, else the
    deployed one, else the one the bot resolves by itself."""
    if explicit:
        return resolve_model(project_dir, models_dir, explicit)
    name = deployed_model_name(engine)
    if name:
        try:
            return model_info(models_dir, name).path
        except ModelError:
            log.error(
                "the deployed model %s is not in %s; using the bot's own choice", name, models_dir
            )
    return resolve_model(project_dir, models_dir)


def ensure_production_recorded(
    engine: Engine, project_dir: Path, models_dir: Path
) -> Deployment | None:
    """Pins what production runs now as the ``initial`` deployment, once;
    None while there is no model at all (nothing runs, nothing to pin)."""
    found = current(engine)
    if found is not None:
        return found
    try:
        path = resolve_model(project_dir, models_dir)
    except ModelError:
        return None
    return record(engine, path.name.removesuffix(".tar.gz"), "initial", "system")


def rollback_target(engine: Engine, to_model: str = "") -> str:
    """The model a rollback returns to: the one named, else the one production
    ran before the current model. Only a model that was production before
    qualifies: any other must pass the deploy gate."""
    past = history(engine, limit=10_000)
    if not past:
        raise DeployError("nothing has been deployed, so there is nothing to roll back")
    if to_model:
        if to_model not in {earlier.model_name for earlier in past}:
            raise DeployError(
                f"{to_model} was never in production, so it cannot be rolled back to; "
                "deploy it instead (its comparison with production decides)",
                code="never_deployed",
            )
        return to_model
    now = past[0].model_name
    for earlier in past[1:]:
        if earlier.model_name != now:
            return earlier.model_name
    raise DeployError(
        f"production has only ever run {now}; name an earlier model to roll back to",
        code="no_earlier_model",
    )
