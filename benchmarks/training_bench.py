"""Training benchmark: how long a trainer waits for a retrain and for the
comparison with production, on the shipped data. Writes
benchmarks/results/training.json.

retrain_seconds: ``rasa train`` of the shipped config, domain and data in a
copy of the project with an empty Rasa cache (as the first retrain after a
data change that touches every component), through the same code as
``voicebot train retrain``.

evaluate_seconds: scoring the new model and the production model on the
held-out set (each in a child process, as ``voicebot train evaluate`` does
when neither score is cached), then comparing them.

inbox: listing the review inbox over a call store of 5,000 caller turns in
1,000 calls (the held-out set's sentences, some with fillers, order numbers
and phone numbers, as callers say them), the first time (every text
redacted) and again (redactions cached, as in a running console).
"""

from __future__ import annotations

import json
import platform
import random
import shutil
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

from bot.events import BotTurn, CallEnded, CallStarted, TranscriptFinal
from bot.model_store import model_for_fingerprint, train_model
from bot.privacy import Redactor
from bot.store import CallStore
from bot.training.evaluation import compare, evaluate_models, load_test_set
from bot.training.inbox import InboxFilter, ReviewInbox

PROJECT_DIR = Path(__file__).resolve().parent.parent
RESULTS = PROJECT_DIR / "benchmarks" / "results" / "training.json"
PROJECT_FILES = ("domain.yml", "config.yml", "endpoints.yml", "credentials.yml")


def main() -> None:
    production = train_model(PROJECT_DIR, PROJECT_DIR / "models")
    test_set = PROJECT_DIR / "tests" / "nlu" / "holdout.yml"
    with tempfile.TemporaryDirectory(prefix="training-bench-") as folder:
        copy = Path(folder)
        for name in PROJECT_FILES:
            shutil.copy2(PROJECT_DIR / name, copy / name)
        shutil.copytree(PROJECT_DIR / "data", copy / "data")
        models = copy / "models"
        models.mkdir()
        shutil.copy2(production.path, models / production.path.name)

        started = time.perf_counter()
        retrained = train_model(copy, models, trained_by="benchmark", on_output=lambda _l: None)
        retrain_seconds = time.perf_counter() - started
        assert model_for_fingerprint(models, retrained.fingerprint) == retrained.path

        started = time.perf_counter()
        scored = evaluate_models(models, [retrained.name, production.name], test_set)
        comparison = compare(scored[retrained.name], scored[production.name], 0.02, 0.2)
        evaluate_seconds = time.perf_counter() - started

    inbox = inbox_timing(test_set)
    result = {
        "benchmark": "training",
        "measured_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {"cpus": _cpus(), "python": platform.python_version()},
        "data": {"examples": _count_examples(PROJECT_DIR / "data" / "nlu"), "test_set": 352},
        "retrain_seconds": round(retrain_seconds, 1),
        "evaluate_seconds": round(evaluate_seconds, 1),
        "evaluate_models": 2,
        "retrained": {
            "accuracy": round(scored[retrained.name].accuracy, 4),
            "macro_f1": round(scored[retrained.name].macro_f1, 4),
        },
        "production": {
            "model": production.name,
            "accuracy": round(scored[production.name].accuracy, 4),
            "macro_f1": round(scored[production.name].macro_f1, 4),
        },
        "deploy_blocked": comparison.blocked,
        "inbox": inbox,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(result, indent=2))


def inbox_timing(test_set: Path, calls: int = 1000, turns_per_call: int = 5) -> dict[str, float]:
    sentences = [text for text, _intent in load_test_set(test_set)]
    fillers = ["", "", "um ", "uh ", "well "]
    extras = ["", "", "", " order one two three four five", " my number is 07700 900123"]
    rng = random.Random(7)
    with tempfile.TemporaryDirectory(prefix="inbox-bench-") as folder:
        store = CallStore(f"sqlite:///{Path(folder) / 'calls.sqlite3'}", redact_after_call=False)
        for number in range(calls):
            call_id = f"call{number:05d}"
            store.listener(CallStarted(call_id, 0, "voice"))
            for turn in range(turns_per_call):
                text = rng.choice(fillers) + rng.choice(sentences) + rng.choice(extras)
                store.listener(TranscriptFinal(call_id, turn * 1000, text, rng.uniform(0.3, 1)))
                store.listener(BotTurn(call_id, turn * 1000 + 5, user=text, intent="inform",
                                       confidence=rng.uniform(0.3, 1.0)))  # fmt: skip
            store.listener(CallEnded(call_id, 9000, "hangup"))
        store.flush()
        inbox = ReviewInbox(store.engine, Redactor())
        started = time.perf_counter()
        items = inbox.items(InboxFilter(include_routine=True))
        first = time.perf_counter() - started
        started = time.perf_counter()
        inbox.items(InboxFilter(include_routine=True))
        again = time.perf_counter() - started
        store.close()
    return {
        "turns": calls * turns_per_call,
        "items": len(items),
        "first_listing_seconds": round(first, 2),
        "cached_listing_seconds": round(again, 2),
    }


def _cpus() -> int:
    import os

    return len(os.sched_getaffinity(0))


def _count_examples(folder: Path) -> int:
    return sum(
        1
        for path in folder.rglob("*.yml")
        for line in path.read_text(encoding="utf-8").splitlines()
        if line.strip().startswith("- ") and not line.strip().startswith("- intent:")
    )


if __name__ == "__main__":
    main()
