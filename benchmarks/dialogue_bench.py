"""Dialogue benchmark: NLU quality on the held-out set and turn latency.

Writes benchmarks/results/dialogue.json with
- nlu: intent accuracy and macro-F1 on tests/nlu/holdout.yml (never trained on),
  and per section: the main set, paraphrases (wordings never trained on) and
  off-topic requests (handled: out_of_scope or not understood);
- turn_latency_ms: p50/p95/max of caller text in -> bot text out, in-process
  through the call engine (Rasa NLU, policies, and custom actions over HTTP to
  the local action server with the demo backend), over at least 200 turns.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import yaml

PROJECT_DIR = Path(__file__).resolve().parent.parent
RESULTS = PROJECT_DIR / "benchmarks" / "results" / "dialogue.json"
MIN_TURNS = 200

# Calls as a caller would make them; repeated until MIN_TURNS turns have run.
CALLS = [
    ["hello", "where is my order", "one two three four five", "thank you", "no thats all"],
    ["i want to cancel order three four five six seven", "no", "goodbye"],
    ["my parcel hasnt arrived", "two three four five six", "bye"],
    ["has my refund come through for order four five six seven eight", "thanks bye"],
    ["i forgot my password", "jane dot doe at example dot com", "no thanks"],
    ["i want to make a complaint", "the box was crushed and the glass inside broke", "bye"],
    ["what are your opening hours", "sorry can you repeat that", "goodbye"],
    ["am i talking to a robot", "no", "my card was declined", "no", "bye"],
    ["can someone call me back", "oh seven seven double oh nine oh oh four five six"],
    ["i need to speak to a person"],
]


# An off-topic request is handled when the bot says what the line can do
# (out_of_scope) or that it did not understand (nlu_fallback).
OFF_TOPIC_HANDLED = frozenset({"out_of_scope", "nlu_fallback"})


def holdout_examples() -> list[tuple[str, str, str]]:
    """(text, intent, section): sections "main", "paraphrase" and "off_topic"."""
    data = yaml.safe_load((PROJECT_DIR / "tests" / "nlu" / "holdout.yml").read_text())
    examples = []
    for block in data["nlu"]:
        section = (block.get("metadata") or {}).get("section", "main")
        for line in str(block["examples"]).splitlines():
            text = line.strip().removeprefix("- ").strip()
            if text:
                examples.append((text, block["intent"], section))
    return examples


def section_scores(examples: list[tuple[str, str, str]], predicted: list[str]) -> dict:
    """Accuracy of each held-out section; off-topic counts as handled when not
    forced into a real intent."""
    scores: dict[str, dict] = {}
    for (_, gold, section), guess in zip(examples, predicted, strict=True):
        ok = guess in OFF_TOPIC_HANDLED if section == "off_topic" else guess == gold
        entry = scores.setdefault(section, {"examples": 0, "correct": 0})
        entry["examples"] += 1
        entry["correct"] += ok
    for entry in scores.values():
        entry["accuracy"] = round(entry["correct"] / entry["examples"], 4)
    if "off_topic" in scores:
        scores["off_topic"]["handled_rate"] = scores["off_topic"].pop("accuracy")
    return scores


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return round(ordered[index], 1)


async def measure(engine, examples: list[tuple[str, str, str]]) -> dict:  # type: ignore[no-untyped-def]
    from sklearn.metrics import accuracy_score, f1_score

    engine.start()
    await engine.warm_up()

    agent = engine.dialogue._agent  # parse only: no dialogue state touched
    predicted = []
    for text, _, _ in examples:
        parsed = await agent.parse_message(text)
        predicted.append(parsed["intent"]["name"])
    gold = [intent for _, intent, _ in examples]
    labels = sorted(set(gold))

    latencies: list[float] = []
    while len(latencies) < MIN_TURNS:
        for lines in CALLS:
            call = engine.new_call()
            for line in lines:
                started = time.perf_counter()
                result = await engine.turn(call, line)
                latencies.append((time.perf_counter() - started) * 1000)
                assert result.bot, f"no reply to {line!r}"
                if result.hang_up:
                    break
    return {
        "nlu": {
            "examples": len(examples),
            "intent_accuracy": round(accuracy_score(gold, predicted), 4),
            "intent_macro_f1": round(
                f1_score(gold, predicted, labels=labels, average="macro", zero_division=0), 4
            ),
            "sections": section_scores(examples, predicted),
        },
        "turn_latency_ms": {
            "turns": len(latencies),
            "p50": percentile(latencies, 50),
            "p95": percentile(latencies, 95),
            "max": round(max(latencies), 1),
            "mean": round(statistics.fmean(latencies), 1),
        },
    }


def main() -> int:
    sys.path.insert(0, str(PROJECT_DIR))
    from bot.call import CallEngine
    from bot.logs import setup_logging
    from bot.model_store import resolve_model
    from bot.settings import load_settings

    settings = load_settings(PROJECT_DIR)
    with tempfile.TemporaryDirectory() as tmp:
        settings = dataclasses.replace(
            settings,
            backend=dataclasses.replace(settings.backend, database=Path(tmp) / "backend.sqlite3"),
        )
        setup_logging(Path(tmp) / "bench.log")
        model = resolve_model(settings.project_dir, settings.models_dir)
        engine = CallEngine(settings)
        try:
            results = asyncio.run(measure(engine, holdout_examples()))
        finally:
            engine.close()
    results = {
        "benchmark": "dialogue",
        "measured_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "model": model.name,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        **results,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
