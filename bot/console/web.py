"""What every console route shares: the console's parts, the signed-in
session, the CSRF check, redirects and page rendering."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.templating import Jinja2Templates

from bot.console.auth import (
    CSRF_FIELD,
    SESSION_COOKIE,
    ConsoleError,
    ConsoleSession,
    SessionStore,
    require_area,
    require_csrf,
)
from bot.console.live import QueueChangeFeed, TurnReader
from bot.console.views import SETTABLE_STATES, STATE_LABELS, notice_for
from bot.queue import AgentQueue

TEMPLATES_DIR = Path(__file__).resolve().parent / "templates"
STATIC_DIR = Path(__file__).resolve().parent / "static"


@dataclass(frozen=True)
class ConsoleParts:
    """The services one console app uses, built by ``create_app``."""

    queue: AgentQueue
    sessions: SessionStore
    turn_reader: TurnReader
    feed: QueueChangeFeed
    templates: Jinja2Templates
    service_level_seconds: float
    transcript_poll_seconds: float
    secure_cookies: bool
    # The browsers' ICE servers for agents' audio (agent_voice settings), as
    # RTCPeerConnection takes them; empty: host candidates only.
    ice_servers: tuple[dict[str, str], ...] = ()


def parts_of(request: Request) -> ConsoleParts:
    parts: ConsoleParts = request.app.state.console
    return parts


def current_session(request: Request) -> ConsoleSession:
    """The signed-in session, or ``not_signed_in`` (unknown or expired cookie)."""
    session = parts_of(request).sessions.find(request.cookies.get(SESSION_COOKIE))
    if session is None:
        raise ConsoleError("not_signed_in", 303, "Please log in.")
    return session


SignedIn = Annotated[ConsoleSession, Depends(current_session)]


async def posted_session(request: Request, session: SignedIn) -> ConsoleSession:
    """The session of a POST whose form carries the session's CSRF token."""
    form = await request.form()
    token = form.get(CSRF_FIELD)
    require_csrf(session.csrf_token, token if isinstance(token, str) else None)
    return session


PostedBySignedIn = Annotated[ConsoleSession, Depends(posted_session)]


def _area_dependencies(area: str) -> tuple[Any, Any]:
    """Dependencies for someone who may open ``area``: signed in, and the same
    on a POST with a valid CSRF token."""

    def signed_in(session: SignedIn) -> ConsoleSession:
        require_area(session, area)
        return session

    def posted(session: PostedBySignedIn) -> ConsoleSession:
        require_area(session, area)
        return session

    return (
        Annotated[ConsoleSession, Depends(signed_in)],
        Annotated[ConsoleSession, Depends(posted)],
    )


# A signed-in person who may use the queue; the same, on a POST with a valid CSRF token.
QueueUser, PostedByQueueUser = _area_dependencies("queue")
# The same for the trainer pages.
Trainer, PostedByTrainer = _area_dependencies("training")
# The same for the supervisors' pages (figures and reports).
Supervisor, PostedBySupervisor = _area_dependencies("dashboard")


def redirect(path: str, notice: str | None = None) -> RedirectResponse:
    """A 303 to a console path, with an optional notice code for the next page."""
    target = f"{path}?{urlencode({'notice': notice})}" if notice else path
    return RedirectResponse(target, status_code=303)


def safe_local_path(path: str | None, fallback: str) -> str:
    """``path`` if it is a path on this site, else ``fallback`` (no open redirects)."""
    if not path or not path.startswith("/") or path.startswith("//") or "\\" in path:
        return fallback
    return path


def home_path(session: ConsoleSession) -> str:
    if session.may_open("queue"):
        return "/queue"
    return "/training"


def render(
    request: Request,
    template: str,
    context: dict[str, Any] | None = None,
    session: ConsoleSession | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    """A page, with what the layout needs: the session, its CSRF token, the
    agent's state and the notice named in the URL."""
    parts = parts_of(request)
    agent_state = None
    if session is not None and session.may_open("queue"):
        agent = parts.queue.agent(int(session.agent_id))
        agent_state = agent.state if agent else None
    state_choices = list(SETTABLE_STATES)
    if agent_state and agent_state not in dict(state_choices):
        state_choices.insert(0, (agent_state, STATE_LABELS.get(agent_state, agent_state)))
    page: dict[str, Any] = {
        "session": session,
        "csrf_token": session.csrf_token if session else "",
        "agent_state": agent_state,
        "state_choices": state_choices,
        "notice": notice_for(request.query_params.get("notice")),
        "area": "",
    }
    page.update(context or {})
    return parts.templates.TemplateResponse(request, template, page, status_code=status_code)
