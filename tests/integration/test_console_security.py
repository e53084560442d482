"""The console's defences over real HTTP: uvicorn on a real port, a fresh queue
database (a SQLite file, and a schema on the real PostgreSQL server).

Login throttling with its audit rows and the command line's unlock; the
Secure flag on cookies by listening address and by setting; live streams
(the queue, a call's transcript) cut off when their reader logs out, is
disabled or loses the role for them; an old scrypt hash replaced at login.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import os
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from bot.cli import build_parser
from bot.console import ConsoleServer, ConsoleSettings
from bot.console.auth import client_address, console_sessions, is_loopback_host, parse_networks
from bot.console.server import console_settings
from bot.queue import AgentQueue
from bot.queue.accounts import AgentAccounts, audit_log
from bot.queue.schema import agents
from bot.settings import Settings, load_settings
from tests.conftest import isolated_env
from tests.integration.test_console_http import WebClient
from tests.queue_databases import BACKENDS, QueueDatabase, queue_database

PASSWORD = "right-password"
HANDOFF = {"transcript": [{"t_ms": 1200, "speaker": "caller", "text": "a person please"}]}


@dataclass
class Console:
    url: str
    database: QueueDatabase
    queue: AgentQueue
    accounts: AgentAccounts
    settings: Settings

    def add(self, name: str, role: str = "agent") -> int:
        return self.queue.add_agent(name, PASSWORD, role, ["general"]).id

    def signed_in(self, name: str) -> WebClient:
        client = WebClient(self.url)
        reply = client.log_in(name, PASSWORD)
        assert reply.status == 303, reply.body
        return client

    def audit(self, name: str) -> list[tuple[str, str | None, str | None, str]]:
        with self.queue.engine.connect() as conn:
            rows = conn.execute(
                sa.select(audit_log.c.event, audit_log.c.address, audit_log.c.actor,
                          audit_log.c.detail)
                .where(audit_log.c.name == name)
                .order_by(audit_log.c.id)
            ).all()  # fmt: skip
        return [tuple(row) for row in rows]  # type: ignore[misc]

    def agent_command(self, *argv: str) -> int:
        """``voicebot agents ...`` through the command's own function."""
        args = build_parser().parse_args(["agents", *argv])
        return int(args.handler(self.settings, args))


@pytest.fixture(scope="module", params=BACKENDS)
def console(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, project_dir: Path
) -> Iterator[Console]:
    tmp = tmp_path_factory.mktemp(f"security-{request.param}")
    with queue_database(request.param, tmp) as database:
        env = {**os.environ, **isolated_env(tmp), "VOICEBOT_STORE_URL": database.url}
        settings = load_settings(project_dir, env=env)
        queue = database.queue()
        accounts = AgentAccounts(queue.engine)
        served = ConsoleSettings(
            database_url=database.url,
            port=0,
            transcript_poll_seconds=0.1,
            queue=database.settings,
        )
        try:
            with ConsoleServer(served) as server:
                yield Console(server.url, database, queue, accounts, settings)
        finally:
            queue.close()


# -- pure parts


def test_loopback_hosts() -> None:
    for host in ("127.0.0.1", "127.8.9.1", "::1", "[::1]", "localhost", "LOCALHOST"):
        assert is_loopback_host(host), host
    for host in ("0.0.0.0", "::", "192.168.1.20", "10.0.0.1", "console.example.org", ""):
        assert not is_loopback_host(host), host


def test_forwarded_addresses_are_believed_only_from_trusted_proxies() -> None:
    proxies = parse_networks("10.0.0.5, 192.168.0.0/24")
    forged = ["203.0.113.9, 198.51.100.7"]
    assert client_address("198.51.100.1", forged, ()) == "198.51.100.1"
    assert client_address("198.51.100.1", forged, proxies) == "198.51.100.1"
    assert client_address("10.0.0.5", forged, proxies) == "198.51.100.7"
    # Through two trusted proxies: the first hop from the right that is not one.
    assert client_address("10.0.0.5", ["203.0.113.9", "192.168.0.8"], proxies) == "203.0.113.9"
    assert client_address("10.0.0.5", ["not-an-address, 192.168.0.8"], proxies) == "192.168.0.8"
    assert client_address("10.0.0.5", [], proxies) == "10.0.0.5"
    assert client_address(None, forged, proxies) == "unknown"
    with pytest.raises(ValueError, match="'10.0.0.300'"):
        parse_networks("10.0.0.1, 10.0.0.300")


# -- login throttling


def test_five_failed_logins_lock_the_name_until_it_is_unlocked(console: Console) -> None:
    console.add("lou")
    console.add("lee")
    client = WebClient(console.url)
    for attempt in range(1, 6):
        reply = client.log_in("lou", f"guess-{attempt}")
        assert reply.status == 401, attempt
        assert "Wrong name or password." in reply.body
    assert "this name is locked for 15 minutes" in reply.body
    for password in ("guess-6", PASSWORD):
        locked = client.log_in("lou", password)
        assert locked.status == 429
        assert "Too many failed logins for this name. Try again in 15 minutes" in locked.body
        assert int(locked.headers["retry-after"]) > 14 * 60
        assert client.cookie("console_session") is None
    # Another name is not affected, nor is an unknown one refused differently.
    assert console.signed_in("lee").get("/queue").status == 200
    assert client.log_in("nobody-at-all", PASSWORD).status == 401

    rows = console.audit("lou")
    assert [event for event, *_ in rows] == ["login_failed"] * 5 + ["locked_out"]
    assert {address for _, address, _, _ in rows} == {"127.0.0.1"}
    assert rows[-1][3].startswith("5 failed logins within 15 minutes")
    unknown = console.audit("nobody-at-all")
    assert [(event, address) for event, address, *_ in unknown] == [("login_failed", "127.0.0.1")]

    assert console.agent_command("unlock", "lou") == 0
    assert client.log_in("lou", PASSWORD).status == 303
    assert client.get("/queue").status == 200
    event, address, actor, _ = console.audit("lou")[-2]
    assert (event, address) == ("unlocked", None) and actor and actor.startswith("cli:")
    assert console.audit("lou")[-1][:2] == ("login", "127.0.0.1")


# -- cookies


def _login_cookies(url: str) -> tuple[str, str]:
    """The Set-Cookie headers of the login form and of a successful login,
    sent by hand (a client keeps Secure cookies to HTTPS)."""
    opener = urllib.request.build_opener(_NoRedirects)
    with opener.open(url + "/login", timeout=10) as form:
        form_cookie = form.headers["set-cookie"]
        body = form.read().decode()
    token = body.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
    request = urllib.request.Request(
        url + "/login",
        data=f"name=kim&password={PASSWORD}&csrf_token={token}".encode(),
        headers={"Cookie": f"console_login_csrf={token}"},
    )
    try:
        opener.open(request, timeout=10)
    except urllib.error.HTTPError as answer:
        assert answer.status == 303, answer.read()
        return form_cookie, answer.headers["set-cookie"]
    raise AssertionError("the login was not answered with a redirect")


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *_args: Any, **_kwargs: Any) -> None:
        return None


def test_cookies_are_secure_unless_the_console_listens_on_loopback_or_is_told_not_to(
    tmp_path: Path, project_dir: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'queue.sqlite3'}"
    with AgentQueue(url) as queue:
        queue.add_agent("kim", PASSWORD)

    def served(env: dict[str, str], host: str) -> ConsoleServer:
        settings = load_settings(project_dir, env={**env, "VOICEBOT_STORE_URL": url})
        return ConsoleServer(dataclasses.replace(console_settings(settings, host, 0), project=None))

    cases = [
        ({}, "127.0.0.1", False),
        ({}, "0.0.0.0", True),
        ({"VOICEBOT_CONSOLE_SECURE_COOKIES": "false"}, "0.0.0.0", False),
        ({"VOICEBOT_CONSOLE_SECURE_COOKIES": "true"}, "127.0.0.1", True),
    ]
    for env, host, secure in cases:
        with served(env, host) as server:
            port = server.url.rsplit(":", 1)[1]
            for cookie in _login_cookies(f"http://127.0.0.1:{port}"):
                assert "HttpOnly" in cookie
                assert ("; Secure" in cookie) == secure, (env, host, cookie)


# -- live streams


def _next_event(stream: Any) -> dict[str, str]:
    """The next Server-Sent Event's fields (comments skipped); {} at the end."""
    fields: dict[str, str] = {}
    while True:
        line = stream.readline().decode()
        if not line:
            return fields
        line = line.rstrip("\n")
        if not line:
            if "event" in fields:
                return fields
            fields = {}
        elif not line.startswith(":") and ":" in line:
            key, value = line.split(":", 1)
            fields[key] = value.strip()


def _read_until(stream: Any, name: str) -> dict[str, str]:
    while True:
        event = _next_event(stream)
        assert event, f"the stream ended before a {name} event"
        if event["event"] == name:
            return event


def _assert_ends(stream: Any) -> None:
    """The stream says why it ends, then ends."""
    event = _read_until(stream, "end")
    assert event["data"] == '{"reason":"access_ended"}'
    assert stream.read() == b""


def test_a_role_change_cuts_off_the_streams_the_new_role_may_not_read(console: Console) -> None:
    ann_id = console.add("ann")
    console.add("sue", "supervisor")
    item = console.queue.enqueue("call-roles", "call", "explicit_request", 0, "general",
                                 "+15550100", HANDOFF, "Wants a person")  # fmt: skip
    assert console.queue.claim(item.id, ann_id) is not None
    sue = console.signed_in("sue")
    with sue.open("/queue/events") as queue_events, sue.open(f"/calls/{item.id}/events") as call:
        assert (queue_events.status, call.status) == (200, 200)
        # An agent reads only their own calls: the call's stream ends...
        console.accounts.set_role("sue", "agent", "cli:test")
        _assert_ends(call)
        # ...while an agent may still follow the queue.
        console.queue.enqueue("call-roles-2", "call", "explicit_request", 0, "general")
        assert _read_until(queue_events, "queue")["data"].startswith('{"change":')
        console.accounts.set_role("sue", "trainer", "cli:test")
        _assert_ends(queue_events)
    assert sue.get("/queue").status == 403  # the session lives on, with the new role
    assert sue.get("/").location == "/training"


def test_logout_an_expired_session_and_a_disabled_account_end_open_streams(
    console: Console,
) -> None:
    console.add("bea")
    console.add("dee")
    bea, dee = console.signed_in("bea"), console.signed_in("dee")
    with bea.open("/queue/events") as stream:
        assert stream.status == 200
        token = bea.csrf_token()
        assert bea.post("/logout", {"csrf_token": token}).location == "/login"
        _assert_ends(stream)
    bea = console.signed_in("bea")
    with bea.open("/queue/events") as stream:
        # The session's 8 hours run out.
        with console.queue.engine.begin() as conn:
            conn.execute(
                console_sessions.update()
                .where(console_sessions.c.agent_name == "bea")
                .values(expires_at=datetime.now(timezone.utc) - timedelta(seconds=1))
            )
        _assert_ends(stream)
    with dee.open("/queue/events") as stream:
        assert console.agent_command("disable", "dee") == 0
        _assert_ends(stream)
    assert dee.get("/queue").location == "/login"
    refused = WebClient(console.url).log_in("dee", PASSWORD)
    assert refused.status == 403 and "This account is disabled" in refused.body
    assert [event for event, *_ in console.audit("dee")][-2:] == ["disabled", "login_disabled"]
    assert [(event, address) for event, address, *_ in console.audit("bea")] == [
        ("login", "127.0.0.1"),
        ("logout", "127.0.0.1"),
        ("login", "127.0.0.1"),
    ]


# -- password hashes


def test_an_old_scrypt_hash_is_replaced_with_argon2id_at_login(console: Console) -> None:
    console.add("old")
    salt = os.urandom(16)
    key = hashlib.scrypt(PASSWORD.encode(), salt=salt, n=2**14, r=8, p=1, dklen=32)
    old_hash = "scrypt$16384$8$1$" + "$".join(base64.b64encode(v).decode() for v in (salt, key))
    with console.queue.engine.begin() as conn:
        conn.execute(agents.update().where(agents.c.name == "old").values(password_hash=old_hash))

    assert console.signed_in("old").get("/queue").status == 200
    with console.queue.engine.connect() as conn:
        stored = conn.execute(sa.select(agents.c.password_hash).where(agents.c.name == "old"))
        renewed = stored.scalar()
    assert renewed.startswith("$argon2id$")
    assert console.audit("old")[-1][::3] == (
        "login",
        "password rehashed: scrypt to current argon2id",
    )
    assert console.signed_in("old").get("/queue").status == 200
