"""The agents' console over real HTTP: uvicorn on 127.0.0.1 with a fresh queue
database (a SQLite file, and a schema on the real PostgreSQL server), driven
with the standard library's HTTP client (redirects not followed, cookies kept
like a browser's)."""

from __future__ import annotations

import http.cookiejar
import json
import re
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from bot.console import ConsoleServer, ConsoleSettings
from bot.console.auth import SessionStore, console_sessions
from bot.events import BotTurn, CallStarted
from bot.queue import AgentQueue, QueueItem
from bot.queue.accounts import AgentAccounts
from bot.store import CallStore
from tests.queue_databases import BACKENDS, QueueDatabase, queue_database
from tests.web_client import KeepRedirects, Reply

PASSWORDS = {"ann": "ann-secret", "bob": "bob-secret", "sue": "sue-secret", "tom": "tom-secret"}
HANDOFF = {
    "intents": [{"name": "order_status", "confidence": 0.41}],
    "details": {"order_id": "12345", "email": "pat@example.org"},
    "transcript": [{"t_ms": 1200, "speaker": "caller", "text": "where is my order"}],
}


class WebClient:
    """One browser's worth of cookies against the console."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.cookies = http.cookiejar.CookieJar()
        self._opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(self.cookies), KeepRedirects
        )

    def open(self, path: str, form: dict[str, str] | None = None) -> Any:
        data = urllib.parse.urlencode(form).encode() if form is not None else None
        try:
            return self._opener.open(self.base_url + path, data, timeout=10)
        except urllib.error.HTTPError as refused:
            return refused

    def get(self, path: str) -> Reply:
        with self.open(path) as response:
            return Reply(response.status, response.headers, response.read().decode())

    def post(self, path: str, form: dict[str, str]) -> Reply:
        with self.open(path, form) as response:
            return Reply(response.status, response.headers, response.read().decode())

    def cookie(self, name: str) -> http.cookiejar.Cookie | None:
        return next((cookie for cookie in self.cookies if cookie.name == name), None)

    def log_in(self, name: str, password: str | None = None) -> Reply:
        form_page = self.get("/login")
        token = _field(form_page.body, "csrf_token")
        return self.post(
            "/login",
            {"name": name, "password": password or PASSWORDS[name], "csrf_token": token},
        )

    def csrf_token(self) -> str:
        page = self.get("/queue")
        if page.status != 200:  # trainers have no queue page
            page = self.get("/training")
        match = re.search(r'<meta name="csrf-token" content="([^"]+)"', page.body)
        assert match, page.body
        return match.group(1)


def _field(html: str, name: str) -> str:
    match = re.search(rf'name="{name}" value="([^"]*)"', html)
    assert match, f"no {name} field in {html}"
    return match.group(1)


@dataclass
class Console:
    url: str
    database_url: str
    queue: AgentQueue

    def client(self) -> WebClient:
        return WebClient(self.url)

    def signed_in(self, name: str) -> WebClient:
        client = self.client()
        assert client.log_in(name).status == 303
        return client

    def waiting_call(self, call_id: str = "call-1") -> QueueItem:
        return self.queue.enqueue(
            call_id,
            "call",
            "explicit_request",
            0,
            "general",
            "+15550100",
            HANDOFF,
            "Wants a person",
        )


@pytest.fixture(params=BACKENDS)
def console(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Console]:
    with queue_database(request.param, tmp_path) as database:
        yield from _serve_console(database)


def _serve_console(database: QueueDatabase) -> Iterator[Console]:
    database_url = database.url
    queue = database.queue()
    queue.add_agent("ann", PASSWORDS["ann"], "agent", ["general"])
    queue.add_agent("bob", PASSWORDS["bob"], "agent", ["general"])
    queue.add_agent("sue", PASSWORDS["sue"], "supervisor", ["general"])
    queue.add_agent("tom", PASSWORDS["tom"], "trainer", [])
    settings = ConsoleSettings(
        database_url=database_url,
        port=0,
        transcript_poll_seconds=0.1,
        queue=database.settings,
    )
    try:
        with ConsoleServer(settings) as server:
            yield Console(server.url, database_url, queue)
    finally:
        queue.close()


def test_a_wrong_password_or_unknown_name_is_refused(console: Console) -> None:
    client = console.client()
    for name, password in (("ann", "not-her-password"), ("nobody", "ann-secret")):
        reply = client.log_in(name, password)
        assert reply.status == 401
        assert "Wrong name or password." in reply.body
        assert client.cookie("console_session") is None
    assert client.get("/queue").location == "/login"


def test_login_sets_an_http_only_lax_session_cookie_and_logout_ends_it(console: Console) -> None:
    client = console.client()
    reply = client.log_in("ann")
    assert (reply.status, reply.location) == (303, "/queue")
    set_cookie = reply.headers.get("set-cookie", "")
    assert set_cookie.startswith("console_session=")
    assert "HttpOnly" in set_cookie and "SameSite=lax" in set_cookie
    assert "Max-Age=28800" in set_cookie
    assert client.get("/queue").status == 200
    stolen = client.cookie("console_session")
    assert stolen is not None

    assert client.post("/logout", {"csrf_token": client.csrf_token()}).location == "/login"
    assert client.get("/queue").location == "/login"
    replay = console.client()
    replay.cookies.set_cookie(stolen)
    assert replay.get("/queue").location == "/login"
    with console.queue.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(console_sessions)).scalar() == 0


def test_an_expired_session_is_sent_to_the_login_page(console: Console) -> None:
    client = console.signed_in("ann")
    assert client.get("/queue").status == 200
    # Move the session's end into the past, as if its 8 hours had gone by.
    with console.queue.engine.begin() as conn:
        past = datetime.now(timezone.utc) - timedelta(seconds=1)
        conn.execute(console_sessions.update().values(expires_at=past))
    for path in ("/queue", "/queue/snapshot", "/queue/events", "/dashboard"):
        reply = client.get(path)
        assert (reply.status, reply.location) == (303, "/login"), path


def test_sessions_end_after_session_minutes_on_the_clock(tmp_path: Path) -> None:
    now = [datetime(2024, 5, 1, 9, 0, tzinfo=timezone.utc)]
    queue = AgentQueue(f"sqlite:///{tmp_path / 'sessions.sqlite3'}")
    ann = queue.add_agent("ann", PASSWORDS["ann"])
    AgentAccounts(queue.engine).create_tables()
    engine = queue.engine
    sessions = SessionStore(engine, session_minutes=480, clock=lambda: now[0])
    sessions.create_table()
    cookie, started = sessions.start(str(ann.id), "ann", "agent")
    now[0] += timedelta(minutes=479)
    assert sessions.find(cookie) == started
    now[0] += timedelta(minutes=1)
    assert sessions.find(cookie) is None
    assert sessions.find("made-up-cookie") is None
    # The table keeps a hash of the cookie, never the cookie itself.
    with engine.connect() as conn:
        stored = conn.execute(sa.select(console_sessions.c.session_hash)).scalars().all()
    assert len(stored) == 1 and cookie not in stored[0]
    queue.close()


def test_posts_without_the_right_csrf_token_are_refused(console: Console) -> None:
    item = console.waiting_call()
    client = console.signed_in("ann")
    token = client.csrf_token()
    for form in ({}, {"csrf_token": ""}, {"csrf_token": token[:-1] + "x"}):
        assert client.post(f"/queue/{item.id}/take", form).status == 403
        assert client.post("/queue/take-next", form).status == 403
        assert client.post("/agent/state", {**form, "state": "offline"}).status == 403
        assert client.post("/logout", form).status == 403
    # Another person's token is no good either.
    assert (
        client.post(
            "/queue/take-next", {"csrf_token": console.signed_in("bob").csrf_token()}
        ).status
        == 403
    )
    unchanged = console.queue.item(item.id)
    assert unchanged is not None and unchanged.status == "waiting"
    assert client.get("/queue").status == 200  # still signed in

    taken = client.post(f"/queue/{item.id}/take", {"csrf_token": token})
    assert (taken.status, taken.location) == (303, f"/calls/{item.id}")
    claimed = console.queue.item(item.id)
    assert claimed is not None and claimed.status == "claimed"


def test_the_login_form_needs_its_own_token(console: Console) -> None:
    client = console.client()
    reply = client.post("/login", {"name": "ann", "password": PASSWORDS["ann"]})
    assert reply.status == 403
    assert client.cookie("console_session") is None


def test_roles_open_only_their_pages(console: Console) -> None:
    agent = console.signed_in("ann")
    refused = agent.get("/dashboard")
    assert refused.status == 403
    assert "agent role cannot open the dashboard" in refused.body
    assert agent.get("/training").status == 403
    assert agent.get("/queue").status == 200

    trainer = console.signed_in("tom")
    assert trainer.get("/").location == "/training"
    assert trainer.get("/training").status == 200
    assert trainer.get("/queue").status == 403
    assert trainer.get("/dashboard").status == 403

    supervisor = console.signed_in("sue")
    for path in ("/queue", "/dashboard", "/training"):
        assert supervisor.get(path).status == 200, path


def test_an_agent_cannot_open_another_agents_call(console: Console) -> None:
    item = console.waiting_call()
    ann = console.signed_in("ann")
    assert ann.post(f"/queue/{item.id}/take", {"csrf_token": ann.csrf_token()}).status == 303
    assert ann.get(f"/calls/{item.id}").status == 200
    bob = console.signed_in("bob")
    assert bob.get(f"/calls/{item.id}").status == 403
    said = bob.post(f"/calls/{item.id}/say", {"csrf_token": bob.csrf_token(), "text": "hi"})
    assert said.status == 403
    assert console.queue.pending_messages("call-1") == []
    assert console.signed_in("sue").get(f"/calls/{item.id}").status == 200


def test_an_agent_talks_resolves_or_returns_only_their_own_calls(console: Console) -> None:
    first, second = console.waiting_call("call-1"), console.waiting_call("call-2")
    ann = console.signed_in("ann")
    token = ann.csrf_token()
    assert ann.post("/queue/take-next", {"csrf_token": token}).location == f"/calls/{first.id}"
    assert ann.post("/queue/take-next", {"csrf_token": token}).location == f"/calls/{second.id}"
    assert (
        ann.post("/queue/take-next", {"csrf_token": token}).location == "/queue?notice=queue_empty"
    )

    said = ann.post(f"/calls/{first.id}/say", {"csrf_token": token, "text": "  "})
    assert said.location == f"/calls/{first.id}?notice=empty_message"
    said = ann.post(f"/calls/{first.id}/say", {"csrf_token": token, "text": "One moment please."})
    assert said.location == f"/calls/{first.id}?notice=sent"
    assert [m.text for m in console.queue.pending_messages("call-1")] == ["One moment please."]
    page = ann.get(said.location)
    assert "Sent: the bot will say it to the caller." in page.body
    assert "One moment please." in page.body

    refused = ann.post(f"/calls/{first.id}/resolve", {"csrf_token": token, "disposition": "won"})
    assert refused.location == f"/calls/{first.id}?notice=bad_disposition"
    form = {"csrf_token": token, "disposition": "no_answer", "notes": " line dropped "}
    assert ann.post(f"/calls/{first.id}/resolve", form).location == "/queue?notice=resolved"
    resolved = console.queue.item(first.id)
    assert resolved is not None
    assert (resolved.status, resolved.disposition, resolved.notes) == (
        "resolved",
        "no_answer",
        "line dropped",
    )
    # Finished calls take no more actions.
    again = ann.post(f"/calls/{first.id}/return", {"csrf_token": token})
    assert again.location == f"/calls/{first.id}?notice=not_yours"
    assert "Say to the caller" not in ann.get(f"/calls/{first.id}").body

    returned = ann.post(f"/calls/{second.id}/return", {"csrf_token": token})
    assert returned.location == "/queue?notice=returned"
    back = console.queue.item(second.id)
    assert back is not None and back.status == "returned"
    agent = console.queue.verify_password("ann", PASSWORDS["ann"])
    assert agent is not None and agent.state == "available"


def test_the_supervisor_dashboard_shows_todays_numbers(console: Console) -> None:
    queue = console.queue
    ann = queue.verify_password("ann", PASSWORDS["ann"])
    assert ann is not None
    handled = console.waiting_call("call-1")
    assert queue.claim(handled.id, ann.id) is not None
    queue.resolve(handled.id, ann.id, "resolved", "refund sent")
    console.waiting_call("call-2")
    queue.abandon("call-2")
    console.waiting_call("call-3")

    page = console.signed_in("sue").get("/dashboard")
    assert page.status == 200
    shown = dict(re.findall(r'data-metric="(\w+)"><dt>[^<]*</dt><dd>([^<]*)</dd>', page.body))
    assert shown["queue_length"] == "1"
    assert shown["calls_handled"] == "1"
    assert shown["abandonment_rate"] == "50%"  # one of two offered calls hung up
    assert shown["service_level"] == "50%"  # the answered one, at once
    assert re.fullmatch(r"0:0\d", shown["average_handle"])
    assert re.fullmatch(r"0:0\d", shown["longest_wait"])
    bars = [
        int(count) for count in re.findall(r'<rect class="bar"[^>]*data-count="(\d+)"', page.body)
    ]
    assert sum(bars) == 3  # three calls queued today


def test_pages_load_nothing_from_outside(console: Console) -> None:
    item = console.waiting_call()
    sue = console.signed_in("sue")
    assert sue.post(f"/queue/{item.id}/take", {"csrf_token": sue.csrf_token()}).status == 303
    pages = {"/login": console.client()} | {
        path: sue for path in ("/queue", "/dashboard", "/training", f"/calls/{item.id}")
    }
    for path, client in pages.items():
        page = client.get(path)
        assert page.status == 200, path
        assert "default-src 'self'" in page.headers.get("content-security-policy", "")
        assert page.headers.get("cache-control") == "no-store"
        for url in re.findall(r'(?:src|href|action)="([^"]*)"', page.body):
            assert url.startswith(("/", "#")), f"{path} refers to {url}"
    for asset in ("/static/console.css", "/static/queue.js", "/static/call.js"):
        assert sue.get(asset).status == 200


def _read_event(stream: Any, name: str) -> dict[str, str]:
    """Reads Server-Sent Events until one called ``name``; its fields."""
    fields: dict[str, str] = {}
    while True:
        line = stream.readline().decode()
        assert line, "the stream ended"
        line = line.rstrip("\n")
        if not line:
            if fields.get("event") == name:
                return fields
            fields = {}
        elif not line.startswith(":") and ":" in line:
            key, value = line.split(":", 1)
            fields[key] = value.strip()


def test_the_queue_stream_announces_each_change(console: Console) -> None:
    client = console.signed_in("ann")
    with client.open("/queue/events") as stream:
        assert stream.status == 200
        assert stream.headers.get("content-type").startswith("text/event-stream")
        console.waiting_call()
        event = _read_event(stream, "queue")
    assert event["data"].startswith('{"change":')
    snapshot = client.get("/queue/snapshot").body
    assert '"call_id":"call-1"' in snapshot and '"reason":"explicit request"' in snapshot


def test_the_call_stream_sends_the_callers_new_turns(console: Console) -> None:
    item = console.waiting_call()
    client = console.signed_in("ann")
    assert client.post(f"/queue/{item.id}/take", {"csrf_token": client.csrf_token()}).status == 303
    store = CallStore(console.database_url)
    try:
        with client.open(f"/calls/{item.id}/events?after=-1") as stream:
            store.listener(CallStarted("call-1", 0, "voice"))
            store.listener(
                BotTurn("call-1", 9000, user="it never arrived", intent="inform",
                        bot=("An agent is with you now.",))
            )  # fmt: skip
            store.flush()
            event = _read_event(stream, "turn")
    finally:
        store.close()
    assert event["id"] == "0"
    assert '"caller":"it never arrived"' in event["data"]
    assert '"bot":["An agent is with you now."]' in event["data"]
    assert '"time":"0:09"' in event["data"]


def _listed(client: WebClient) -> list[tuple[str, int]]:
    snapshot = json.loads(client.get("/queue/snapshot").body)
    assert snapshot["age_seconds"] >= 0
    assert all(item["waited_seconds"] >= 0 for item in snapshot["items"])
    return [(item["call_id"], item["position"]) for item in snapshot["items"]]


def test_the_shared_queue_list_is_rebuilt_after_each_change(console: Console) -> None:
    ann, bob = console.signed_in("ann"), console.signed_in("bob")
    with ann.open("/queue/events") as stream:
        assert _listed(ann) == [] and _listed(bob) == []
        first = console.waiting_call("call-1")
        _read_event(stream, "queue")
        assert _listed(bob) == [("call-1", 1)]
        second = console.waiting_call("call-2")
        _read_event(stream, "queue")
        assert _listed(ann) == _listed(bob) == [("call-1", 1), ("call-2", 2)]
        token = bob.csrf_token()
        assert bob.post(f"/queue/{first.id}/take", {"csrf_token": token}).status == 303
        _read_event(stream, "queue")
        assert _listed(ann) == [("call-2", 1)]
        page = ann.get("/queue").body
    # The page lists the same, with the reader's own token in each Take form.
    assert re.findall(r'<tr data-item-id="(\d+)"', page) == [str(second.id)]
    assert f'name="csrf_token" value="{ann.csrf_token()}"' in page
