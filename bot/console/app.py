"""The agents' web console: one FastAPI app for agents, supervisors and trainers.

Agents watch the queue live, take calls, read the bot's handoff and the live
transcript, talk to the caller through the bot and resolve the call.
Supervisors also see today's figures; trainers get their own page. Everything
(HTML, CSS, JS) is served by the app itself: no external resources.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Annotated

from fastapi import FastAPI, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bot.console import calls, dialling, reports, training, training_models, voice
from bot.console.auth import (
    LOGIN_CSRF_COOKIE,
    SESSION_COOKIE,
    ConsoleError,
    LoginDesk,
    LoginOutcome,
    LoginPolicy,
    SessionStore,
    is_loopback_host,
    new_token,
    parse_networks,
    tokens_match,
)
from bot.console.live import QueueChangeFeed, TurnReader
from bot.console.views import SETTABLE_STATES
from bot.console.web import (
    STATIC_DIR,
    TEMPLATES_DIR,
    ConsoleParts,
    PostedByQueueUser,
    PostedBySignedIn,
    Public,
    PublicStaticFiles,
    SignedIn,
    client_of,
    home_path,
    parts_of,
    redirect,
    render,
    safe_local_path,
)
from bot.handoff_keeper import start_handoff_replay
from bot.queue import AgentQueue, QueueSettings, QueueWatcher
from bot.queue.accounts import AgentAccounts
from bot.queue.schema import WRITE_OPTION
from bot.reporting import CallReports
from bot.settings import Settings
from bot.store import create_db_engine
from bot.training.service import TrainingWorkflow

LOGIN_TOKEN_SECONDS = 3600

# The browser may load nothing from anywhere but this console.
SECURITY_HEADERS = [
    (
        b"content-security-policy",
        b"default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        b"connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    ),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
    (b"x-frame-options", b"DENY"),
]


@dataclass(frozen=True)
class ConsoleSettings:
    """The console's settings. ``database_url`` is the queue's database (agents,
    items, and the console's sessions); ``calls_database_url`` the call store's
    (for live transcripts), "" when it is the same database."""

    database_url: str
    calls_database_url: str = ""
    session_minutes: float = 480.0
    host: str = "127.0.0.1"
    port: int = 8080
    # Calls answered within this many seconds count towards the service level.
    service_level_seconds: float = 20.0
    # Send cookies over HTTPS only (a TLS proxy fronts the console). None: on
    # unless the console listens on loopback only (127.0.0.0/8, ::1, localhost).
    secure_cookies: bool | None = None
    # Proxies whose X-Forwarded-For names the client (addresses or networks,
    # comma-separated); empty: the socket peer is the client.
    trusted_proxies: str = ""
    # Login throttle: this many failed logins for one name within
    # login_lockout_minutes lock that name out for login_lockout_minutes.
    login_failures_allowed: int = 5
    login_lockout_minutes: float = 15.0
    # How often an open live stream checks that its reader may still read it.
    stream_check_seconds: float = 1.0
    # How often an open call page's stream looks for new turns.
    transcript_poll_seconds: float = 0.25
    queue: QueueSettings = QueueSettings()
    # The bot's settings, for the trainer pages (the Rasa project, its models
    # and the call store); None: this console has no training pages.
    project: Settings | None = None


class _SecurityHeaders:
    """Adds the security headers, and ``no-store`` to everything but static files."""

    def __init__(self, app: ASGIApp) -> None:
        self._app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        is_static = scope["path"].startswith("/static/")

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers.extend(SECURITY_HEADERS)
                if not is_static and not any(name == b"cache-control" for name, _ in headers):
                    headers.append((b"cache-control", b"no-store"))
                message["headers"] = headers
            await send(message)

        await self._app(scope, receive, send_with_headers)


def secure_cookies(settings: ConsoleSettings) -> bool:
    """``secure_cookies`` as set; by default on unless the console listens on
    loopback only (then a browser reaches it over plain HTTP on this machine)."""
    if settings.secure_cookies is not None:
        return settings.secure_cookies
    return not is_loopback_host(settings.host)


def _set_session_cookie(response: Response, value: str, max_age_seconds: int, secure: bool) -> None:
    response.set_cookie(
        SESSION_COOKIE,
        value,
        max_age=max_age_seconds,
        path="/",
        httponly=True,
        samesite="lax",
        secure=secure,
    )


def _browser_ice_servers(project: Settings | None) -> tuple[dict[str, str], ...]:
    """``agent_voice.ice_servers`` for the page (a TURN server relays the
    browser's side as well as the bot's)."""
    if project is None:
        return ()
    options = project.agent_voice
    servers = []
    for url in (u.strip() for u in options.ice_servers.split(",")):
        if not url:
            continue
        server = {"urls": url}
        if url.startswith("turn"):
            server.update(username=options.turn_username, credential=options.turn_password)
        servers.append(server)
    return tuple(servers)


def create_app(settings: ConsoleSettings) -> FastAPI:
    """The console app; opens the databases and creates the session table now."""
    queue = AgentQueue(settings.database_url, settings.queue)
    writes = queue.engine.execution_options(**{WRITE_OPTION: True})
    sessions = SessionStore(queue.engine, settings.session_minutes, write_engine=writes)
    sessions.create_table()
    accounts = AgentAccounts(queue.engine)
    accounts.create_tables()
    login_policy = LoginPolicy(settings.login_failures_allowed, settings.login_lockout_minutes)
    calls_engine = (
        create_db_engine(settings.calls_database_url)
        if settings.calls_database_url
        else queue.engine
    )
    # The training workflow gets an engine of its own: the queue's SQLite
    # engine runs its own BEGIN (IMMEDIATE only for claims), while the
    # workflow's occasional writes want SQLite's ordinary busy waiting.
    training_engine = (
        create_db_engine(settings.calls_database_url or settings.database_url)
        if settings.project
        else None
    )
    workflow = (
        TrainingWorkflow(settings.project, engine=training_engine) if settings.project else None
    )
    feed = QueueChangeFeed(lambda: QueueWatcher(settings.database_url, settings.queue))
    parts = ConsoleParts(
        queue=queue,
        sessions=sessions,
        turn_reader=TurnReader(calls_engine),
        feed=feed,
        templates=Jinja2Templates(directory=str(TEMPLATES_DIR)),
        service_level_seconds=settings.service_level_seconds,
        transcript_poll_seconds=settings.transcript_poll_seconds,
        secure_cookies=secure_cookies(settings),
        ice_servers=_browser_ice_servers(settings.project),
        logins=LoginDesk(accounts, login_policy),
        trusted_proxies=parse_networks(settings.trusted_proxies),
        stream_check_seconds=settings.stream_check_seconds,
    )

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await feed.start()
        if settings.project is not None:  # handoffs of calls that ended while the queue was away
            start_handoff_replay(settings.database_url, settings.project.var_dir, settings.queue)
        try:
            yield
        finally:
            await feed.stop()
            if workflow is not None:
                workflow.close()
            if training_engine is not None:
                training_engine.dispose()
            if calls_engine is not queue.engine:
                calls_engine.dispose()
            queue.close()

    app = FastAPI(
        title="Hotline console", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None
    )
    app.state.console = parts
    app.state.training = workflow
    app.state.reports = CallReports(calls_engine, queue.engine)
    app.add_middleware(_SecurityHeaders)
    app.mount("/static", PublicStaticFiles(directory=str(STATIC_DIR)), name="static")
    app.include_router(calls.router)
    app.include_router(voice.router)
    app.include_router(dialling.router)
    app.include_router(training.router)
    app.include_router(training_models.router)
    app.include_router(reports.router)
    from bot.console import ops  # /metrics, /healthz, /readyz: public, for monitoring

    app.include_router(ops.router)
    _add_account_routes(app)

    @app.exception_handler(ConsoleError)
    async def refused(request: Request, error: ConsoleError) -> Response:
        if error.code == "not_signed_in":
            response = RedirectResponse("/login", status_code=303)
            response.delete_cookie(SESSION_COOKIE, path="/")
            return response
        title = {403: "Not allowed", 404: "Not found"}.get(error.status, "Refused")
        return render(
            request,
            "error.html",
            {"title": title, "message": str(error), "error_code": error.code},
            status_code=error.status,
        )

    return app


def _add_account_routes(app: FastAPI) -> None:
    @app.get("/", include_in_schema=False)
    def home(session: SignedIn) -> RedirectResponse:
        return redirect(home_path(session))

    @app.get("/login", response_class=HTMLResponse, dependencies=[Public])
    def login_page(request: Request) -> Response:
        parts = parts_of(request)
        session = parts.sessions.find(request.cookies.get(SESSION_COOKIE))
        if session is not None:
            return redirect(home_path(session))
        return _login_form(request, parts, error="", name="", status_code=200)

    @app.post("/login", response_class=HTMLResponse, dependencies=[Public])
    def login(
        request: Request,
        name: Annotated[str, Form()] = "",
        password: Annotated[str, Form()] = "",
        csrf_token: Annotated[str, Form()] = "",
    ) -> Response:
        parts = parts_of(request)
        if not tokens_match(request.cookies.get(LOGIN_CSRF_COOKIE), csrf_token):
            raise ConsoleError("csrf_failed", 403, "The login form expired; please try again.")
        outcome = parts.logins.attempt(name, password, client_of(request))
        agent = outcome.agent
        if agent is None:
            return _refused_login(request, parts, outcome, name)
        parts.sessions.end(request.cookies.get(SESSION_COOKIE))  # no two sessions per browser
        session_id, session = parts.sessions.start(str(agent.id), agent.name, agent.role)
        response = redirect(home_path(session))
        _set_session_cookie(
            response, session_id, parts.sessions.lifetime_seconds, parts.secure_cookies
        )
        response.delete_cookie(LOGIN_CSRF_COOKIE, path="/login")
        return response

    @app.post("/logout")
    def logout(request: Request, session: PostedBySignedIn) -> RedirectResponse:
        parts = parts_of(request)
        # The session's open live streams end at their next check.
        parts.sessions.end(request.cookies.get(SESSION_COOKIE))
        parts.logins.logged_out(session, client_of(request))
        agent = parts.queue.agent(int(session.agent_id)) if session.may_open("queue") else None
        if agent is not None and agent.state in ("available", "wrap_up"):
            parts.queue.set_agent_state(agent.id, "offline")
        response = redirect("/login")
        response.delete_cookie(SESSION_COOKIE, path="/")
        return response

    @app.post("/agent/state")
    def set_state(
        request: Request,
        session: PostedByQueueUser,
        state: Annotated[str, Form()] = "",
        next_path: Annotated[str, Form(alias="next")] = "",
    ) -> RedirectResponse:
        if state not in dict(SETTABLE_STATES):
            raise ConsoleError("invalid", 400, f"Unknown state {state!r}.")
        parts_of(request).queue.set_agent_state(int(session.agent_id), state)
        return redirect(safe_local_path(next_path, "/queue"), "state_set")


def _refused_login(
    request: Request, parts: ConsoleParts, outcome: LoginOutcome, name: str
) -> Response:
    """The login form again, saying why (status: 400 no name or password,
    401 wrong, 403 disabled, 429 locked out, with Retry-After)."""
    lockout = parts.logins.policy.lockout_minutes
    if outcome.refusal == "missing":
        return _login_form(request, parts, "Enter your name and password.", name, 400)
    if outcome.refusal == "disabled":
        error = "This account is disabled: ask an admin to enable it."
        return _login_form(request, parts, error, name, 403)
    if outcome.refusal == "wrong":
        error = "Wrong name or password."
        if outcome.locked_until is not None:
            error += f" Too many failed logins: this name is locked for {lockout:g} minutes."
        return _login_form(request, parts, error, name, 401)
    seconds = 60.0
    if outcome.locked_until is not None:
        seconds = (outcome.locked_until - datetime.now(timezone.utc)).total_seconds()
    minutes = max(1, math.ceil(seconds / 60))
    error = (
        f"Too many failed logins for this name. Try again in {minutes} minute"
        f"{'' if minutes == 1 else 's'}, or ask an admin to unlock it."
    )
    response = _login_form(request, parts, error, name, 429)
    response.headers["retry-after"] = str(max(1, math.ceil(seconds)))
    return response


def _login_form(
    request: Request, parts: ConsoleParts, error: str, name: str, status_code: int
) -> Response:
    login_token = request.cookies.get(LOGIN_CSRF_COOKIE) or new_token()
    response = render(
        request,
        "login.html",
        {"login_token": login_token, "error": error, "name": name},
        status_code=status_code,
    )
    response.set_cookie(
        LOGIN_CSRF_COOKIE,
        login_token,
        max_age=LOGIN_TOKEN_SECONDS,
        path="/login",
        httponly=True,
        samesite="strict",
        secure=parts.secure_cookies,
    )
    return response
