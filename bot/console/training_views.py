"""What the trainer pages show, built from the training workflow's records.

Pure functions: inbox items, turns, decisions, jobs, deployments and model
comparisons become plain dicts and strings for the templates; the notices
after a redirect are rebuilt from the codes and numbers in the URL.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import urlencode

from bot.console.views import Notice, notice_for, reason_label
from bot.training.deploy import Deployment
from bot.training.evaluation import Comparison, Evaluation, Prediction
from bot.training.inbox import REASONS, InboxFilter, InboxItem, InboxTurn
from bot.training.jobs import Job
from bot.training.service import DecisionRecord, ModelRow

# The decisions the batch form offers (entity corrections have their own form).
DECISION_CHOICES: tuple[tuple[str, str], ...] = (
    ("intent", "Assign an existing intent"),
    ("new_intent", "Create a new intent"),
    ("out_of_scope", "Out of scope"),
    ("discard", "Discard (not worth training)"),
)
DECISION_LABELS = dict(DECISION_CHOICES) | {"entities": "Entities corrected"}
REASON_CHOICES = tuple((reason, reason_label(reason)) for reason in REASONS)
ENTITY_ROWS = 3
# Deltas this small are rounding, not a change.
_EPSILON = 1e-9
# Values a notice may repeat from its URL: model and intent names, nothing else.
_SHOWN_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,127}$")
_STATIC_NOTICES = {
    "retrain_running": Notice(
        "error", "A retrain is already running; follow it in the list of jobs below."
    ),
}


def notice_url(path: str, code: str, **values: str | int) -> str:
    """``path`` with a notice code and the values its text needs."""
    return f"{path}?{urlencode({'notice': code, **values})}"


def _count(query: Mapping[str, str], key: str) -> int:
    text = query.get(key, "")
    return int(text) if text.isdigit() else 0


def _name(query: Mapping[str, str], key: str) -> str:
    text = query.get(key, "")
    return text if _SHOWN_NAME.match(text) else ""


def _plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


def training_notice(query: Mapping[str, str]) -> Notice | None:
    """The notice a trainer page shows after a redirect, from its URL's query."""
    code = query.get("notice", "")
    if code == "decided":
        written, duplicates = _count(query, "written"), _count(query, "duplicates")
        text = f"Saved for {_plural(_count(query, 'items'), 'item')}: "
        text += f"{_plural(written, 'example')} written"
        if duplicates:
            text += f", {duplicates} already in the training data"
        return Notice("ok", text + ".")
    if code == "discarded":
        return Notice("ok", f"Discarded {_plural(_count(query, 'items'), 'item')}.")
    if code == "response_set" and (intent := _name(query, "intent")):
        return Notice("ok", f"The answer for {intent} is written.")
    if code == "deployed" and (model := _name(query, "model")):
        return Notice("ok", f"{model} is production; new calls use it.")
    if code == "rolled_back" and (model := _name(query, "model")):
        return Notice("ok", f"Rolled back: {model} is production; new calls use it.")
    return _STATIC_NOTICES.get(code) or notice_for(code)


def parse_day(text: str, field: str) -> datetime | None:
    """A date from a date input (``YYYY-MM-DD``) as midnight UTC; None when empty."""
    text = text.strip()
    if not text:
        return None
    try:
        return datetime.strptime(text, "%Y-%m-%d").replace(tzinfo=timezone.utc)
    except ValueError:
        raise ValueError(f"{field}: {text!r} is not a date like 2026-11-27") from None


def inbox_filter(
    reason: str, intent: str, since: str, until: str, search: str, routine: bool
) -> InboxFilter:
    """The inbox filter from the form's fields; ``until`` includes its whole day."""
    if reason and reason not in REASONS:
        raise ValueError(f"unknown reason {reason!r}")
    last_day = parse_day(until, "until")
    return InboxFilter(
        reason=reason,
        intent=intent.strip(),
        since=parse_day(since, "since"),
        until=last_day + timedelta(days=1) if last_day else None,
        search=search.strip(),
        include_routine=routine,
    )


def when_text(moment: datetime | str | None) -> str:
    """A moment for people, in UTC to the minute; an em dash for none."""
    if moment is None or moment == "":
        return "—"
    if isinstance(moment, str):
        try:
            moment = datetime.fromisoformat(moment)
        except ValueError:
            return str(moment)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def score_text(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}"


def delta_text(delta: float) -> str:
    if abs(delta) < 0.0005:
        return "±0.000"
    return f"{delta:+.3f}".replace("-", "−")


def delta_class(delta: float) -> str:
    if delta < -_EPSILON:
        return "worse"
    return "better" if delta > _EPSILON else ""


def inbox_row(item: InboxItem) -> dict[str, Any]:
    return {
        "id": item.id,
        "text": item.text,
        "count": item.count,
        "calls": item.calls,
        "reasons": [reason_label(reason) for reason in item.reasons],
        "predicted_intent": item.predicted_intent or "—",
        "confidence": score_text(item.confidence),
        "last_seen": when_text(item.last_seen),
    }


def turn_row(turn: InboxTurn) -> dict[str, Any]:
    return {
        "turn_id": turn.turn_id,
        "call_id": turn.call_id,
        "channel": turn.channel,
        "time": when_text(turn.created_at),
        "text": turn.text,
        "intent": turn.intent or "—",
        "confidence": score_text(turn.confidence),
        "asr_confidence": score_text(turn.asr_confidence),
        "reasons": [reason_label(reason) for reason in turn.reasons],
        "flag_notes": list(turn.flag_notes),
    }


def decision_row(record: DecisionRecord) -> dict[str, Any]:
    return {
        "id": record.id,
        "item_id": record.item_id,
        "decided_by": record.decided_by,
        "decided_at": when_text(record.decided_at),
        "decision": DECISION_LABELS.get(record.decision, record.decision),
        "intent": record.intent or "—",
        "examples": list(record.examples),
        "duplicates": list(record.duplicates),
        "turns": len(record.turn_ids),
        "calls": list(record.call_ids),
    }


def job_row(job: Job) -> dict[str, Any]:
    return {
        "id": job.id,
        "kind": job.kind,
        "state": job.state,
        "stage": job.stage,
        "progress": round(job.progress, 3),
        "percent": f"{job.progress * 100:.0f}%",
        "started_by": job.started_by,
        "started_at": when_text(job.started_at),
        "finished_at": when_text(job.finished_at),
        "model": job.model_name or "",
        "error": job.error or "",
    }


def validation_view(job: Job | None) -> dict[str, Any] | None:
    """The latest ``rasa data validate`` run, as the inbox shows it."""
    if job is None:
        return None
    result = job.result or {}
    problems = result.get("problems")
    return {
        "job_id": job.id,
        "state": job.state,
        "started_at": when_text(job.started_at),
        "ok": bool(result.get("ok")),
        "problems": [str(p) for p in problems] if isinstance(problems, list) else [],
        "error": job.error or "",
    }


def deployment_row(deployment: Deployment) -> dict[str, Any]:
    return {
        "model": deployment.model_name,
        "action": deployment.action,
        "deployed_by": deployment.deployed_by,
        "deployed_at": when_text(deployment.deployed_at),
        "override": deployment.override,
    }


def model_row(row: ModelRow) -> dict[str, Any]:
    shown = row.to_dict()
    evaluation = shown["evaluation"] or {}
    accuracy, macro_f1 = evaluation.get("accuracy"), evaluation.get("macro_f1")
    return {
        "name": shown["model"],
        "trained_at": when_text(shown["trained_at"]),
        "trained_by": shown["trained_by"] or "—",
        "in_production": row.in_production,
        "matches_data": row.matches_data,
        "accuracy": score_text(accuracy) if isinstance(accuracy, int | float) else "—",
        "macro_f1": score_text(macro_f1) if isinstance(macro_f1, int | float) else "—",
        "blocked": bool(evaluation.get("blocked")),
    }


def _prediction_row(prediction: Prediction) -> dict[str, str]:
    return {
        "text": prediction.text,
        "expected": prediction.expected,
        "predicted": prediction.predicted or "—",
        "confidence": score_text(prediction.confidence),
    }


def _metric(label: str, candidate: float, production: float) -> dict[str, str]:
    delta = candidate - production
    return {
        "label": label,
        "candidate": f"{candidate:.3f}",
        "production": f"{production:.3f}",
        "delta": delta_text(delta),
        "class": delta_class(delta),
    }


def comparison_view(
    comparison: Comparison,
    candidate: Evaluation,
    production: Evaluation,
    unfilled_stubs: Sequence[str] = (),
) -> dict[str, Any]:
    """The model page's comparison: overall scores, per-intent scores with
    deltas (the worst first), the examples that changed, and the verdict."""
    intents = []
    for change in comparison.intents:
        now = candidate.per_intent.get(change.intent)
        before = production.per_intent.get(change.intent)
        cells = []
        for field in ("precision", "recall", "f1"):
            value = getattr(now, field) if now else 0.0
            delta = value - (getattr(before, field) if before else 0.0)
            cells.append(
                {"value": f"{value:.2f}", "delta": delta_text(delta), "class": delta_class(delta)}
            )
        intents.append(
            {
                "intent": change.intent,
                "cells": cells,
                "support": now.support if now else (before.support if before else 0),
                "worse": change.delta < -_EPSILON,
            }
        )
    reasons = list(comparison.reasons)
    if unfilled_stubs:
        reasons.append("answers still to be written: " + ", ".join(unfilled_stubs))
    return {
        "candidate": comparison.candidate,
        "production": comparison.production,
        "metrics": [
            _metric("Accuracy", candidate.accuracy, production.accuracy),
            _metric("Macro-F1", candidate.macro_f1, production.macro_f1),
            _metric("Weighted F1", candidate.weighted_f1, production.weighted_f1),
        ],
        "intents": intents,
        "worse": [_prediction_row(p) for p in comparison.worse],
        "better": [_prediction_row(p) for p in comparison.better],
        "blocked": comparison.blocked or bool(unfilled_stubs),
        "reasons": reasons,
    }
