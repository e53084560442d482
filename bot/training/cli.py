"""``voicebot train``: the trainers' workflow from a terminal or a script.

Every command works on the same database and files as the console's trainer
pages. ``--json`` prints one JSON object per line on stdout; progress and
problems go to stderr. Exit codes: 0 done, 2 refused (the message says why),
3 a deploy blocked by the comparison with production.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from bot.settings import Settings

BLOCKED_EXIT = 3


class TrainCliError(Exception):
    """A refused command; printed without a traceback, exit code ``code``."""

    def __init__(self, message: str, code: int = 2) -> None:
        super().__init__(message)
        self.code = code


def _date(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date like 2026-11-27") from exc
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


def _entity(text: str) -> tuple[str, str, str]:
    name, sep, rest = text.partition("=")
    words, _sep, value = rest.partition("=")
    if not sep or not name.strip() or not words.strip():
        raise argparse.ArgumentTypeError(f"{text!r}: give an entity as ENTITY=WORDS[=MEANING]")
    return name.strip(), words.strip(), value.strip()


def _default_user() -> str:
    try:
        return os.environ.get("VOICEBOT_USER") or getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def add_train_parser(sub: Any, handler: Callable[[Settings, argparse.Namespace], int]) -> None:
    """Adds ``train`` and its commands to the ``voicebot`` parser."""
    train = sub.add_parser("train", help="review misunderstood turns, retrain, deploy")
    train_sub = train.add_subparsers(dest="train_command", required=True)

    def command(name: str, text: str, user: bool = False, as_json: bool = True) -> Any:
        parser = train_sub.add_parser(name, help=text)
        if user:
            parser.add_argument(
                "--user", default=_default_user(), help="who does this (default: your login)"
            )
        if as_json:
            parser.add_argument("--json", action="store_true", help="print JSON lines")
        return parser

    inbox = command("inbox", "caller turns to review, the ones needing a look first")
    inbox.add_argument("--reason", help="only items with this reason (e.g. fallback)")
    inbox.add_argument("--intent", help="only items understood as this intent")
    inbox.add_argument("--since", type=_date, help="turns from this date (YYYY-MM-DD)")
    inbox.add_argument("--until", type=_date, help="turns before this date")
    inbox.add_argument("--search", default="", help="words the item's text contains")
    inbox.add_argument("--all", action="store_true", help="include items nothing is doubtful of")
    inbox.add_argument("--limit", type=int, default=100)

    show = command("show", "one inbox item with its turns")
    show.add_argument("item")

    annotate = command("annotate", "decide inbox items: write them into the training data", True)
    annotate.add_argument("items", nargs="+", metavar="ID")
    choice = annotate.add_mutually_exclusive_group(required=True)
    choice.add_argument("--intent", help="an existing intent they mean")
    choice.add_argument("--new-intent", help="create this intent with them as its examples")
    choice.add_argument("--out-of-scope", action="store_true", help="not something we handle")
    choice.add_argument("--discard", action="store_true", help="noise: write nothing")
    choice.add_argument(
        "--entity",
        type=_entity,
        action="append",
        help="ENTITY=WORDS[=MEANING]: correct the entities (repeat), e.g. "
        "'order_id=won two three for five=12345'; with --entity-intent",
    )
    annotate.add_argument("--entity-intent", default="", help="intent of a corrected example")
    annotate.add_argument("--response", default="", help="a new intent's answer")
    annotate.add_argument(
        "--no-validate", action="store_true", help="skip `rasa data validate` afterwards"
    )

    respond = command("respond", "write the answer of an intent (fills a stub)", as_json=False)
    respond.add_argument("intent")
    respond.add_argument("text")

    command("validate", "run `rasa data validate` and show its problems")
    command("retrain", "train a model on the current data and compare it with production", True)

    evaluate = command("evaluate", "compare a model (default: the newest) with production")
    evaluate.add_argument("model", nargs="?", default="")
    evaluate.add_argument(
        "--cross-validation", action="store_true", help="also cross-validate the data (slow)"
    )
    evaluate.add_argument("--folds", type=int, default=0, help="cross-validation folds")

    deploy = command("deploy", "make a model (default: the newest) production", True)
    deploy.add_argument("model", nargs="?", default="")
    deploy.add_argument(
        "--override", action="store_true", help="admins only: deploy despite a block"
    )

    rollback = command("rollback", "return production to the previous (or a named) model", True)
    rollback.add_argument("--to", default="", help="an earlier model to return to")

    command("models", "kept models with their metadata; * marks production")
    command("decisions", "the audit trail of decisions")
    train.set_defaults(handler=handler)


def run_train_command(settings: Settings, args: argparse.Namespace) -> int:
    """Runs one ``voicebot train`` command; returns the exit code."""
    from bot.model_store import ModelError
    from bot.training.data_files import TrainingDataError
    from bot.training.deploy import DeployError
    from bot.training.evaluation import EvaluationError
    from bot.training.jobs import JobError
    from bot.training.service import TrainingWorkflow, WorkflowError

    out = _stdout_for(args)
    workflow = TrainingWorkflow(settings)
    try:
        return _COMMANDS[args.train_command](workflow, args, out)
    except DeployError as exc:
        raise TrainCliError(str(exc), BLOCKED_EXIT if exc.code == "blocked" else 2) from exc
    except (
        WorkflowError, TrainingDataError, ModelError, EvaluationError, JobError
    ) as exc:  # fmt: skip
        raise TrainCliError(str(exc)) from exc
    finally:
        workflow.close()


def _stdout_for(args: argparse.Namespace) -> Any:
    from bot.logs import json_stdout

    return json_stdout() if getattr(args, "json", False) else sys.stdout


def _emit(out: Any, row: dict[str, Any]) -> None:
    out.write(json.dumps(row, ensure_ascii=False) + "\n")


def _inbox(workflow: Any, args: argparse.Namespace, out: Any) -> int:
    from bot.training.inbox import REASONS, InboxFilter

    if args.reason and args.reason not in REASONS:
        raise TrainCliError(f"unknown reason {args.reason!r}; one of {', '.join(REASONS)}")
    items = workflow.items(
        InboxFilter(
            reason=args.reason or "",
            intent=args.intent or "",
            since=args.since,
            until=args.until,
            search=args.search,
            include_routine=args.all,
        )
    )[: max(0, args.limit)]
    for item in items:
        if args.json:
            _emit(out, item.to_dict())
        else:
            out.write(
                f"{item.id}  {item.reason:<18} {item.predicted_intent or '-':<20} "
                f"{item.confidence:4.2f}  x{item.count:<3} {item.text}\n"
            )
    if not args.json:
        print(f"{len(items)} item(s)", file=sys.stderr)
    return 0


def _show(workflow: Any, args: argparse.Namespace, out: Any) -> int:
    item = workflow.item(args.item)
    turns = [
        {
            "turn_id": turn.turn_id,
            "call_id": turn.call_id,
            "channel": turn.channel,
            "at": turn.created_at.isoformat(timespec="seconds"),
            "text": turn.text,
            "intent": turn.intent,
            "confidence": round(turn.confidence, 4),
            "asr_confidence": turn.asr_confidence,
            "reasons": list(turn.reasons),
        }
        for turn in item.turns
    ]
    if args.json:
        _emit(out, {**item.to_dict(), "turns": turns})
        return 0
    out.write(f"{item.id}: {item.text!r} ({item.count} turns in {item.calls} calls)\n")
    out.write(f"  understood as {item.predicted_intent} ({item.confidence:.2f})\n")
    out.write(f"  reasons: {', '.join(item.reasons)}\n")
    for turn in turns:
        out.write(
            f"  {turn['at']}  call {turn['call_id']}  {turn['intent']} "
            f"{turn['confidence']:.2f}  {turn['text']}\n"
        )
    return 0


def _annotate(workflow: Any, args: argparse.Namespace, out: Any) -> int:
    if args.intent:
        decision, intent = "intent", args.intent
    elif args.new_intent:
        decision, intent = "new_intent", args.new_intent
    elif args.out_of_scope:
        decision, intent = "out_of_scope", ""
    elif args.discard:
        decision, intent = "discard", ""
    else:
        decision, intent = "entities", args.entity_intent
    records = workflow.annotate(
        args.items,
        decision,
        args.user,
        intent=intent,
        response_text=args.response,
        entities=args.entity or (),
    )
    for record in records:
        if args.json:
            _emit(out, record.to_dict())
        else:
            out.write(
                f"{record.item_id}: {record.decision}"
                f"{' ' + record.intent if record.intent else ''}; wrote {len(record.examples)} "
                f"example(s), {len(record.duplicates)} already in the data; "
                f"{', '.join(record.files) or 'no file changed'}\n"
            )
    if not args.no_validate:
        return _print_validation(workflow.validate(), args, out)
    return 0


def _print_validation(validation: Any, args: argparse.Namespace, out: Any) -> int:
    if args.json:
        _emit(
            out,
            {
                "validation": {
                    "ok": validation.ok,
                    "problems": list(validation.problems),
                    "seconds": round(validation.seconds, 1),
                }
            },
        )
    else:
        verdict = "passes" if validation.ok else "FAILS"
        print(f"rasa data validate {verdict} ({validation.seconds:.0f} s)", file=sys.stderr)
        for problem in validation.problems:
            print(f"  - {problem}", file=sys.stderr)
    return 0 if validation.ok else 2


def _respond(workflow: Any, args: argparse.Namespace, out: Any) -> int:
    workflow.set_response(args.intent, args.text)
    out.write(f"utter_{args.intent} now says: {args.text}\n")
    return 0


def _validate(workflow: Any, args: argparse.Namespace, out: Any) -> int:
    return _print_validation(workflow.validate(), args, out)


def _progress_printer() -> Callable[[str, float], None]:
    last = [""]

    def show(stage: str, fraction: float) -> None:
        line = f"{fraction * 100:5.1f}%  {stage}"
        if line != last[0]:
            last[0] = line
            end = "\r" if sys.stderr.isatty() else "\n"
            print(line.ljust(70), end=end, file=sys.stderr, flush=True)

    return show


def _retrain(workflow: Any, args: argparse.Namespace, out: Any) -> int:
    from bot.training.service import retrain_job

    job = workflow.jobs.run(
        "retrain", args.user, retrain_job(workflow, args.user), on_progress=_progress_printer()
    )
    if sys.stderr.isatty():
        print(file=sys.stderr)
    result = job.result or {}
    if args.json:
        _emit(out, {"job": job.id, **result})
    else:
        out.write(f"model {result.get('model')} (job {job.id})\n")
        _write_verdict(out, result)
    return 0


def _write_verdict(out: Any, result: dict[str, Any]) -> None:
    evaluation = result.get("evaluation") or {}
    production = evaluation.get("production") or {}
    out.write(
        f"  accuracy {evaluation.get('accuracy', 0):.3f} (production "
        f"{production.get('accuracy', 0):.3f}), macro-F1 {evaluation.get('macro_f1', 0):.3f} "
        f"(production {production.get('macro_f1', 0):.3f}) "
        f"against {evaluation.get('compared_with')}\n"
    )
    if evaluation.get("blocked"):
        out.write("  deploy BLOCKED: " + "; ".join(evaluation.get("reasons") or []) + "\n")
    else:
        out.write("  may be deployed\n")


def _evaluate(workflow: Any, args: argparse.Namespace, out: Any) -> int:
    comparison, scored = workflow.evaluate(args.model, progress=_progress_printer())
    rows: dict[str, Any] = {
        "comparison": comparison.to_dict(),
        "candidate": _scores(scored[comparison.candidate]),
        "production": _scores(scored[comparison.production]),
    }
    if args.cross_validation:
        from bot.training.evaluation import cross_validate

        folds = args.folds or workflow.settings.training.cross_validation_folds
        print(f"cross-validating the data with {folds} folds (slow)...", file=sys.stderr)
        result = cross_validate(
            workflow.project_dir, folds, workflow.settings.var_dir / "cross_validation"
        )
        rows["cross_validation"] = result.to_dict()
    if args.json:
        _emit(out, rows)
        return 0
    candidate, production = rows["candidate"], rows["production"]
    out.write(f"candidate  {comparison.candidate}\nproduction {comparison.production}\n")
    for name in ("accuracy", "macro_f1", "weighted_f1"):
        out.write(
            f"  {name:<12} {candidate[name]:.3f}  vs {production[name]:.3f}  "
            f"({candidate[name] - production[name]:+.3f})\n"
        )
    out.write("  per intent (F1, candidate vs production):\n")
    for change in comparison.intents:
        out.write(
            f"    {change.intent:<22} {change.candidate_f1:.3f}  vs {change.production_f1:.3f}"
            f"  ({change.delta:+.3f})\n"
        )
    if comparison.worse:
        out.write(f"  examples that got worse ({len(comparison.worse)}):\n")
        for prediction in comparison.worse[:20]:
            out.write(
                f"    {prediction.text!r}: expected {prediction.expected}, now "
                f"{prediction.predicted} ({prediction.confidence:.2f})\n"
            )
    if "cross_validation" in rows:
        cv = rows["cross_validation"]
        out.write(
            f"  cross-validation ({cv['folds']} folds): accuracy {cv['accuracy']:.3f}, "
            f"macro-F1 {cv['macro_f1']:.3f}\n"
        )
    verdict = "deploy BLOCKED: " + "; ".join(comparison.reasons) if comparison.blocked else ""
    out.write(f"  {verdict or 'may be deployed'}\n")
    return 0


def _scores(evaluation: Any) -> dict[str, Any]:
    from bot.training.service import evaluation_summary

    return {
        "model": evaluation.model,
        **evaluation_summary(evaluation),
        "per_intent": {
            name: {"precision": s.precision, "recall": s.recall, "f1": s.f1, "support": s.support}
            for name, s in evaluation.per_intent.items()
        },
    }


def _deploy(workflow: Any, args: argparse.Namespace, out: Any) -> int:
    role = role_of(workflow.settings, args.user)
    deployment = workflow.deploy(args.model, args.user, role, override=args.override)
    if args.json:
        _emit(out, deployment.to_dict())
    else:
        note = " (override)" if deployment.override else ""
        out.write(f"{deployment.model_name} is production{note}; new calls use it\n")
    return 0


def _rollback(workflow: Any, args: argparse.Namespace, out: Any) -> int:
    deployment = workflow.rollback(args.user, args.to)
    if args.json:
        _emit(out, deployment.to_dict())
    else:
        out.write(f"rolled back: {deployment.model_name} is production; new calls use it\n")
    return 0


def _models(workflow: Any, args: argparse.Namespace, out: Any) -> int:
    for row in workflow.models():
        data = row.to_dict()
        if args.json:
            _emit(out, data)
            continue
        evaluation = data["evaluation"] or {}
        scores = (
            f"acc {evaluation['accuracy']:.3f} F1 {evaluation['macro_f1']:.3f}"
            if evaluation
            else "not evaluated"
        )
        mark = "*" if row.in_production else " "
        out.write(
            f"{mark} {data['model']}  {data['trained_at'] or '?'}  by {data['trained_by'] or '?'}"
            f"  {scores}\n"
        )
    return 0


def _decisions(workflow: Any, args: argparse.Namespace, out: Any) -> int:
    for record in workflow.decisions():
        data = record.to_dict()
        if args.json:
            _emit(out, data)
        else:
            out.write(
                f"{data['decided_at']}  {data['decided_by']:<12} {data['item_id']}  "
                f"{data['decision']} {data['intent'] or ''}  {len(record.examples)} written\n"
            )
    return 0


def role_of(settings: Settings, name: str) -> str:
    """The console role of the account named ``name``, "" when there is none."""
    from bot.queue import AgentQueue

    queue = AgentQueue(settings.store_url)
    try:
        return next((agent.role for agent in queue.agents() if agent.name == name), "")
    finally:
        queue.close()


_COMMANDS: dict[str, Callable[[Any, argparse.Namespace, Any], int]] = {
    "inbox": _inbox,
    "show": _show,
    "annotate": _annotate,
    "respond": _respond,
    "validate": _validate,
    "retrain": _retrain,
    "evaluate": _evaluate,
    "deploy": _deploy,
    "rollback": _rollback,
    "models": _models,
    "decisions": _decisions,
}
