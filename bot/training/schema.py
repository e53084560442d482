"""The training workflow's tables, in the call store's database.

``turn_flags``: turns an agent marked as misunderstood from the console.
``training_decisions``: what a trainer decided for an inbox item (the audit
record: who, when, which turns and calls, what was written where).
``decided_keys``: the normalised texts a decision covers (hashed), so the inbox does not
offer them again. ``training_jobs``: retrain, evaluate and validate runs with
their progress. ``model_deployments``: which model production runs, as a
history (the newest row is the current one).
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from bot.queue.schema import UtcDateTime

metadata = sa.MetaData()

turn_flags = sa.Table(
    "training_turn_flags",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    # turns.id of the call store (no foreign key: the console may write flags
    # before the call store has created its tables on a fresh database).
    sa.Column("turn_id", sa.Integer, nullable=False, index=True),
    sa.Column("call_id", sa.String(64), nullable=False),
    sa.Column("flagged_by", sa.String(128), nullable=False),
    sa.Column("note", sa.Text, nullable=False, default=""),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.UniqueConstraint("turn_id", "flagged_by"),
)

DECISIONS = ("intent", "new_intent", "out_of_scope", "discard", "entities")

decisions = sa.Table(
    "training_decisions",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("item_id", sa.String(32), nullable=False, index=True),
    sa.Column("decision", sa.String(16), nullable=False),
    sa.Column("intent", sa.String(64)),
    # JSON lists: the (redacted) examples written, those skipped as already in
    # the data, the turns and calls the decision covers.
    sa.Column("examples", sa.Text, nullable=False),
    sa.Column("duplicates", sa.Text, nullable=False),
    sa.Column("turn_ids", sa.Text, nullable=False),
    sa.Column("call_ids", sa.Text, nullable=False),
    sa.Column("files", sa.Text, nullable=False),
    sa.Column("decided_by", sa.String(128), nullable=False),
    sa.Column("decided_at", UtcDateTime, nullable=False),
)

decided_keys = sa.Table(
    "training_decided_texts",
    metadata,
    # SHA-256 of the normalised text (bot.training.inbox.text_key).
    sa.Column("text_hash", sa.String(64), primary_key=True),
    sa.Column("decision_id", sa.Integer, nullable=False),
)

JOB_KINDS = ("retrain", "evaluate", "validate", "cross_validate")
JOB_STATES = ("running", "succeeded", "failed", "interrupted")

jobs = sa.Table(
    "training_jobs",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("stage", sa.Text, nullable=False, default=""),
    sa.Column("progress", sa.Float, nullable=False, default=0.0),
    sa.Column("started_by", sa.String(128), nullable=False),
    sa.Column("started_at", UtcDateTime, nullable=False),
    sa.Column("finished_at", UtcDateTime),
    sa.Column("model_name", sa.String(128)),
    # JSON: what the job produced (validation problems, evaluation summary).
    sa.Column("result", sa.Text),
    sa.Column("error", sa.Text),
    sa.Column("host", sa.String(128), nullable=False),
    sa.Column("pid", sa.Integer, nullable=False),
)

DEPLOY_ACTIONS = ("initial", "deploy", "rollback")

deployments = sa.Table(
    "model_deployments",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("model_name", sa.String(128), nullable=False),
    sa.Column("action", sa.String(16), nullable=False),
    sa.Column("deployed_by", sa.String(128), nullable=False),
    sa.Column("deployed_at", UtcDateTime, nullable=False),
    sa.Column("override", sa.Boolean, nullable=False, default=False),
    # JSON: the comparison with the model it replaced, when there was one.
    sa.Column("comparison", sa.Text),
)


def create_training_tables(engine: Engine) -> None:
    """Creates the missing training tables (idempotent)."""
    metadata.create_all(engine)
