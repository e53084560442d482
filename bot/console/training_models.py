"""The trainer pages for models: the kept models and deployments, retraining,
a model's evaluation against production, deploying it and rolling back.

A model page shows cached evaluations only (scoring a model takes tens of
seconds); its "Evaluate" button starts a background job. Model names come
from URLs and forms, so each is checked by ``bot.model_store`` before use.
Supervisors read these pages; retraining, evaluating, deploying and rolling
back are for trainers and admins (``PostedByDeployer``).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, Response

from bot.console.auth import ConsoleError, ConsoleSession
from bot.console.training import page_notice, see_other, workflow_of
from bot.console.training_views import (
    comparison_view,
    deployment_row,
    job_row,
    model_row,
    notice_url,
    when_text,
)
from bot.console.web import PostedByDeployer, Trainer, render
from bot.model_store import ModelError, ModelInfo, model_info
from bot.training import deploy
from bot.training.deploy import DeployError
from bot.training.evaluation import (
    CrossValidation,
    Evaluation,
    EvaluationError,
    cached_evaluation,
    compare,
    confusion_svg,
    test_set_hash,
)
from bot.training.jobs import JobError
from bot.training.service import (
    TrainingWorkflow,
    cross_validation_job,
    evaluate_job,
    retrain_job,
)

router = APIRouter()

RECENT_JOBS = 10
DEPLOYMENTS_SHOWN = 50
# What deploying and rolling back can run into; shown on the page.
DEPLOY_ERRORS = (DeployError, ModelError, EvaluationError)


def _model(workflow: TrainingWorkflow, name: str) -> ModelInfo:
    """A kept model by name; a 404 for a bad or unknown name."""
    try:
        return model_info(workflow.models_dir, name)
    except ModelError as exc:
        raise ConsoleError("no_such_model", 404, str(exc)) from None


def _models_page(
    request: Request,
    session: ConsoleSession,
    workflow: TrainingWorkflow,
    error: str = "",
    status_code: int = 200,
) -> HTMLResponse:
    try:
        production = workflow.production_name()
        rows = [model_row(row) for row in workflow.models()]
    except ModelError as exc:
        production, rows = "", []
        error = error or str(exc)
    history = workflow.deployments(DEPLOYMENTS_SHOWN)
    try:
        previous = deploy.rollback_target(workflow.engine)
    except DeployError:
        previous = ""
    kept = {row["name"] for row in rows}
    context = {
        "area": "training",
        "tab": "models",
        "notice": page_notice(request, error),
        "models": rows,
        "production": production,
        # Models that served production before, and can serve it again.
        "earlier": {d.model_name for d in history if d.model_name in kept} - {production},
        "previous": previous if previous in kept and previous != production else "",
        "deployments": [deployment_row(d) for d in history],
        "jobs": [job_row(job) for job in workflow.jobs.recent(RECENT_JOBS)],
        "cross_validation": _latest_cross_validation(workflow),
    }
    return render(request, "training_models.html", context, session, status_code=status_code)


@router.get("/training/models", response_class=HTMLResponse)
def models_page(request: Request, session: Trainer) -> Response:
    return _models_page(request, session, workflow_of(request))


@router.post("/training/retrain")
def retrain(request: Request, session: PostedByDeployer) -> Response:
    workflow = workflow_of(request)
    user = session.agent_name
    try:
        job = workflow.jobs.run_in_background("retrain", user, retrain_job(workflow, user))
    except JobError:
        return see_other(notice_url("/training/models", "retrain_running"))
    return see_other(f"/training/jobs/{job.id}")


def _latest_cross_validation(workflow: TrainingWorkflow) -> dict[str, Any] | None:
    """The newest cross-validation job, with its scores once it has them."""
    found = workflow.jobs.recent(1, kind="cross_validate")
    if not found:
        return None
    job = found[0]
    row: dict[str, Any] = {"job": job_row(job), "scores": None}
    if job.state == "succeeded" and job.result:
        result = CrossValidation.from_dict(job.result)
        row["scores"] = {
            "folds": result.folds,
            "accuracy": f"{result.accuracy:.3f}",
            "macro_f1": f"{result.macro_f1:.3f}",
            "minutes": f"{result.seconds / 60:.1f}",
            "weakest": sorted(result.per_intent.items(), key=lambda item: item[1].f1)[:5],
        }
    return row


@router.post("/training/cross-validate")
def start_cross_validation(request: Request, session: PostedByDeployer) -> Response:
    workflow = workflow_of(request)
    job = workflow.jobs.run_in_background(
        "cross_validate", session.agent_name, cross_validation_job(workflow)
    )
    return see_other(f"/training/jobs/{job.id}")


@router.post("/training/rollback")
def rollback(
    request: Request, session: PostedByDeployer, to: Annotated[str, Form()] = ""
) -> Response:
    workflow = workflow_of(request)
    try:
        target = _model(workflow, to).name if to else ""
        done = workflow.rollback(session.agent_name, target)
    except (ConsoleError, *DEPLOY_ERRORS) as exc:
        return _models_page(request, session, workflow, f"No rollback: {exc}", 409)
    return see_other(notice_url("/training/models", "rolled_back", model=done.model_name))


def _evaluations(
    workflow: TrainingWorkflow, name: str
) -> tuple[str, Evaluation | None, Evaluation | None]:
    """Production's name, and the cached scores of ``name`` and production on
    the current test set."""
    production = workflow.production_name()
    test_hash = test_set_hash(workflow.settings.test_set)
    return (
        production,
        cached_evaluation(workflow.models_dir, name, test_hash),
        cached_evaluation(workflow.models_dir, production, test_hash),
    )


def _model_page(
    request: Request,
    session: ConsoleSession,
    workflow: TrainingWorkflow,
    info: ModelInfo,
    error: str = "",
    status_code: int = 200,
) -> HTMLResponse:
    production, candidate, current = "", None, None
    comparison: dict[str, Any] | None = None
    stubs = info.meta.get("unfilled_stubs")
    try:
        production, candidate, current = _evaluations(workflow, info.name)
        if candidate and current and info.name != production:
            found = compare(
                candidate,
                current,
                workflow.settings.training.max_f1_drop,
                workflow.settings.training.max_intent_f1_drop,
            )
            shown_stubs = [str(s) for s in stubs] if isinstance(stubs, list) else []
            comparison = comparison_view(found, candidate, current, shown_stubs)
    except (ModelError, EvaluationError) as exc:
        error = error or str(exc)
    context = {
        "area": "training",
        "tab": "models",
        "notice": page_notice(request, error),
        "model": {
            "name": info.name,
            "fingerprint": info.fingerprint,
            "trained_at": when_text(info.trained_at),
            "trained_by": str(info.meta.get("trained_by") or "—"),
        },
        "production": production,
        "is_production": info.name == production,
        "evaluated": candidate is not None and current is not None,
        "scores": candidate,
        "comparison": comparison,
        "may_override": session.role == "admin",
    }
    return render(request, "training_model.html", context, session, status_code=status_code)


@router.get("/training/models/{name}", response_class=HTMLResponse)
def model_page(request: Request, name: str, session: Trainer) -> Response:
    workflow = workflow_of(request)
    return _model_page(request, session, workflow, _model(workflow, name))


@router.get("/training/models/{name}/confusion.svg")
def confusion(request: Request, name: str, _session: Trainer) -> Response:
    workflow = workflow_of(request)
    info = _model(workflow, name)
    try:
        test_hash = test_set_hash(workflow.settings.test_set)
    except EvaluationError as exc:
        raise ConsoleError("not_evaluated", 404, str(exc)) from None
    evaluation = cached_evaluation(workflow.models_dir, info.name, test_hash)
    if evaluation is None:
        raise ConsoleError(
            "not_evaluated", 404, f"{info.name} has not been scored on the current test set."
        )
    title = f"{info.name} on the test set"
    return Response(confusion_svg(evaluation, title), media_type="image/svg+xml")


@router.post("/training/models/{name}/evaluate")
def evaluate(request: Request, name: str, session: PostedByDeployer) -> Response:
    workflow = workflow_of(request)
    info = _model(workflow, name)
    job = workflow.jobs.run_in_background(
        "evaluate", session.agent_name, evaluate_job(workflow, info.name)
    )
    return see_other(f"/training/jobs/{job.id}")


@router.post("/training/models/{name}/deploy")
def deploy_model(
    request: Request,
    name: str,
    session: PostedByDeployer,
    override: Annotated[str, Form()] = "",
) -> Response:
    workflow = workflow_of(request)
    info = _model(workflow, name)
    try:
        _production, candidate, current = _evaluations(workflow, info.name)
        if candidate is None or current is None:
            # Deploying scores both models; here that would hold the request
            # for a minute. The page's "Evaluate" button does it as a job.
            raise DeployError(f"{info.name} is not evaluated yet: evaluate it first")
        workflow.deploy(info.name, session.agent_name, session.role, override=bool(override))
    except DEPLOY_ERRORS as exc:
        return _model_page(request, session, workflow, info, f"Not deployed: {exc}", 409)
    return see_other(notice_url("/training/models", "deployed", model=info.name))
