"""The trainer pages: the review inbox, decisions, the audit trail, job progress.

Every route needs the ``training`` area (trainers, supervisors, admins). The
work is ``TrainingWorkflow``'s. Routes are plain ``def`` (FastAPI runs them on
its thread pool) because the workflow writes files and queries the database;
long work (``rasa data validate``, retraining, evaluating) runs as a
background job whose page polls it.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from bot.console.auth import ConsoleError, ConsoleSession
from bot.console.training_views import (
    DECISION_CHOICES,
    ENTITY_ROWS,
    REASON_CHOICES,
    decision_row,
    inbox_filter,
    inbox_row,
    job_row,
    notice_url,
    training_notice,
    turn_row,
    validation_view,
)
from bot.console.views import Notice
from bot.console.web import PostedByTrainer, Trainer, render
from bot.model_store import ModelError
from bot.training import data_files
from bot.training.data_files import TrainingDataError
from bot.training.inbox import FALLBACK_INTENTS, InboxItem
from bot.training.service import TrainingWorkflow, WorkflowError, validate_job

router = APIRouter()

NOT_SET_UP = (
    "Training is not set up for this console: start it with `voicebot console` "
    "from the Rasa project to review calls, retrain and deploy here."
)
# The inbox lists this many items at most; filters narrow it down.
MAX_INBOX_ROWS = 200
DECISIONS_SHOWN = 200
# Errors a trainer's decision can run into; shown on the page, not as a 500.
DECISION_ERRORS = (WorkflowError, TrainingDataError, ModelError)


def workflow_of(request: Request) -> TrainingWorkflow:
    """The console's training workflow; a 404 when it has none."""
    workflow: TrainingWorkflow | None = getattr(request.app.state, "training", None)
    if workflow is None:
        raise ConsoleError("training_off", 404, NOT_SET_UP)
    return workflow


def see_other(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303)


def page_notice(request: Request, error: str = "") -> Notice | None:
    """An error from this request, else the notice named in the URL."""
    if error:
        return Notice("error", error)
    return training_notice(request.query_params)


def _intent_choices(workflow: TrainingWorkflow) -> tuple[list[str], str]:
    """The domain's intents, and the error when the domain cannot be read."""
    try:
        return workflow.intents(), ""
    except TrainingDataError as exc:
        return [], str(exc)


def _stubs(workflow: TrainingWorkflow) -> list[str]:
    try:
        return data_files.unfilled_stubs(workflow.project_dir)
    except TrainingDataError:
        return []  # the intents' error already says why the domain is unreadable


def _inbox_page(
    request: Request,
    session: ConsoleSession,
    workflow: TrainingWorkflow,
    chosen: dict[str, Any],
    error: str = "",
    status_code: int = 200,
) -> HTMLResponse:
    intents, intents_error = _intent_choices(workflow)
    error = error or intents_error
    items: list[InboxItem] = []
    try:
        wanted = inbox_filter(
            chosen["reason"],
            chosen["intent"],
            chosen["since"],
            chosen["until"],
            chosen["q"],
            chosen["routine"],
        )
    except ValueError as exc:
        error = error or f"Filter not applied: {exc}."
    else:
        items = workflow.items(wanted)
    latest = workflow.jobs.recent(limit=1, kind="validate")
    context = {
        "area": "training",
        "tab": "inbox",
        "notice": page_notice(request, error),
        "chosen": chosen,
        "reasons": REASON_CHOICES,
        "filter_intents": sorted({*intents, *FALLBACK_INTENTS}),
        "intents": intents,
        "items": [inbox_row(item) for item in items[:MAX_INBOX_ROWS]],
        "total": len(items),
        "decisions": DECISION_CHOICES,
        "stubs": _stubs(workflow),
        "validation": validation_view(latest[0] if latest else None),
    }
    return render(request, "training.html", context, session, status_code=status_code)


def _no_filter() -> dict[str, Any]:
    return {"reason": "", "intent": "", "since": "", "until": "", "q": "", "routine": False}


@router.get("/training", response_class=HTMLResponse)
def inbox_page(
    request: Request,
    session: Trainer,
    reason: str = "",
    intent: str = "",
    since: str = "",
    until: str = "",
    q: str = "",
    routine: str = "",
) -> Response:
    workflow: TrainingWorkflow | None = getattr(request.app.state, "training", None)
    if workflow is None:
        context = {"area": "training", "message": NOT_SET_UP}
        return render(request, "training_off.html", context, session)
    chosen = {
        "reason": reason,
        "intent": intent,
        "since": since,
        "until": until,
        "q": q,
        "routine": bool(routine),
    }
    return _inbox_page(request, session, workflow, chosen)


def _item_page(
    request: Request,
    session: ConsoleSession,
    workflow: TrainingWorkflow,
    item_id: str,
    error: str = "",
    status_code: int = 200,
) -> HTMLResponse:
    try:
        item = workflow.item(item_id)
    except WorkflowError as exc:
        raise ConsoleError("no_such_item", 404, str(exc)) from None
    intents, intents_error = _intent_choices(workflow)
    context = {
        "area": "training",
        "tab": "inbox",
        "notice": page_notice(request, error or intents_error),
        "item": inbox_row(item),
        "variants": list(item.variants),
        "turns": [turn_row(turn) for turn in item.turns],
        "intents": intents,
        "decisions": DECISION_CHOICES,
        "entity_rows": range(1, ENTITY_ROWS + 1),
    }
    return render(request, "training_item.html", context, session, status_code=status_code)


@router.get("/training/items/{item_id}", response_class=HTMLResponse)
def item_page(request: Request, item_id: str, session: Trainer) -> Response:
    return _item_page(request, session, workflow_of(request), item_id)


def _decision_intent(decision: str, intent: str, new_intent: str) -> str:
    if decision == "new_intent":
        return new_intent.strip()
    if decision in ("intent", "entities"):
        return intent.strip()
    return ""


def _entity_pairs(
    entities: list[str], words: list[str], values: list[str] | None = None
) -> list[tuple[str, str, str]]:
    """(entity, words, meaning) from the entity form's rows; empty rows are skipped."""
    pairs = []
    meanings = list(values or []) + [""] * max(0, len(entities) - len(values or []))
    for name, span, meaning in zip(entities, words, meanings, strict=False):
        name, span = name.strip(), span.strip()
        if not name and not span:
            continue
        if not name or not span:
            raise WorkflowError("give each corrected entity both its name and its words")
        pairs.append((name, span, meaning.strip()))
    return pairs


def start_validation(workflow: TrainingWorkflow, user: str) -> None:
    """Checks the changed data with ``rasa data validate`` in the background."""
    workflow.jobs.run_in_background("validate", user, validate_job(workflow))


@router.post("/training/decide")
def decide(
    request: Request,
    session: PostedByTrainer,
    decision: Annotated[str, Form()] = "",
    item_ids: Annotated[list[str] | None, Form()] = None,
    intent: Annotated[str, Form()] = "",
    new_intent: Annotated[str, Form()] = "",
    response: Annotated[str, Form()] = "",
    entity: Annotated[list[str] | None, Form()] = None,
    words: Annotated[list[str] | None, Form()] = None,
    value: Annotated[list[str] | None, Form()] = None,
    back_to: Annotated[str, Form()] = "",
) -> Response:
    workflow = workflow_of(request)
    chosen_ids = [item_id for item_id in item_ids or [] if item_id]
    try:
        if not decision:
            raise WorkflowError("choose what to do with the selected items")
        if not chosen_ids:
            raise WorkflowError("select at least one item first")
        pairs = (
            _entity_pairs(entity or [], words or [], value or []) if decision == "entities" else []
        )
        chosen_intent = _decision_intent(decision, intent, new_intent)
        if decision == "intent" and not chosen_intent:
            raise WorkflowError("choose the intent to assign")
        if decision == "new_intent" and not chosen_intent:
            raise WorkflowError("name the new intent")
        if decision == "entities" and not pairs:
            raise WorkflowError("give at least one entity and the words it covers")
        records = workflow.annotate(
            chosen_ids,
            decision,
            session.agent_name,
            intent=chosen_intent,
            response_text=response.strip() if decision == "new_intent" else "",
            entities=pairs,
        )
    except DECISION_ERRORS as exc:
        message = f"Nothing was saved: {exc}."
        if back_to == "item" and len(chosen_ids) == 1:
            return _item_page(request, session, workflow, chosen_ids[0], message, 400)
        return _inbox_page(request, session, workflow, _no_filter(), message, 400)
    if any(record.files for record in records):
        start_validation(workflow, session.agent_name)
    if decision == "discard":
        return see_other(notice_url("/training", "discarded", items=len(records)))
    written = sum(len(record.examples) for record in records)
    duplicates = sum(len(record.duplicates) for record in records)
    url = notice_url(
        "/training", "decided", items=len(records), written=written, duplicates=duplicates
    )
    return see_other(url)


@router.post("/training/respond")
def write_response(
    request: Request,
    session: PostedByTrainer,
    intent: Annotated[str, Form()] = "",
    text: Annotated[str, Form()] = "",
) -> Response:
    workflow = workflow_of(request)
    try:
        if not text.strip():
            raise WorkflowError("write what the bot should answer first")
        workflow.set_response(intent.strip(), text)
    except DECISION_ERRORS as exc:
        message = f"The answer was not written: {exc}."
        return _inbox_page(request, session, workflow, _no_filter(), message, 400)
    start_validation(workflow, session.agent_name)
    return see_other(notice_url("/training", "response_set", intent=intent.strip()))


@router.get("/training/decisions", response_class=HTMLResponse)
def decisions_page(request: Request, session: Trainer) -> Response:
    workflow = workflow_of(request)
    rows = [decision_row(record) for record in workflow.decisions(DECISIONS_SHOWN)]
    context = {"area": "training", "tab": "decisions", "decisions": rows}
    return render(request, "training_decisions.html", context, session)


# Declared before the page: "/training/jobs/7.json" must not reach it.
@router.get("/training/jobs/{job_id}.json")
def job_json(request: Request, job_id: int, _session: Trainer) -> JSONResponse:
    job = workflow_of(request).jobs.get(job_id)
    if job is None:
        return JSONResponse({"error": f"there is no job {job_id}"}, status_code=404)
    return JSONResponse(job.to_dict())


@router.get("/training/jobs/{job_id}", response_class=HTMLResponse)
def job_page(request: Request, job_id: int, session: Trainer) -> Response:
    job = workflow_of(request).jobs.get(job_id)
    if job is None:
        raise ConsoleError("no_such_job", 404, f"There is no training job {job_id}.")
    context = {
        "area": "training",
        "tab": "inbox" if job.kind == "validate" else "models",
        "job": job_row(job),
        "validation": validation_view(job) if job.kind == "validate" and not job.running else None,
    }
    return render(request, "training_job.html", context, session)
