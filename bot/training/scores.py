"""What a model's intent predictions are worth, and the deploy gate.

Pure functions of predictions: ``score`` turns them into accuracy, F1 per
intent and a confusion matrix; ``compare`` sets a candidate against the
production model and says whether it may be deployed. Every result is a frozen
dataclass that goes to JSON and back (``to_dict``/``from_dict``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

# Deltas this small are rounding, not a change in the model.
_EPSILON = 1e-9


class EvaluationError(RuntimeError):
    """A model cannot be scored, or two scores cannot be compared."""


@dataclass(frozen=True)
class IntentScores:
    precision: float
    recall: float
    f1: float
    support: int


@dataclass(frozen=True)
class Prediction:
    """One test example and what a model made of it."""

    text: str
    expected: str
    predicted: str
    confidence: float

    @property
    def correct(self) -> bool:
        return self.expected == self.predicted


@dataclass(frozen=True)
class Evaluation:
    """A model's intent classification scores on one version of the test set."""

    model: str
    test_set_hash: str
    accuracy: float
    macro_f1: float
    weighted_f1: float
    per_intent: dict[str, IntentScores]
    labels: tuple[str, ...]
    # Rows are expected labels, columns predicted ones, both in ``labels`` order.
    confusion: tuple[tuple[int, ...], ...]
    predictions: tuple[Prediction, ...]
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Evaluation:
        try:
            return cls(
                model=str(data["model"]),
                test_set_hash=str(data["test_set_hash"]),
                accuracy=float(data["accuracy"]),
                macro_f1=float(data["macro_f1"]),
                weighted_f1=float(data["weighted_f1"]),
                per_intent=_scores_from_dict(data["per_intent"]),
                labels=tuple(str(label) for label in data["labels"]),
                confusion=tuple(tuple(int(n) for n in row) for row in data["confusion"]),
                predictions=tuple(Prediction(**p) for p in data["predictions"]),
                seconds=float(data["seconds"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise EvaluationError(f"not a model evaluation ({exc!r})") from exc


def _scores_from_dict(data: dict[str, Any]) -> dict[str, IntentScores]:
    return {
        str(name): IntentScores(
            float(s["precision"]), float(s["recall"]), float(s["f1"]), int(s["support"])
        )
        for name, s in data.items()
    }


def _prf(true_positives: int, predicted: int, support: int) -> IntentScores:
    precision = true_positives / predicted if predicted else 0.0
    recall = true_positives / support if support else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return IntentScores(precision, recall, f1, support)


def score(
    model: str, test_set_hash: str, predictions: Sequence[Prediction], seconds: float
) -> Evaluation:
    """Accuracy, F1 and the confusion matrix of a model's predictions.

    Averages are over the test set's intents; a label only ever predicted
    (``nlu_fallback``) is listed with support 0 but not averaged.
    """
    if not predictions:
        raise EvaluationError(f"no predictions to score for {model}")
    expected = sorted({p.expected for p in predictions})
    extra = sorted({p.predicted for p in predictions} - set(expected))
    labels = (*expected, *extra)
    index = {label: i for i, label in enumerate(labels)}
    matrix = [[0] * len(labels) for _ in labels]
    for p in predictions:
        matrix[index[p.expected]][index[p.predicted]] += 1

    per_intent = {
        label: _prf(
            matrix[i][i],
            predicted=sum(row[i] for row in matrix),
            support=sum(matrix[i]),
        )
        for i, label in enumerate(labels)
    }
    total = len(predictions)
    averaged = [per_intent[label] for label in expected]
    return Evaluation(
        model=model,
        test_set_hash=test_set_hash,
        accuracy=sum(p.correct for p in predictions) / total,
        macro_f1=sum(s.f1 for s in averaged) / len(averaged),
        weighted_f1=sum(s.f1 * s.support for s in averaged) / total,
        per_intent=per_intent,
        labels=labels,
        confusion=tuple(tuple(row) for row in matrix),
        predictions=tuple(predictions),
        seconds=seconds,
    )


@dataclass(frozen=True)
class IntentChange:
    intent: str
    production_f1: float
    candidate_f1: float
    delta: float


@dataclass(frozen=True)
class Comparison:
    """A candidate model against production on the same test set, and the verdict."""

    candidate: str
    production: str
    accuracy_delta: float
    macro_f1_delta: float
    # Every intent of the test set (labels only ever predicted, like
    # nlu_fallback, are not intents), the one the candidate lost most on first.
    intents: tuple[IntentChange, ...]
    # The candidate's wrong predictions on examples production got right...
    worse: tuple[Prediction, ...]
    # ...and its right ones where production was wrong.
    better: tuple[Prediction, ...]
    blocked: bool
    reasons: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Comparison:
        try:
            return cls(
                candidate=str(data["candidate"]),
                production=str(data["production"]),
                accuracy_delta=float(data["accuracy_delta"]),
                macro_f1_delta=float(data["macro_f1_delta"]),
                intents=tuple(IntentChange(**c) for c in data["intents"]),
                worse=tuple(Prediction(**p) for p in data["worse"]),
                better=tuple(Prediction(**p) for p in data["better"]),
                blocked=bool(data["blocked"]),
                reasons=tuple(str(r) for r in data["reasons"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise EvaluationError(f"not a model comparison ({exc!r})") from exc


def compare(
    candidate: Evaluation,
    production: Evaluation,
    max_f1_drop: float,
    max_intent_f1_drop: float,
) -> Comparison:
    """How the candidate differs from production, and whether that blocks deploying it.

    Blocked when accuracy or macro-F1 falls by more than ``max_f1_drop``, or
    one intent's F1 by more than ``max_intent_f1_drop``.
    """
    if candidate.test_set_hash != production.test_set_hash:
        raise EvaluationError(
            f"{candidate.model} and {production.model} were scored on different test sets "
            f"({candidate.test_set_hash} and {production.test_set_hash}); "
            "score both on the current one"
        )
    pairs = list(zip(candidate.predictions, production.predictions, strict=False))
    if len(candidate.predictions) != len(production.predictions) or any(
        c.text != p.text or c.expected != p.expected for c, p in pairs
    ):
        raise EvaluationError(
            f"the predictions of {candidate.model} and {production.model} are not for the "
            "same examples; score both again"
        )

    intents = []
    for intent in sorted(
        name
        for name in {*candidate.per_intent, *production.per_intent}
        if _support(candidate, name) or _support(production, name)
    ):
        before, after = _f1(production, intent), _f1(candidate, intent)
        intents.append(IntentChange(intent, before, after, after - before))
    intents.sort(key=lambda c: c.delta)

    accuracy_delta = candidate.accuracy - production.accuracy
    macro_f1_delta = candidate.macro_f1 - production.macro_f1
    reasons: list[str] = []
    if candidate.model != production.model:
        for what, delta in (("accuracy", accuracy_delta), ("macro-F1", macro_f1_delta)):
            if -delta > max_f1_drop + _EPSILON:
                reasons.append(f"{what} falls by {-delta:.3f} (allowed {max_f1_drop:.3f})")
        reasons += [
            f"{c.intent} F1 falls by {-c.delta:.3f} (allowed {max_intent_f1_drop:.3f})"
            for c in intents
            if -c.delta > max_intent_f1_drop + _EPSILON
        ]
    return Comparison(
        candidate=candidate.model,
        production=production.model,
        accuracy_delta=accuracy_delta,
        macro_f1_delta=macro_f1_delta,
        intents=tuple(intents),
        worse=tuple(c for c, p in pairs if p.correct and not c.correct),
        better=tuple(c for c, p in pairs if c.correct and not p.correct),
        blocked=bool(reasons),
        reasons=tuple(reasons),
    )


def _support(evaluation: Evaluation, intent: str) -> int:
    scores = evaluation.per_intent.get(intent)
    return scores.support if scores else 0


def _f1(evaluation: Evaluation, intent: str) -> float:
    scores = evaluation.per_intent.get(intent)
    return scores.f1 if scores else 0.0


@dataclass(frozen=True)
class CrossValidation:
    """Rasa's k-fold cross-validation of the NLU pipeline on the training data."""

    folds: int
    accuracy: float
    macro_f1: float
    per_intent: dict[str, IntentScores]
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CrossValidation:
        try:
            return cls(
                folds=int(data["folds"]),
                accuracy=float(data["accuracy"]),
                macro_f1=float(data["macro_f1"]),
                per_intent=_scores_from_dict(data["per_intent"]),
                seconds=float(data["seconds"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise EvaluationError(f"not a cross-validation result ({exc!r})") from exc
