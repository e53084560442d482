"""A caller on hold follows the queue's change feed: an agent's claim, message
and resolve reach the hold line at once, the queue is not read while nothing
changes, and a database that goes down never drops the caller.

Real queues on a SQLite file and on the PostgreSQL server; the outages are a
relay to the PostgreSQL server that the test cuts. The dialogue's responses
are the domain's own texts (no model needed).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
import sqlalchemy as sa
import yaml

from bot import hold
from bot.call import Call, CallEngine
from bot.hold import HoldLine, HoldStep
from bot.queue import Agent, AgentQueue
from bot.settings import Settings
from tests.queue_databases import BACKENDS, QueueDatabase, postgres_schema, queue_database

PROJECT_DIR = Path(__file__).resolve().parents[2]
ANNOUNCE_SECONDS = 30.0
# Generous: the hold line must answer long before this, but the test must
# not fail on a machine busy with other work.
CHANGE_TIMEOUT_SECONDS = 20.0

_T = TypeVar("_T")


class DomainResponses:
    """The responses ``Dialogue.response_text`` gives, read from domain.yml."""

    def __init__(self, domain_file: Path) -> None:
        self._responses = yaml.safe_load(domain_file.read_text(encoding="utf-8"))["responses"]

    def response_text(self, name: Any) -> str:
        return str(self._responses[getattr(name, "value", name)][0]["text"])


RESPONSES = DomainResponses(PROJECT_DIR / "domain.yml")


class Relay:
    """A TCP relay to the PostgreSQL server: ``cut()`` is the database going
    down (open connections break, new ones are refused at once), ``restore()``
    its coming back."""

    def __init__(self, host: str, port: int) -> None:
        self._target = (host, port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._up = True
        self._open: list[socket.socket] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, name="pg-relay", daemon=True).start()

    def cut(self) -> None:
        with self._lock:
            self._up = False
            open_now, self._open = self._open, []
        for sock in open_now:
            _close(sock)

    def restore(self) -> None:
        with self._lock:
            self._up = True

    def close(self) -> None:
        self.cut()
        _close(self._listener)

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                up = self._up
            if not up:
                _close(client)
                continue
            server = socket.create_connection(self._target)
            with self._lock:
                self._open += [client, server]
            for source, sink in ((client, server), (server, client)):
                threading.Thread(target=_pump, args=(source, sink), daemon=True).start()


def _pump(source: socket.socket, sink: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while data := source.recv(65536):
            sink.sendall(data)
    _close(source)
    _close(sink)


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()


@pytest.fixture(params=BACKENDS)
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[QueueDatabase]:
    with queue_database(request.param, tmp_path) as database:
        yield database


@pytest.fixture
def queue(database: QueueDatabase) -> Iterator[AgentQueue]:
    with database.queue() as queue:
        yield queue


@dataclass(frozen=True)
class Outage:
    """A PostgreSQL queue database: the bot reaches it through a relay the
    test cuts, the agents directly."""

    bot: QueueDatabase
    agents: QueueDatabase
    relay: Relay


@pytest.fixture
def outage() -> Iterator[Outage]:
    with postgres_schema() as database:
        url = sa.engine.make_url(database.url)
        relay = Relay(url.host or "127.0.0.1", url.port or 5432)
        through = url.set(host="127.0.0.1", port=relay.port).render_as_string(hide_password=False)
        bot = QueueDatabase(database.backend, through, database.settings)
        try:
            yield Outage(bot, database, relay)
        finally:
            relay.close()


@pytest.fixture
def settings() -> Settings:
    from bot.settings import load_settings

    return load_settings(PROJECT_DIR, env={})


def engine_with(settings: Settings, queue: AgentQueue) -> CallEngine:
    """A call engine whose only part in use is the queue (nothing started)."""
    engine = CallEngine(settings)
    engine.queue = queue
    return engine


def waiting_call(queue: AgentQueue) -> Call:
    call = Call(call_id=uuid.uuid4().hex[:16], dialogue=RESPONSES)  # type: ignore[arg-type]
    call.queue_item_id = queue.enqueue(call.call_id, "call", "explicit_request").id
    return call


def an_agent(queue: AgentQueue) -> Agent:
    return queue.add_agent(f"ann{uuid.uuid4().hex[:6]}", "pw", skills=["general"])


def hold_line(engine: CallEngine, call: Call, caller_number: str | None = None) -> HoldLine:
    return HoldLine(engine, call, ANNOUNCE_SECONDS, 240.0, caller_number)


class StatementCount:
    """Statements the queue's own engine sends to the database."""

    def __init__(self, queue: AgentQueue) -> None:
        self.count = 0
        sa.event.listen(queue.engine, "before_cursor_execute", self._counted)

    def _counted(self, *_args: object) -> None:
        self.count += 1


async def in_thread(fn: Callable[..., _T], *args: object) -> _T:
    """A queue call by an agent, as another program would make it."""
    return await asyncio.get_running_loop().run_in_executor(None, fn, *args)


async def seen_at_once(line: HoldLine, agent_action: Callable[[], Awaitable[object]]) -> float:
    """Seconds from the agent's action until the hold line's waiting for
    changes returns True."""
    waiting = asyncio.ensure_future(line.wait_for_change(CHANGE_TIMEOUT_SECONDS))
    await asyncio.sleep(0.2)
    assert not waiting.done()  # nothing has happened yet: it waits
    started = time.monotonic()
    await agent_action()
    assert await waiting is True
    return time.monotonic() - started


def test_a_waiting_caller_hears_the_agent_take_the_call_type_and_finish(
    queue: AgentQueue, settings: Settings
) -> None:
    engine = engine_with(settings, queue)
    call = waiting_call(queue)
    line = hold_line(engine, call)
    ann = an_agent(queue)
    item_id = call.queue_item_id
    assert item_id is not None

    async def wait() -> list[HoldStep]:
        steps = [await line.next_step(0)]
        assert await line.wait_for_change(0.3) is False
        for action in (
            lambda: in_thread(queue.claim, item_id, ann.id),
            lambda: in_thread(queue.send_to_caller, call.call_id, ann.id, "Hi, I'm Ann."),
        ):
            assert await seen_at_once(line, action) < CHANGE_TIMEOUT_SECONDS
            steps.append(await line.next_step(1000))
            # What a step said may have more behind it: the next step reads too.
            assert await line.wait_for_change(CHANGE_TIMEOUT_SECONDS) is True
            steps.append(await line.next_step(1000))
        assert await seen_at_once(line, lambda: in_thread(queue.resolve, item_id, ann.id, "ok"))
        steps.append(await line.next_step(1000))
        return steps

    try:
        steps = asyncio.run(wait())
    finally:
        line.close()
    assert steps == [
        HoldStep(),
        HoldStep(say=(RESPONSES.response_text("utter_agent_joined"),)),
        HoldStep(),
        HoldStep(say=("Hi, I'm Ann.",)),
        HoldStep(),
        HoldStep(say=(RESPONSES.response_text("utter_agent_finished"),), end_reason="resolved"),
    ]
    assert queue.pending_messages(call.call_id) == []
    assert [line.text for line in call.transcript] == ["Hi, I'm Ann."]


def test_while_nothing_changes_the_steps_do_not_read_the_queue(
    queue: AgentQueue, settings: Settings
) -> None:
    engine = engine_with(settings, queue)
    call = waiting_call(queue)
    # A caller with a number: the first step considers a call back (short wait: none).
    line = hold_line(engine, call, caller_number="+15550100")
    statements = StatementCount(queue)

    async def wait() -> tuple[list[HoldStep], int, bool, HoldStep]:
        steps = [await line.next_step(0)]
        before = statements.count
        for now_ms in range(1000, 11000, 1000):
            steps.append(await line.next_step(now_ms))
            assert await line.wait_for_change(0.1) is False
        quiet_statements = statements.count - before
        # Another caller's news is not this caller's.
        await in_thread(waiting_call, queue)
        others = await line.wait_for_change(1.0)
        announced = await line.next_step(int(ANNOUNCE_SECONDS * 1000))
        return steps, quiet_statements, others, announced

    try:
        steps, quiet_statements, others, announced = asyncio.run(wait())
    finally:
        line.close()
    assert steps == [HoldStep()] * 11
    assert quiet_statements == 0
    assert others is False
    # The announcement falls due: that step reads the queue for the place in line.
    assert len(announced.say) == 1 and "number 1 in the queue" in announced.say[0]


def test_steps_alone_still_see_the_agent(queue: AgentQueue, settings: Settings) -> None:
    """A text call steps without waiting for changes: each step looks at the
    feed's news and reads the queue when the call's item changed."""
    engine = engine_with(settings, queue)
    call = waiting_call(queue)
    line = hold_line(engine, call)
    ann = an_agent(queue)

    async def wait() -> list[HoldStep]:
        assert await line.next_step(0) == HoldStep()
        assert call.queue_item_id is not None
        await in_thread(queue.claim, call.queue_item_id, ann.id)
        await in_thread(queue.send_to_caller, call.call_id, ann.id, "One moment.")
        said: list[HoldStep] = []
        deadline = time.monotonic() + CHANGE_TIMEOUT_SECONDS
        while len(said) < 2 and time.monotonic() < deadline:
            step = await line.next_step(1000)
            if step.say:
                said.append(step)
            else:
                await asyncio.sleep(0.05)
        said.append(await line.next_step(1000))
        return said

    try:
        said = asyncio.run(wait())
    finally:
        line.close()
    assert said == [
        HoldStep(say=("One moment.",)),
        HoldStep(say=(RESPONSES.response_text("utter_agent_joined"),)),
        HoldStep(),
    ]


def test_closing_a_waiting_line_ends_its_wait(queue: AgentQueue, settings: Settings) -> None:
    engine = engine_with(settings, queue)
    line = hold_line(engine, waiting_call(queue))

    async def wait() -> bool:
        await line.next_step(0)
        waiting = asyncio.ensure_future(line.wait_for_change(CHANGE_TIMEOUT_SECONDS))
        await asyncio.sleep(0.2)
        line.close()
        line.close()
        return await asyncio.wait_for(waiting, CHANGE_TIMEOUT_SECONDS)

    assert asyncio.run(wait()) is False


def test_a_database_that_goes_down_keeps_the_caller_waiting(
    outage: Outage, settings: Settings
) -> None:
    """The database goes down during the wait: the caller keeps hearing the
    hold music (empty steps), and the line follows the changes again once it
    is back."""
    with outage.bot.queue() as queue, outage.agents.queue() as agents:
        engine = engine_with(settings, queue)
        call = waiting_call(queue)
        line = hold_line(engine, call)
        ann = an_agent(agents)

        async def wait() -> tuple[list[HoldStep], list[HoldStep]]:
            down = [await line.next_step(0)]
            outage.relay.cut()
            # The last two steps are due to announce the place in line, and cannot.
            for now_ms in (1000, 2000, int(ANNOUNCE_SECONDS * 1000), 31000):
                down.append(await line.next_step(now_ms))
                await line.wait_for_change(0.2)
            outage.relay.restore()
            back = [await line.next_step(32000), await line.next_step(33000)]
            assert call.queue_item_id is not None
            await in_thread(agents.claim, call.queue_item_id, ann.id)
            assert await line.wait_for_change(CHANGE_TIMEOUT_SECONDS) is True
            back.append(await line.next_step(34000))
            return down, back

        try:
            down, back = asyncio.run(wait())
        finally:
            line.close()
    assert down == [HoldStep()] * 5
    assert "number 1 in the queue" in back[0].say[0]
    assert back[1:] == [HoldStep(), HoldStep(say=(RESPONSES.response_text("utter_agent_joined"),))]


def test_without_a_change_feed_every_step_reads_the_queue(
    outage: Outage,
    settings: Settings,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The database is down when the wait begins: the line cannot follow the
    changes, says so once, and reads the queue on every step instead; it
    follows the changes again once the database is back."""
    monkeypatch.setattr(hold, "FEED_RETRY_SECONDS", 0.0)  # retried at every step
    caplog.set_level(logging.INFO, logger="bot.hold")
    with outage.bot.queue() as queue, outage.agents.queue() as agents:
        engine = engine_with(settings, queue)
        call = waiting_call(queue)
        line = hold_line(engine, call)
        ann = an_agent(agents)
        statements = StatementCount(queue)
        outage.relay.cut()

        async def wait() -> list[HoldStep]:
            steps = [await line.next_step(now_ms) for now_ms in (0, 1000, 2000)]
            assert await line.wait_for_change(0.2) is False
            outage.relay.restore()
            before = statements.count
            steps.append(await line.next_step(3000))
            assert statements.count > before
            assert call.queue_item_id is not None
            await in_thread(agents.claim, call.queue_item_id, ann.id)
            assert await line.wait_for_change(CHANGE_TIMEOUT_SECONDS) is True
            steps.append(await line.next_step(4000))
            return steps

        try:
            steps = asyncio.run(wait())
        finally:
            line.close()
    joined = HoldStep(say=(RESPONSES.response_text("utter_agent_joined"),))
    assert steps == [HoldStep()] * 4 + [joined]
    said = [r.getMessage() for r in caplog.records if r.name == "bot.hold"]
    feed_news = [m for m in said if "change feed" in m]
    assert len(feed_news) == 1 and "reading the queue on every step" in feed_news[0]
    assert sum("the queue cannot be read" in m for m in said) == 3
    assert f"call {call.call_id}: following the queue's changes again" in said
