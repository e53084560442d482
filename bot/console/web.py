"""What every console route shares: the console's parts, who may use each
route, the signed-in session, the CSRF check, live streams, redirects and
page rendering.

Every route declares who may use it, in one way: a parameter typed with one
of the dependencies below (``QueueUser``, ``Supervisor``, ``Trainer``,
``PostedByDeployer``, ... or ``SignedIn`` for anyone signed in), or
``dependencies=[Public]`` for the few that need no login (the static files
are mounted as ``PublicStaticFiles``). ``declared_access`` reads the
declaration back; a test walks every route of the app with every role.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, TypeVar
from urllib.parse import urlencode

from fastapi import Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, StreamingResponse
from fastapi.routing import APIRoute
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.routing import BaseRoute, Mount

from bot.console.auth import (
    CSRF_FIELD,
    SESSION_COOKIE,
    ConsoleError,
    ConsoleSession,
    LoginDesk,
    Network,
    SessionStore,
    client_address,
    require_area,
    require_csrf,
)
from bot.console.live import SSE_HEADERS, QueueChangeFeed, TurnReader, while_allowed
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
    # Logins: the throttle and the audit log.
    logins: LoginDesk
    # The browsers' ICE servers for agents' audio (agent_voice settings), as
    # RTCPeerConnection takes them; empty: host candidates only.
    ice_servers: tuple[dict[str, str], ...] = ()
    # Proxies whose X-Forwarded-For names the client (none: the socket peer).
    trusted_proxies: tuple[Network, ...] = ()
    # How often an open live stream checks that its reader may still read it.
    stream_check_seconds: float = 1.0


def parts_of(request: Request) -> ConsoleParts:
    parts: ConsoleParts = request.app.state.console
    return parts


def client_of(request: Request) -> str:
    """The client's address, as the audit log records it."""
    peer = request.client.host if request.client else None
    forwarded = request.headers.getlist("x-forwarded-for")
    return client_address(peer, forwarded, parts_of(request).trusted_proxies)


# -- who may use a route

# Access levels besides the areas of ``AREA_ROLES``.
PUBLIC = "public"
SIGNED_IN = "signed_in"
# The dependencies that declare a route's access, and what each declares.
_DECLARED: dict[Callable[..., Any], str] = {}
_Dependency = TypeVar("_Dependency", bound=Callable[..., Any])


def _declares(access: str) -> Callable[[_Dependency], _Dependency]:
    def register(dependency: _Dependency) -> _Dependency:
        _DECLARED[dependency] = access
        return dependency

    return register


@_declares(PUBLIC)
def _public() -> None:
    """Anyone may use the route: no login, no role."""


# ``dependencies=[Public]`` on a route that needs no login.
Public = Depends(_public)


class PublicStaticFiles(StaticFiles):
    """Static files, open to anyone (the login page needs its stylesheet)."""


@_declares(SIGNED_IN)
def current_session(request: Request) -> ConsoleSession:
    """The signed-in session, or ``not_signed_in`` (unknown or expired
    cookie, or an account that is gone or disabled)."""
    session = parts_of(request).sessions.find(request.cookies.get(SESSION_COOKIE))
    if session is None:
        raise ConsoleError("not_signed_in", 303, "Please log in.")
    return session


SignedIn = Annotated[ConsoleSession, Depends(current_session)]


@_declares(SIGNED_IN)
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

    @_declares(area)
    def signed_in(session: SignedIn) -> ConsoleSession:
        require_area(session, area)
        return session

    @_declares(area)
    def posted(session: PostedBySignedIn) -> ConsoleSession:
        require_area(session, area)
        return session

    return (
        Annotated[ConsoleSession, Depends(signed_in)],
        Annotated[ConsoleSession, Depends(posted)],
    )


# A signed-in person who may use the queue; the same, on a POST with a valid CSRF token.
QueueUser, PostedByQueueUser = _area_dependencies("queue")
# The same for the trainer pages (supervisors may read them).
Trainer, PostedByTrainer = _area_dependencies("training")
# The same for retraining, evaluating, deploying and rolling back models.
Deployer, PostedByDeployer = _area_dependencies("deploy")
# The same for the supervisors' pages (figures and reports).
Supervisor, PostedBySupervisor = _area_dependencies("dashboard")


def declared_access(route: BaseRoute) -> frozenset[str]:
    """Who a route says may use it: ``public``, ``signed_in`` or an area of
    ``AREA_ROLES``; empty when it declares nothing (more than one: muddled)."""
    if isinstance(route, Mount):
        return frozenset({PUBLIC}) if isinstance(route.app, PublicStaticFiles) else frozenset()
    if not isinstance(route, APIRoute):
        return frozenset()
    calls = (dependency.call for dependency in route.dependant.dependencies)
    return frozenset(_DECLARED[call] for call in calls if call is not None and call in _DECLARED)


# -- live streams


def live_stream(
    request: Request,
    body: AsyncIterator[str],
    area: str,
    still_readable: Callable[[ConsoleSession], object] | None = None,
) -> StreamingResponse:
    """A Server-Sent Events response that ends, with an ``end`` event, within
    ``stream_check_seconds`` of its reader losing the right to it: logout,
    an expired session, a disabled account, a role that may not open
    ``area``, or ``still_readable`` (asked with the session as it is now)
    raising a ``ConsoleError``."""
    parts = parts_of(request)
    cookie = request.cookies.get(SESSION_COOKIE)

    def allowed() -> bool:
        session = parts.sessions.find(cookie)
        if session is None or not session.may_open(area):
            return False
        if still_readable is not None:
            try:
                still_readable(session)
            except ConsoleError:
                return False
        return True

    guarded = while_allowed(body, allowed, parts.stream_check_seconds)
    return StreamingResponse(guarded, media_type="text/event-stream", headers=SSE_HEADERS)


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
        # Model actions (retrain, evaluate, deploy, roll back) are shown only
        # to those who may use them.
        "may_deploy": session is not None and session.may_open("deploy"),
        "state_choices": state_choices,
        "notice": notice_for(request.query_params.get("notice")),
        "area": "",
    }
    page.update(context or {})
    return parts.templates.TemplateResponse(request, template, page, status_code=status_code)
