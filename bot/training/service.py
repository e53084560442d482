"""The trainers' workflow in one place, for the CLI and the console alike.

``TrainingWorkflow`` reads the review inbox, writes decisions into the Rasa
data (with an audit record), retrains, evaluates the new model against
production, deploys behind the comparison gate and rolls back.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
import shutil
import tempfile
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import sqlalchemy as sa
import yaml
from sqlalchemy.engine import Engine

from bot.model_store import (
    ModelError,
    ModelInfo,
    data_fingerprint,
    list_models,
    model_info,
    train_model,
    update_metadata,
)
from bot.settings import Settings
from bot.store import create_db_engine
from bot.training import data_files, deploy
from bot.training.data_files import TrainingDataError, Validation, WriteResult
from bot.training.deploy import DeployError, Deployment
from bot.training.evaluation import Comparison, Evaluation, compare, evaluate_models
from bot.training.inbox import InboxFilter, InboxItem, ReviewInbox, TextRedactor, key_hash
from bot.training.jobs import JobLog, Progress, RasaTrainProgress
from bot.training.schema import DECISIONS, create_training_tables, decided_keys, decisions

log = logging.getLogger(__name__)

_VALIDATE_LOCK = threading.Lock()

OUT_OF_SCOPE_INTENT = "out_of_scope"
# Responses the voice loop and custom actions speak: Rasa cannot see those
# uses and warns about every one on every validation.
_UNUSED_RESPONSE = re.compile(r"The utterance 'utter_\w+' is not used in any story or rule")
# Share of a retrain job's progress bar spent training (the rest evaluates).
TRAIN_SHARE = 0.85


class WorkflowError(ValueError):
    """A trainer's request that cannot be carried out; the message says why."""


@dataclass(frozen=True)
class DecisionRecord:
    """One recorded decision (the audit trail's row)."""

    id: int
    item_id: str
    decision: str
    intent: str | None
    examples: tuple[str, ...]
    duplicates: tuple[str, ...]
    turn_ids: tuple[int, ...]
    call_ids: tuple[str, ...]
    files: tuple[str, ...]
    decided_by: str
    decided_at: datetime

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "item_id": self.item_id,
            "decision": self.decision,
            "intent": self.intent,
            "examples": list(self.examples),
            "duplicates": list(self.duplicates),
            "turns": len(self.turn_ids),
            "call_ids": list(self.call_ids),
            "files": list(self.files),
            "decided_by": self.decided_by,
            "decided_at": self.decided_at.isoformat(timespec="seconds"),
        }


@dataclass(frozen=True)
class ModelRow:
    """A kept model as the trainer's model list shows it."""

    info: ModelInfo
    in_production: bool
    matches_data: bool

    def to_dict(self) -> dict[str, Any]:
        evaluation = self.info.meta.get("evaluation")
        return {
            "model": self.info.name,
            "fingerprint": self.info.fingerprint,
            "trained_at": self.info.trained_at,
            "trained_by": self.info.meta.get("trained_by", ""),
            "train_seconds": self.info.train_seconds,
            "in_production": self.in_production,
            "matches_data": self.matches_data,
            "evaluation": evaluation if isinstance(evaluation, dict) else None,
        }


def _record(row: Any) -> DecisionRecord:
    return DecisionRecord(
        id=row["id"],
        item_id=row["item_id"],
        decision=row["decision"],
        intent=row["intent"],
        examples=tuple(json.loads(row["examples"])),
        duplicates=tuple(json.loads(row["duplicates"])),
        turn_ids=tuple(json.loads(row["turn_ids"])),
        call_ids=tuple(json.loads(row["call_ids"])),
        files=tuple(json.loads(row["files"])),
        decided_by=row["decided_by"],
        decided_at=row["decided_at"],
    )


def evaluation_summary(evaluation: Evaluation) -> dict[str, Any]:
    return {
        "test_set_hash": evaluation.test_set_hash,
        "accuracy": round(evaluation.accuracy, 4),
        "macro_f1": round(evaluation.macro_f1, 4),
        "weighted_f1": round(evaluation.weighted_f1, 4),
    }


class TrainingWorkflow:
    """What trainers do, over the call store's database and the project's files."""

    def __init__(
        self,
        settings: Settings,
        engine: Engine | None = None,
        redactor: TextRedactor | None = None,
    ) -> None:
        self.settings = settings
        self.engine = engine or create_db_engine(settings.store_url)
        self._owns_engine = engine is None
        create_training_tables(self.engine)
        if redactor is None:
            from bot.privacy import Redactor

            redactor = Redactor()
        self.inbox = ReviewInbox(
            self.engine,
            redactor,
            settings.training.low_intent_confidence,
            settings.training.low_asr_confidence,
        )
        self.jobs = JobLog(self.engine)

    def close(self) -> None:
        if self._owns_engine:
            self.engine.dispose()

    @property
    def project_dir(self) -> Path:
        return self.settings.project_dir

    @property
    def models_dir(self) -> Path:
        return self.settings.models_dir

    # -- review and annotate

    def items(self, wanted: InboxFilter | None = None) -> list[InboxItem]:
        return self.inbox.items(wanted)

    def item(self, item_id: str) -> InboxItem:
        found = self.inbox.item(item_id)
        if found is None:
            raise WorkflowError(_gone(item_id))
        return found

    def intents(self) -> list[str]:
        return data_files.domain_intents(self.project_dir)

    def annotate(
        self,
        item_ids: Sequence[str],
        decision: str,
        decided_by: str,
        intent: str = "",
        response_text: str = "",
        entities: Sequence[Sequence[str]] = (),
    ) -> list[DecisionRecord]:
        """Applies one decision to each item; writes the data and the audit trail.

        ``decision``: ``intent`` (an existing intent), ``new_intent`` (created
        with these items as its first examples and ``response_text`` or a stub
        as its answer), ``out_of_scope``, ``entities`` (the item's text with
        ``entities`` as (entity, words) or (entity, words, value) marked up,
        under ``intent`` or the predicted one) or ``discard`` (nothing written).
        """
        if decision not in DECISIONS:
            raise WorkflowError(f"unknown decision {decision!r}; one of {', '.join(DECISIONS)}")
        if not item_ids:
            raise WorkflowError("no inbox items given")
        if not decided_by.strip():
            raise WorkflowError("a decision needs the name of who made it")
        # Grouped once for the whole batch; every item is resolved before
        # anything is written.
        current = self.inbox.by_id()
        items = []
        for item_id in dict.fromkeys(item_ids):
            if item_id not in current:
                raise WorkflowError(_gone(item_id))
            items.append(current[item_id])
        known = set(self.intents())
        if decision == "intent" and intent not in known:
            raise WorkflowError(_unknown_intent(intent, known))
        if decision == "new_intent" and intent in known:
            raise WorkflowError(f"intent {intent} exists already; assign it instead")
        if decision == "entities":
            if not entities:
                raise WorkflowError("give the corrected entities as ENTITY=WORDS")
            if intent and intent not in known:
                raise WorkflowError(_unknown_intent(intent, known))
        # Production is pinned before the data first changes, so the retrained
        # model cannot become production without a deploy.
        deploy.ensure_production_recorded(self.engine, self.project_dir, self.models_dir)
        held_out = self._held_out_keys()
        records = []
        created = decision != "new_intent"
        for item in items:
            written = self._write(
                item, decision, intent, response_text, entities, held_out, created
            )
            created = created or bool(written.written)
            records.append(self._audit(item, decision, intent, written, decided_by))
        return records

    def _write(
        self,
        item: InboxItem,
        decision: str,
        intent: str,
        response_text: str,
        entities: Sequence[Sequence[str]],
        held_out: set[str],
        intent_exists: bool,
    ) -> WriteResult:
        if decision == "discard":
            return WriteResult(written=(), duplicates=(), files=())
        texts = [text for text in item.variants if data_files.example_key(text) not in held_out]
        if not texts:
            # The test set's sentences never become training data, or the
            # evaluation would score what the model was taught.
            return WriteResult(written=(), duplicates=tuple(item.variants), files=())
        try:
            if decision == "intent":
                return data_files.add_examples(self.project_dir, intent, texts)
            if decision == "out_of_scope":
                return data_files.add_examples(self.project_dir, OUT_OF_SCOPE_INTENT, texts)
            if decision == "new_intent":
                if not intent_exists:
                    return data_files.create_intent(self.project_dir, intent, texts, response_text)
                return data_files.add_examples(self.project_dir, intent, texts)
            if decision == "entities":
                target = intent or item.predicted_intent
                if target not in set(self.intents()):
                    raise WorkflowError(
                        f"the item was understood as {target or 'nothing'}; name the intent "
                        "its corrected example belongs to"
                    )
                example = data_files.annotate_entities(item.text, entities)
                existing = data_files.training_examples(self.project_dir)
                taught = existing.get(data_files.example_key(example))
                if taught is not None:
                    raise WorkflowError(
                        f"{item.text!r} is already an example of {taught} in the training data; "
                        "mark its entities there"
                    )
                return data_files.add_examples(self.project_dir, target, [example])
        except TrainingDataError as exc:
            raise WorkflowError(str(exc)) from exc
        return WriteResult(written=(), duplicates=(), files=())

    def _audit(
        self, item: InboxItem, decision: str, intent: str, written: WriteResult, decided_by: str
    ) -> DecisionRecord:
        values = {
            "item_id": item.id,
            "decision": decision,
            "intent": intent or (OUT_OF_SCOPE_INTENT if decision == "out_of_scope" else None),
            "examples": json.dumps(list(written.written)),
            "duplicates": json.dumps(list(written.duplicates)),
            "turn_ids": json.dumps([turn.turn_id for turn in item.turns]),
            "call_ids": json.dumps(sorted({turn.call_id for turn in item.turns})),
            "files": json.dumps([str(path) for path in written.files]),
            "decided_by": decided_by,
            "decided_at": datetime.now(timezone.utc),
        }
        with self.engine.begin() as conn:
            decision_id = conn.execute(decisions.insert().values(**values)).inserted_primary_key[0]
            for key in item.keys:
                # Two trainers deciding the same words at once: the first
                # decision's mark stands, the second is still recorded.
                try:
                    with conn.begin_nested():
                        conn.execute(
                            decided_keys.insert().values(
                                text_hash=key_hash(key), decision_id=decision_id
                            )
                        )
                except sa.exc.IntegrityError:
                    pass
            row = conn.execute(decisions.select().where(decisions.c.id == decision_id))
            record = _record(row.mappings().one())
        log.info(
            "%s decided %s for item %s (%d turns): %d examples written",
            decided_by, decision, item.id, len(item.turns), len(written.written),
        )  # fmt: skip
        return record

    def decisions(self, limit: int = 100) -> list[DecisionRecord]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                decisions.select().order_by(decisions.c.id.desc()).limit(limit)
            ).mappings()
            return [_record(row) for row in rows]

    def validate(self) -> Validation:
        """``rasa data validate``, without its warnings about responses only
        custom actions and the voice loop use."""
        found = data_files.validate_project(self.project_dir)
        problems = tuple(p for p in found.problems if not _UNUSED_RESPONSE.search(p))
        return dataclasses.replace(found, problems=problems)

    def trainer_responses(self) -> set[str]:
        """Responses of intents trainers created (their rules are in trainer.yml)."""
        rules = self.project_dir / data_files.TRAINER_RULES
        if not rules.is_file():
            return set(data_files.unfilled_stubs(self.project_dir))
        named = set(re.findall(r"action: (utter_\w+)", rules.read_text(encoding="utf-8")))
        return named | set(data_files.unfilled_stubs(self.project_dir))

    def _held_out_keys(self) -> set[str]:
        """The test set's examples: never written into the training data, or
        the evaluation would be scoring what the model was taught."""
        path = self.settings.test_set
        if not path.is_file():
            return set()
        try:
            loaded = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as exc:
            raise WorkflowError(f"the test set {path} is not valid YAML: {exc}") from exc
        keys = set()
        for entry in loaded.get("nlu") or []:
            for line in str(entry.get("examples") or "").splitlines():
                if line.strip().startswith("- "):
                    keys.add(data_files.example_key(line.strip()[2:]))
        return keys

    def set_response(self, intent: str, text: str) -> None:
        """Writes the answer of an intent trainers created (a stub, or one
        written before); the bot's other responses belong to its designers."""
        if f"utter_{intent}" not in self.trainer_responses():
            raise WorkflowError(
                f"utter_{intent} is not the answer of an intent created here; "
                "edit domain.yml for the bot's own responses"
            )
        if "{" in text or "}" in text:
            raise WorkflowError("an answer cannot contain { or }: the bot fills those in")
        try:
            data_files.set_response(self.project_dir, intent, text)
        except TrainingDataError as exc:
            raise WorkflowError(str(exc)) from exc

    # -- retrain and evaluate

    def retrain(self, trained_by: str, progress: Progress | None = None) -> ModelInfo:
        """Trains a model for the current data (reusing one that exists) and
        evaluates it against production.

        Rasa reads a snapshot of the data taken under the data lock, so a
        decision saved while it trains waits for the next retrain instead of
        landing half in this one."""
        report = progress or (lambda _stage, _fraction: None)
        deploy.ensure_production_recorded(self.engine, self.project_dir, self.models_dir)
        output = RasaTrainProgress(report, TRAIN_SHARE)
        report("starting rasa train", 0.01)
        with tempfile.TemporaryDirectory(prefix=".retrain-", dir=self.models_dir) as folder:
            snapshot = Path(folder)
            with data_files.locked(self.project_dir):
                _copy_training_files(self.project_dir, snapshot)
            stubs = data_files.unfilled_stubs(snapshot)
            try:
                info = train_model(
                    snapshot, self.models_dir, trained_by=trained_by, on_output=output
                )
            except ModelError as exc:
                tail = "\n".join(output.tail[-15:])
                raise ModelError(f"rasa train failed; its last lines:\n{tail}") from exc
        if not info.meta.get("unfilled_stubs") and stubs:
            info = update_metadata(self.models_dir, info.name, {"unfilled_stubs": stubs})
        report("evaluating against production", TRAIN_SHARE)
        self.evaluate(info.name, progress=lambda stage, f: report(stage, TRAIN_SHARE + f * 0.15))
        return model_info(self.models_dir, info.name)

    def production_name(self) -> str:
        path = deploy.production_model(
            self.engine, self.project_dir, self.models_dir, self.settings.dialogue.model
        )
        return path.name.removesuffix(".tar.gz")

    def evaluate(
        self, model_name: str = "", progress: Progress | None = None
    ) -> tuple[Comparison, dict[str, Evaluation]]:
        """Scores a model (default: the newest) and production on the test set
        and compares them; the summary goes into the model's metadata."""
        candidate = model_name or self._newest_model()
        model_info(self.models_dir, candidate)  # a clear error for a wrong name
        production = self.production_name()
        names = list(dict.fromkeys([candidate, production]))
        scored = evaluate_models(self.models_dir, names, self.settings.test_set, progress)
        comparison = compare(
            scored[candidate],
            scored[production],
            self.settings.training.max_f1_drop,
            self.settings.training.max_intent_f1_drop,
        )
        update_metadata(
            self.models_dir,
            candidate,
            {
                "evaluation": {
                    **evaluation_summary(scored[candidate]),
                    "compared_with": production,
                    "production": evaluation_summary(scored[production]),
                    "blocked": comparison.blocked,
                    "reasons": list(comparison.reasons),
                }
            },
        )
        return comparison, scored

    def _newest_model(self) -> str:
        models = list_models(self.models_dir)
        if not models:
            raise WorkflowError("no trained model yet; run a retrain first")
        return models[0].name

    def models(self) -> list[ModelRow]:
        production = self.production_name()
        fingerprint = data_fingerprint(self.project_dir)
        return [
            ModelRow(info, info.name == production, info.fingerprint == fingerprint)
            for info in list_models(self.models_dir)
        ]

    # -- deploy and roll back

    def deploy(
        self, model_name: str, deployed_by: str, role: str, override: bool = False
    ) -> Deployment:
        """Makes a model production, if its comparison with production allows
        (or an admin overrides the block)."""
        candidate = model_name or self._newest_model()
        info = model_info(self.models_dir, candidate)
        deploy.ensure_production_recorded(self.engine, self.project_dir, self.models_dir)
        production = self.production_name()
        if candidate == production:
            raise DeployError(f"{candidate} is already in production", code="already_deployed")
        comparison, _scored = self.evaluate(candidate)
        reasons = list(comparison.reasons)
        stubs = info.meta.get("unfilled_stubs")
        if not stubs and info.fingerprint == data_fingerprint(self.project_dir):
            stubs = data_files.unfilled_stubs(self.project_dir)  # trained outside retrain
        if isinstance(stubs, list) and stubs:
            reasons.append("answers still to be written: " + ", ".join(map(str, stubs)))
        if comparison.blocked or stubs:
            if not override:
                raise DeployError(
                    f"{candidate} cannot be deployed: " + "; ".join(reasons)
                    + ". An admin may deploy it anyway with an override.",
                    code="blocked",
                )  # fmt: skip
            if role != "admin":
                raise DeployError(
                    f"only an admin may override the block on {candidate} ({role or 'no role'})",
                    code="override_not_allowed",
                )
        elif override:
            override = False  # nothing to override: record a plain deploy
        return deploy.record(
            self.engine,
            candidate,
            "deploy",
            deployed_by,
            override=override,
            comparison=comparison.to_dict(),
        )

    def rollback(self, deployed_by: str, to_model: str = "") -> Deployment:
        target = deploy.rollback_target(self.engine, to_model)
        model_info(self.models_dir, target)  # it must still be there
        if target == self.production_name():
            raise DeployError(f"{target} is already in production", code="already_deployed")
        return deploy.record(self.engine, target, "rollback", deployed_by)

    def deployments(self, limit: int = 50) -> list[Deployment]:
        return deploy.history(self.engine, limit)


def _copy_training_files(project_dir: Path, target: Path) -> None:
    """What ``rasa train`` reads and the fingerprint covers, and Rasa's cache."""
    for name in ("config.yml", "domain.yml"):
        if (project_dir / name).is_file():
            shutil.copy2(project_dir / name, target / name)
    for folder in ("domain", "data", "bot/nlu"):
        if (project_dir / folder).is_dir():
            shutil.copytree(
                project_dir / folder, target / folder, ignore=shutil.ignore_patterns("__pycache__")
            )
    cache = project_dir / ".rasa"
    cache.mkdir(exist_ok=True)
    (target / ".rasa").symlink_to(cache.resolve())


def _gone(item_id: str) -> str:
    return (
        f"no inbox item {item_id}: it was decided already, or new turns regrouped "
        "the inbox; list the inbox again"
    )


def _unknown_intent(intent: str, known: set[str]) -> str:
    if not intent:
        return "name the intent (--intent NAME)"
    return f"unknown intent {intent!r}; known: {', '.join(sorted(known))}"


def retrain_job(
    workflow: TrainingWorkflow, trained_by: str
) -> Callable[[Progress], tuple[dict[str, Any], str | None]]:
    """A retrain as a job's work: its result names the model and its evaluation."""

    def work(progress: Progress) -> tuple[dict[str, Any], str | None]:
        info = workflow.retrain(trained_by, progress)
        return {"model": info.name, "evaluation": info.meta.get("evaluation")}, info.name

    return work


def evaluate_job(
    workflow: TrainingWorkflow, model_name: str
) -> Callable[[Progress], tuple[dict[str, Any], str | None]]:
    def work(progress: Progress) -> tuple[dict[str, Any], str | None]:
        comparison, _scored = workflow.evaluate(model_name, progress)
        return {"comparison": comparison.to_dict()}, comparison.candidate

    return work


def cross_validation_job(
    workflow: TrainingWorkflow, folds: int = 0
) -> Callable[[Progress], tuple[dict[str, Any], str | None]]:
    """``rasa test nlu --cross-validation`` on the current data, as a job:
    slow (it trains the classifier once per fold), so only when asked."""

    def work(progress: Progress) -> tuple[dict[str, Any], str | None]:
        from bot.training.evaluation import cross_validate

        chosen = folds or workflow.settings.training.cross_validation_folds
        progress(f"cross-validating with {chosen} folds (trains once per fold)", 0.05)
        result = cross_validate(
            workflow.project_dir, chosen, workflow.settings.var_dir / "cross_validation"
        )
        return result.to_dict(), None

    return work


def validate_job(
    workflow: TrainingWorkflow,
) -> Callable[[Progress], tuple[dict[str, Any], str | None]]:
    def work(progress: Progress) -> tuple[dict[str, Any], str | None]:
        progress("waiting for an earlier check", 0.05)
        # One `rasa data validate` at a time: quick decisions in a row would
        # otherwise start several Rasa processes on a small machine.
        with _VALIDATE_LOCK:
            progress("rasa data validate", 0.1)
            validation = workflow.validate()
        result = {
            "ok": validation.ok,
            "problems": list(validation.problems),
            "seconds": round(validation.seconds, 1),
        }
        return result, None

    return work
