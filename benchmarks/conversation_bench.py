"""Conversation benchmark: scripted calls, their outcomes, containment.

Runs every call of ``conversation_scripts.SCRIPTS`` through the call engine
in-process, as ``voicebot chat`` would (real dialogue model, real action
server, a fresh demo backend), and writes benchmarks/results/conversations.json:

- calls, resolved_by_bot (the bot finished the task alone, saying what the
  script expects), containment_rate (resolved_by_bot / calls);
- correct_escalations (went to a person when the script expects it, for an
  expected reason), wrong_escalations (went to a person when the bot should
  have resolved it, or for another reason);
- stranded_callers: hung up on while the caller still had something to say,
  or asked the same thing 3 or more times in a row (goal 0);
- turns_per_resolved_call; per kind of call; and every call that missed.
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
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

PROJECT_DIR = Path(__file__).resolve().parent.parent
RESULTS = PROJECT_DIR / "benchmarks" / "results" / "conversations.json"
# The same bot words this many turns in a row is a caller going round in circles.
LOOP_TURNS = 3

sys.path.insert(0, str(PROJECT_DIR))

from benchmarks.conversation_scripts import SCRIPTS, Script  # noqa: E402


@dataclasses.dataclass
class CallRecord:
    script: Script
    turns: list[dict[str, Any]]
    hung_up_early: bool

    @property
    def said(self) -> str:
        return " ".join(" ".join(turn["bot"]) for turn in self.turns).lower()

    @property
    def escalation(self) -> str | None:
        return next((t["escalation_reason"] for t in self.turns if t["escalated"]), None)

    def looped(self) -> bool:
        run = 1
        for before, after in zip(self.turns, self.turns[1:], strict=False):
            run = run + 1 if after["bot"] and after["bot"] == before["bot"] else 1
            if run >= LOOP_TURNS:
                return True
        return False

    def verdict(self) -> tuple[str, str]:
        """(resolved | correct_escalation | wrong_escalation | missed, why)."""
        script, reason = self.script, self.escalation
        missing = [phrase for phrase in script.says if phrase.lower() not in self.said]
        if script.outcome == "escalated":
            if reason in script.reasons:
                return "correct_escalation", ""
            if reason:
                return "wrong_escalation", f"escalated for {reason}, expected {script.reasons}"
            return "missed", f"not escalated, expected {script.reasons}"
        if reason:
            return "wrong_escalation", f"escalated for {reason}"
        if missing:
            return "missed", f"never said {missing}"
        return "resolved", ""


async def run_call(engine: Any, script: Script) -> CallRecord:
    from bot.chat import TextCall

    text_call = TextCall(engine)
    turns: list[dict[str, Any]] = []
    hung_up_early = False
    for index, line in enumerate(script.lines):
        result = await text_call.say(line)
        turns.append(result.to_dict())
        if result.hang_up:
            hung_up_early = index < len(script.lines) - 1
            await text_call.hang_up(result.end_reason or "bot_hang_up")
            break
    else:
        await text_call.hang_up("caller_hang_up")
    return CallRecord(script, turns, hung_up_early)


async def measure(engine: Any) -> dict[str, Any]:
    engine.start()
    await engine.warm_up()
    records = [await run_call(engine, script) for script in SCRIPTS]
    verdicts = [record.verdict() for record in records]
    stranded = [r for r in records if r.hung_up_early or r.looped()]
    resolved = [r for r, (v, _) in zip(records, verdicts, strict=True) if v == "resolved"]
    by_kind: dict[str, dict[str, int]] = {}
    for record, (verdict, _) in zip(records, verdicts, strict=True):
        kind = by_kind.setdefault(record.script.kind, {"calls": 0, "as_expected": 0})
        kind["calls"] += 1
        kind["as_expected"] += verdict in {"resolved", "correct_escalation"}
    turns = [len(r.turns) for r in resolved]
    return {
        "calls": len(records),
        "resolved_by_bot": len(resolved),
        "containment_rate": round(len(resolved) / len(records), 4),
        "correct_escalations": sum(v == "correct_escalation" for v, _ in verdicts),
        "wrong_escalations": sum(v == "wrong_escalation" for v, _ in verdicts),
        "stranded_callers": len(stranded),
        "turns_per_resolved_call": round(statistics.fmean(turns), 2) if turns else None,
        "expected_resolved": sum(s.outcome == "resolved" for s in SCRIPTS),
        "expected_escalated": sum(s.outcome == "escalated" for s in SCRIPTS),
        "by_kind": by_kind,
        "misses": [
            {
                "call": record.script.name,
                "verdict": verdict,
                "why": why or "stranded",
                "turns": [
                    {"user": t["user"], "intent": t["intent"], "bot": t["bot"]}
                    for t in record.turns
                ],
            }
            for record, (verdict, why) in zip(records, verdicts, strict=True)
            if verdict not in {"resolved", "correct_escalation"} or record in stranded
        ],
    }


def main() -> int:
    from bot.call import CallEngine
    from bot.logs import setup_logging
    from bot.model_store import resolve_model
    from bot.settings import load_settings

    settings = load_settings(PROJECT_DIR)
    with tempfile.TemporaryDirectory() as tmp:
        # A fresh backend, call store and queue: the project's own are untouched.
        settings = dataclasses.replace(
            settings,
            backend=dataclasses.replace(settings.backend, database=Path(tmp) / "backend.sqlite3"),
            store=dataclasses.replace(
                settings.store,
                url=f"sqlite:///{tmp}/calls.sqlite3",
                recordings_dir=Path(tmp) / "recordings",
            ),
        )
        setup_logging(Path(tmp) / "bench.log")
        model = resolve_model(settings.project_dir, settings.models_dir)
        engine = CallEngine(settings)
        try:
            results = asyncio.run(measure(engine))
        finally:
            engine.close()
    results = {
        "benchmark": "conversations",
        "measured_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "model": model.name,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        **results,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    summary = {k: v for k, v in results.items() if k not in {"misses", "by_kind"}}
    print(json.dumps(summary, indent=2))
    for miss in results["misses"]:
        print(f"MISS {miss['call']}: {miss['verdict']}: {miss['why']}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
