"""The console's operations routes: ``/metrics`` (the queue's figures, read
from its database at scrape time), ``/healthz`` and ``/readyz``.

All three are public: monitoring systems and process managers call them
without a login, and they show counts only, never a caller's details.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder
from sqlalchemy.engine import Engine

from bot.console.web import Public, parts_of
from bot.ops.health import Check, database_check, run_checks
from bot.ops.queue_metrics import QueueCollector, deployed_model

router = APIRouter()

_setup_lock = threading.Lock()


@dataclass(frozen=True)
class _ConsoleOperations:
    registry: CollectorRegistry
    checks: dict[str, Check]


def _operations(request: Request) -> _ConsoleOperations:
    """The app's registry and checks, made on first use."""
    state = request.app.state
    with _setup_lock:
        found: _ConsoleOperations | None = getattr(state, "operations", None)
        if found is None:
            found = _build(request)
            state.operations = found
    return found


def _build(request: Request) -> _ConsoleOperations:
    queue_engine = parts_of(request).queue.engine
    workflow = getattr(request.app.state, "training", None)
    calls_engine: Engine = workflow.engine if workflow is not None else queue_engine

    def model_name(engine: Engine) -> str | None:
        name = deployed_model(engine)
        if name or workflow is None:
            return name
        # Nothing deployed yet: production is the model the bot picks itself.
        from bot.model_store import ModelError, resolve_model

        project = workflow.settings
        try:
            path = resolve_model(project.project_dir, project.models_dir, project.dialogue.model)
        except ModelError:
            return None
        return path.name.removesuffix(".tar.gz")

    registry = CollectorRegistry(auto_describe=True)
    registry.register(QueueCollector(queue_engine, calls_engine, model_name))
    checks = {"queue_database": database_check(queue_engine)}
    if str(calls_engine.url) != str(queue_engine.url):
        checks["calls_database"] = database_check(calls_engine)
    return _ConsoleOperations(registry, checks)


@router.get("/metrics", include_in_schema=False, dependencies=[Public])
def metrics(request: Request) -> Response:
    encode, content_type = choose_encoder(request.headers.get("accept", ""))
    return Response(encode(_operations(request).registry), media_type=content_type)


@router.get("/healthz", include_in_schema=False, dependencies=[Public])
def healthz() -> JSONResponse:
    return JSONResponse({"alive": True})


@router.get("/readyz", include_in_schema=False, dependencies=[Public])
def readyz(request: Request) -> JSONResponse:
    report = run_checks(_operations(request).checks)
    return JSONResponse(report.to_dict(), status_code=200 if report.ready else 503)
