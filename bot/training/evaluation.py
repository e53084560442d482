"""Scoring dialogue models on the held-out test set.

A model is scored on ``tests/nlu/holdout.yml`` (never trained on) by parsing
each example as a call would: the intent the bot acts on is the prediction, so
a turn the FallbackClassifier turns into ``nlu_fallback`` counts as wrong.
Scores are cached beside the model (``<model>.eval-<test set hash>.json``);
models are scored in a child process so TensorFlow's memory goes with it.
The metrics and the deploy gate (``compare``) are in ``bot.training.scores``,
the confusion matrix picture in ``bot.training.confusion``; this module offers
them all.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from bot.model_store import MODEL_SUFFIX
from bot.training.confusion import confusion_svg
from bot.training.scores import (
    Comparison,
    CrossValidation,
    Evaluation,
    EvaluationError,
    IntentChange,
    IntentScores,
    Prediction,
    compare,
    score,
)

__all__ = [
    "Comparison",
    "CrossValidation",
    "Evaluation",
    "EvaluationError",
    "IntentChange",
    "IntentScores",
    "Prediction",
    "cached_evaluation",
    "compare",
    "confusion_svg",
    "cross_validate",
    "evaluate_model",
    "evaluate_models",
    "load_test_set",
    "score",
    "test_set_hash",
]

log = logging.getLogger(__name__)

HASH_CHARS = 16
# A child reports progress on stdout with lines that start with this.
_PROGRESS_PREFIX = "@progress "
_STDERR_TAIL_CHARS = 3000
# The directory holding the ``bot`` package: the child runs from there so it
# imports this very code.
_CODE_ROOT = Path(__file__).resolve().parents[2]

Progress = Callable[[str, float], None]


def test_set_hash(path: Path) -> str:
    """The version of a test set: the start of its bytes' SHA-256."""
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()[:HASH_CHARS]
    except OSError as exc:
        raise EvaluationError(
            f"cannot read the test set {path} ({exc.strerror}); "
            "check training.test_set in voicebot.yml"
        ) from exc


def load_test_set(path: Path) -> list[tuple[str, str]]:
    """The (text, intent) examples of a test set in Rasa's NLU YAML format."""
    if not path.is_file():
        raise EvaluationError(
            f"test set {path} does not exist; create it (Rasa NLU YAML) "
            "or point training.test_set in voicebot.yml at it"
        )
    from rasa.shared.nlu.training_data.loading import load_data

    try:
        data = load_data(str(path))
    except Exception as exc:  # Rasa raises several types for unreadable data
        raise EvaluationError(f"cannot read the test set {path}: {exc}") from exc
    examples = [
        (str(m.get("text")), str(m.get("intent"))) for m in data.intent_examples if m.get("text")
    ]
    if not examples:
        raise EvaluationError(f"test set {path} has no intent examples; add some under `nlu:`")
    return examples


def _model_name(model_path: Path) -> str:
    name = model_path.name
    return name[: -len(MODEL_SUFFIX)] if name.endswith(MODEL_SUFFIX) else name


def evaluate_model(
    model_path: Path,
    examples: Sequence[tuple[str, str]],
    test_set_hash: str,
    on_parsed: Callable[[int, int], None] | None = None,
) -> Evaluation:
    """Loads a model in this process and scores it on ``examples``.

    ``on_parsed(done, total)`` is called once the model is loaded and then
    after every parsed example.
    """
    from rasa.core.agent import Agent
    from rasa.utils.log_utils import configure_structlog

    configure_structlog(logging.WARNING)
    started = time.monotonic()
    try:
        agent = Agent.load(str(model_path))
    except Exception as exc:  # Rasa raises many types for a bad archive
        raise EvaluationError(
            f"cannot load model {model_path} ({exc}); it may be corrupt: delete and retrain it"
        ) from exc

    async def parse_all() -> list[Prediction]:
        predictions = []
        if on_parsed:
            on_parsed(0, len(examples))
        for text, intent in examples:
            parsed = await agent.parse_message(text)
            found = parsed.get("intent") or {}
            predictions.append(
                Prediction(
                    text,
                    intent,
                    str(found.get("name") or ""),
                    float(found.get("confidence") or 0.0),
                )
            )
            if on_parsed:
                on_parsed(len(predictions), len(examples))
        return predictions

    predictions = asyncio.run(parse_all())
    seconds = round(time.monotonic() - started, 2)
    return score(_model_name(model_path), test_set_hash, predictions, seconds)


def _cache_path(models_dir: Path, model_name: str, test_hash: str) -> Path:
    return models_dir / f"{model_name}.eval-{test_hash}.json"


def cached_evaluation(models_dir: Path, model_name: str, test_hash: str) -> Evaluation | None:
    """The stored scores of a model on this test set version, if there are any."""
    path = _cache_path(models_dir, model_name, test_hash)
    try:
        evaluation = Evaluation.from_dict(json.loads(path.read_text(encoding="utf-8")))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, EvaluationError) as exc:
        log.warning("ignoring unreadable evaluation %s (%s)", path, exc)
        return None
    if evaluation.model != model_name or evaluation.test_set_hash != test_hash:
        log.warning("ignoring evaluation %s: it is for another model or test set", path)
        return None
    return evaluation


def evaluate_models(
    models_dir: Path,
    model_names: Sequence[str],
    test_set: Path,
    progress: Progress | None = None,
) -> dict[str, Evaluation]:
    """Each model's scores on ``test_set``, from the cache or a child process.

    ``progress(stage, fraction)`` hears what is happening, fraction 0 to 1
    over all the models.
    """
    test_hash = test_set_hash(test_set)
    names = list(dict.fromkeys(_model_name(Path(n)) for n in model_names))
    results: dict[str, Evaluation] = {}
    for i, name in enumerate(names):

        def report(stage: str, fraction: float, i: int = i) -> None:
            if progress:
                progress(stage, (i + fraction) / len(names))

        cached = cached_evaluation(models_dir, name, test_hash)
        if cached is None:
            cached = _evaluate_in_child(models_dir, name, test_set, test_hash, report)
        else:
            report(f"{name}: scores already known", 1.0)
        results[name] = cached
    return results


def _evaluate_in_child(
    models_dir: Path,
    name: str,
    test_set: Path,
    test_hash: str,
    report: Progress,
) -> Evaluation:
    archive = models_dir / f"{name}{MODEL_SUFFIX}"
    if not archive.is_file():
        raise EvaluationError(f"model {archive} does not exist; train it or pick another")
    report(f"{name}: loading the model", 0.0)
    fd, tmp_name = tempfile.mkstemp(dir=models_dir, prefix=f".{name}.eval-", suffix=".tmp")
    os.close(fd)
    tmp = Path(tmp_name)
    command = [
        sys.executable, "-m", "bot.training.evaluation",
        "--model", str(archive.resolve()), "--test-set", str(test_set.resolve()),
        "--out", str(tmp.resolve()),
    ]  # fmt: skip
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    try:
        with tempfile.TemporaryFile(mode="w+", encoding="utf-8", errors="replace") as stderr:
            with subprocess.Popen(
                command, cwd=_CODE_ROOT, env=env, text=True, stdout=subprocess.PIPE, stderr=stderr
            ) as proc:
                assert proc.stdout is not None
                try:
                    for line in proc.stdout:
                        if line.startswith(_PROGRESS_PREFIX):
                            done, total = (int(n) for n in line.split()[1:3])
                            report(f"{name}: {done}/{total} examples", done / max(total, 1))
                except BaseException:  # the progress callback raised: the child is not needed
                    proc.kill()
                    raise
            if proc.returncode != 0:
                stderr.seek(0)
                tail = stderr.read()[-_STDERR_TAIL_CHARS:].strip()
                raise EvaluationError(
                    f"scoring {name} failed (exit code {proc.returncode}):\n{tail}"
                )
        evaluation = Evaluation.from_dict(json.loads(tmp.read_text(encoding="utf-8")))
        if evaluation.test_set_hash != test_hash:
            raise EvaluationError(f"the test set {test_set} changed while {name} was scored; retry")
        # Readers never see half a file: the rename is atomic.
        os.replace(tmp, _cache_path(models_dir, name, test_hash))
    finally:
        tmp.unlink(missing_ok=True)
    report(f"{name}: scored", 1.0)
    return evaluation


# Keys of sklearn's classification report that are not labels.
_REPORT_SUMMARIES = frozenset({"accuracy", "macro avg", "weighted avg", "micro avg"})


def cross_validate(
    project_dir: Path, folds: int, out_dir: Path, config: Path | None = None
) -> CrossValidation:
    """Runs ``rasa test nlu --cross-validation`` on the project's data.

    Unlike ``evaluate_model``, Rasa scores the intent beneath a fallback, so
    ``nlu_fallback`` never appears here. Rasa's reports stay in ``out_dir``.
    """
    if folds < 2:
        raise EvaluationError(f"cross-validation needs at least 2 folds, not {folds}")
    config = config or project_dir / "config.yml"
    out_dir.mkdir(parents=True, exist_ok=True)
    report_path = out_dir / "intent_report.json"
    report_path.unlink(missing_ok=True)  # never read an earlier run's report
    command = [
        sys.executable, "-m", "rasa", "test", "nlu", "--cross-validation",
        "--folds", str(folds), "--config", str(config.resolve()), "--nlu", "data",
        "--out", str(out_dir.resolve()), "--no-plot",
    ]  # fmt: skip
    domain = project_dir / "domain"
    if not domain.is_dir():
        domain = project_dir / "domain.yml"
    if domain.exists():
        command += ["--domain", str(domain)]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    started = time.monotonic()
    proc = subprocess.run(
        command,
        cwd=project_dir,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        errors="replace",
        check=False,
    )
    seconds = round(time.monotonic() - started, 1)
    if proc.returncode != 0 or not report_path.is_file():
        raise EvaluationError(
            f"cross-validation failed (exit code {proc.returncode}); `rasa data validate` "
            f"names problems in the data:\n{proc.stderr[-_STDERR_TAIL_CHARS:].strip()}"
        )
    report = json.loads(report_path.read_text(encoding="utf-8"))
    per_intent = {
        label: IntentScores(
            float(s["precision"]), float(s["recall"]), float(s["f1-score"]), int(s["support"])
        )
        for label, s in report.items()
        if label not in _REPORT_SUMMARIES and isinstance(s, dict)
    }
    return CrossValidation(
        folds=folds,
        accuracy=float(report["accuracy"]),
        macro_f1=float(report["macro avg"]["f1-score"]),
        per_intent=per_intent,
        seconds=seconds,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Scores one model on a test set and writes the evaluation as JSON."""
    parser = argparse.ArgumentParser(prog="python -m bot.training.evaluation")
    parser.add_argument("--model", type=Path, required=True, help="a model archive")
    parser.add_argument("--test-set", type=Path, required=True, help="Rasa NLU YAML")
    parser.add_argument("--out", type=Path, required=True, help="the JSON file to write")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    def print_progress(done: int, total: int) -> None:
        # About fifty reports per model: enough for a progress bar, not a flood.
        if done % max(1, total // 50) == 0 or done == total:
            print(f"{_PROGRESS_PREFIX}{done} {total}", flush=True)

    try:
        test_hash = test_set_hash(args.test_set)
        examples = load_test_set(args.test_set)
        evaluation = evaluate_model(args.model, examples, test_hash, on_parsed=print_progress)
    except EvaluationError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    args.out.write_text(json.dumps(evaluation.to_dict()) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
