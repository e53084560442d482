"""Every route of the console, with every role and with nobody signed in,
over real HTTP: each route must declare who may use it (``bot.console.web``),
and must answer as it declares.

The routes come from the app itself (``app.routes``), so a new route is
walked as soon as it exists, and one that declares nothing fails here. Path
parameters name things that do not exist: an allowed request then gets as
far as looking them up (a 404, or a form's own refusal), never a 401, a 403
or the login page.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute
from starlette.routing import BaseRoute, Mount

from bot.console import ConsoleServer, ConsoleSettings, create_app
from bot.console.auth import AREA_ROLES, ROLES
from bot.console.web import PUBLIC, SIGNED_IN, declared_access
from bot.queue import AgentQueue
from tests.integration.test_console_http import WebClient

PASSWORD = "role-password"
MISSING = "999999"  # no item, job, link, dial request or model has this id or name
ANONYMOUS = "anonymous"


@dataclass
class Routes:
    url: str
    routes: list[BaseRoute]
    clients: dict[str, WebClient]
    tokens: dict[str, str]


@pytest.fixture(scope="module")
def walked(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Routes]:
    url = f"sqlite:///{tmp_path_factory.mktemp('routes') / 'queue.sqlite3'}"
    with AgentQueue(url) as queue:
        for role in ROLES:
            queue.add_agent(role, PASSWORD, role, ["general"])
        queue.add_agent("walker", PASSWORD, "agent", ["general"])  # for the public login form
    settings = ConsoleSettings(database_url=url, port=0)
    app = create_app(settings)
    routes = list(app.routes)
    app.state.console.queue.close()
    with ConsoleServer(settings) as server:
        clients = {ANONYMOUS: WebClient(server.url)}
        tokens = {ANONYMOUS: ""}
        for role in ROLES:
            client = clients[role] = WebClient(server.url)
            assert client.log_in(role, PASSWORD).status == 303
            tokens[role] = _csrf_token(client)
        yield Routes(server.url, routes, clients, tokens)


def _csrf_token(client: WebClient) -> str:
    home = client.get(client.get("/").location)
    match = re.search(r'<meta name="csrf-token" content="([^"]+)"', home.body)
    assert match, home.body
    return match.group(1)


def _path(route: APIRoute) -> str:
    return re.sub(r"\{[^}]+\}", MISSING, route.path)


def _allowed(access: str, who: str) -> bool:
    if access == PUBLIC:
        return True
    if who == ANONYMOUS:
        return False
    return access == SIGNED_IN or who in AREA_ROLES[access]


@dataclass
class Answer:
    status: int
    location: str
    body: str


def _request(client: WebClient, method: str, path: str, form: dict[str, str]) -> Answer:
    with client.open(path, form if method == "POST" else None) as response:
        if response.headers.get("content-type", "").startswith("text/event-stream"):
            body = ""  # a live stream: the answer is enough
        else:
            body = response.read().decode()
        return Answer(response.status, response.headers.get("location", ""), body)


def _walk(walked: Routes, route: APIRoute, method: str, who: str) -> Answer:
    client = walked.clients[who]
    if route.path == "/login" and method == "POST":
        # The public login form, as a browser posts it: its own token, an account.
        client = WebClient(walked.url)
        token = re.search(r'name="csrf_token" value="([^"]*)"', client.get("/login").body)
        assert token
        form = {"name": "walker", "password": PASSWORD, "csrf_token": token.group(1)}
        return _request(client, method, "/login", form)
    form = {"csrf_token": walked.tokens[who]} if who != ANONYMOUS else {}
    return _request(client, method, _path(route), form)


def _check(access: str, who: str, answer: Answer, what: str) -> None:
    to_login = answer.status in (302, 303, 307) and answer.location.startswith("/login")
    if _allowed(access, who):
        assert answer.status not in (401, 403) and not to_login, f"{what}: refused {answer}"
        assert answer.status < 500, f"{what}: {answer}"
    elif who == ANONYMOUS:
        assert to_login or answer.status == 401, f"{what}: not sent to log in: {answer}"
    else:
        assert answer.status == 403, f"{what}: not refused: {answer}"
        assert "role cannot" in answer.body, f"{what}: refused, but not for the role: {answer}"


def test_every_route_declares_who_may_use_it(walked: Routes) -> None:
    undeclared = [
        f"{getattr(route, 'path', route)} {sorted(declared_access(route))}"
        for route in walked.routes
        if len(declared_access(route)) != 1
    ]
    assert not undeclared, f"routes that declare no access, or more than one: {undeclared}"
    for route in walked.routes:
        (access,) = declared_access(route)
        assert access in (PUBLIC, SIGNED_IN, *AREA_ROLES), f"{route}: unknown access {access}"
        assert isinstance(route, APIRoute | Mount)


def test_every_route_answers_every_role_as_it_declares(walked: Routes) -> None:
    walks = 0
    logout: list[tuple[APIRoute, str]] = []
    for route in walked.routes:
        (access,) = declared_access(route) or {"undeclared"}
        if isinstance(route, Mount):
            for who in walked.clients:
                answer = _request(walked.clients[who], "GET", f"{route.path}/console.css", {})
                assert answer.status == 200, f"{route.path} for {who}: {answer}"
            continue
        assert isinstance(route, APIRoute) and access != "undeclared", route
        for method in sorted(route.methods - {"HEAD"}):
            for who in walked.clients:
                if route.path == "/logout" and who != ANONYMOUS:
                    logout.append((route, who))  # last: it ends the session
                    continue
                answer = _walk(walked, route, method, who)
                _check(access, who, answer, f"{method} {route.path} as {who}")
                walks += 1
    # Logging out is allowed to everyone signed in: it ends their session.
    for route, who in logout:
        (access,) = declared_access(route)
        assert access == SIGNED_IN
        client = walked.clients[who]
        assert client.get("/").location != "/login"
        answer = _request(client, "POST", "/logout", {"csrf_token": walked.tokens[who]})
        assert (answer.status, answer.location) == (303, "/login"), who
        assert client.get("/").location == "/login", who
        walks += 1
    assert walks > 5 * 30  # every role on every route


def test_a_route_without_a_declaration_is_caught() -> None:
    """The check itself: an app with one route that declares nothing."""
    app = FastAPI()

    @app.get("/forgotten")
    def forgotten() -> dict[str, Any]:
        return {}

    forgotten_route = next(r for r in app.routes if getattr(r, "path", "") == "/forgotten")
    assert declared_access(forgotten_route) == frozenset()


def test_supervisors_read_the_training_pages_but_only_trainers_and_admins_change_models(
    walked: Routes,
) -> None:
    by_path = {route.path: route for route in walked.routes if isinstance(route, APIRoute)}
    for path in ("/training/retrain", "/training/cross-validate", "/training/rollback",
                 "/training/models/{name}/evaluate", "/training/models/{name}/deploy"):  # fmt: skip
        assert declared_access(by_path[path]) == {"deploy"}, path
    for path in ("/training", "/training/models", "/training/models/{name}"):
        assert declared_access(by_path[path]) == {"training"}, path
    supervisor = WebClient(walked.url)  # a session of its own: the walk logs out
    assert supervisor.log_in("supervisor", PASSWORD).status == 303
    form = {"csrf_token": _csrf_token(supervisor)}
    refused = _request(supervisor, "POST", "/training/retrain", form)
    assert refused.status == 403
    assert (
        "The supervisor role cannot retrain, evaluate, deploy or roll back models." in refused.body
    )
