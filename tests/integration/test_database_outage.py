"""A database or Redis that is down at start, or goes away during calls.

At start: one clear line naming the setting and the address, no traceback.
During calls (real PostgreSQL and Redis, reached through ``TcpProxy`` so the
test can cut the network path): the caller always gets an answer, every turn
reaches the call store in order, an escalation reaches the queue once the
database is back, and writes that cannot wait are kept in a spill file.
Several processes on one fresh SQLite file all finish their calls.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import multiprocessing
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from bot.action_server import ActionServer
from bot.call import Call, CallEngine, LineInfo, TurnResult
from bot.chat import TextCall
from bot.events import BotTurn, CallEnded, CallStarted, EndReason, TranscriptFinal
from bot.handoff_keeper import HUNG_UP_NOTE, replay_handoff_spills
from bot.handoff_keeper import SPILL_PREFIX as HANDOFF_SPILL_PREFIX
from bot.queue import AgentQueue
from bot.queue.schema import items
from bot.retry import Backoff
from bot.settings import Settings, load_settings
from bot.store import CallStore, calls, database_key, turns
from bot.store_writer import SPILL_PREFIX
from tests.conftest import isolated_env
from tests.queue_databases import QueueDatabase, postgres_schema

pytestmark = pytest.mark.slow

REDIS_URL = os.environ.get("VOICEBOT_TEST_REDIS_URL", "redis://127.0.0.1:6379/3")
ACTION_FAILURE = (
    "I'm sorry, I'm having trouble reaching our systems right now. "
    "Let me put you through to a colleague."
)
# Long enough for anything the tests wait for (they return as soon as it happens).
PATIENCE_SECONDS = 60.0


class TcpProxy:
    """A test double for the network path only: forwards each TCP connection
    on a local port to a real server (PostgreSQL, Redis). ``cut`` closes the
    port and every connection through it, as a server that went away would
    look to the bot (connections reset, new ones refused); ``restore`` opens
    the same port again."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self._target = (target_host, target_port)
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self._listener: socket.socket | None = None
        self.port = 0
        self.restore()

    def restore(self) -> None:
        if self._listener is not None:
            return
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self.port = listener.getsockname()[1]
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def url(self, url: str) -> str:
        """``url`` with its host and port replaced by the proxy's."""
        if url.startswith("redis://"):
            rest = url.removeprefix("redis://").split("/", 1)
            return f"redis://127.0.0.1:{self.port}/" + (rest[1] if len(rest) > 1 else "")
        parts = sa.engine.make_url(url).set(host="127.0.0.1", port=self.port)
        return parts.render_as_string(hide_password=False)

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self._target, timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                self._sockets.update((client, upstream))
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for end in (source, sink):
                with contextlib.suppress(OSError):
                    end.shutdown(socket.SHUT_RDWR)

    def cut(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)  # wakes the accepting thread
            listener.close()
        with self._lock:
            sockets, self._sockets = self._sockets, set()
        for end in sockets:
            with contextlib.suppress(OSError):
                end.shutdown(socket.SHUT_RDWR)
            end.close()

    def close(self) -> None:
        self.cut()


def closed_port() -> int:
    """A local port nothing listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def require(host: str, port: int, what: str) -> None:
    try:
        with socket.create_connection((host, port), timeout=2):
            return
    except OSError as exc:
        message = f"{what} at {host}:{port} is unreachable: {exc}"
    if os.environ.get("CI"):
        pytest.fail(message + " (CI is set: these tests must run)")
    pytest.skip(message)


# -- at start: one line naming the setting and the address, no traceback


@pytest.mark.parametrize(
    ("command", "variable", "url", "expected"),
    [
        (
            ["chat", "--json"],
            "VOICEBOT_STORE_URL",
            "postgresql://voicebot:s3cret@127.0.0.1:{port}/calls",
            "store.url: cannot reach the database at 127.0.0.1:{port}/calls",
        ),
        (
            ["chat", "--json"],
            "VOICEBOT_DIALOGUE_LOCK_STORE_URL",
            "redis://:s3cret@127.0.0.1:{port}/1",
            "dialogue.lock_store_url: cannot reach Redis at 127.0.0.1:{port}/1",
        ),
        (
            ["chat", "--json"],
            "VOICEBOT_DIALOGUE_TRACKER_STORE_URL",
            "postgresql://rasa:s3cret@127.0.0.1:{port}/rasa",
            "dialogue.tracker_store_url: cannot reach the database at 127.0.0.1:{port}/rasa",
        ),
        (
            ["queue", "list"],
            "VOICEBOT_STORE_URL",
            "postgresql://voicebot:s3cret@127.0.0.1:{port}/calls",
            "store.url: cannot reach the database at 127.0.0.1:{port}/calls",
        ),
        (
            ["console", "--port", "0"],
            "VOICEBOT_STORE_URL",
            "postgresql://voicebot:s3cret@127.0.0.1:{port}/calls",
            "store.url: cannot reach the database at 127.0.0.1:{port}/calls",
        ),
    ],
    ids=["chat-store", "chat-lock-store", "chat-tracker-store", "queue-list", "console"],
)
def test_unreachable_at_start_is_one_line(
    command: list[str],
    variable: str,
    url: str,
    expected: str,
    project_dir: Path,
    tmp_path: Path,
) -> None:
    port = closed_port()
    proc = subprocess.run(
        [sys.executable, "-m", "bot", *command],
        input="hello\n",
        capture_output=True,
        text=True,
        cwd=project_dir,
        env={**os.environ, **isolated_env(tmp_path), variable: url.format(port=port)},
        timeout=120,
    )
    assert proc.returncode == 69, proc.stderr
    assert proc.stdout == ""
    line = f"voicebot: error: {expected.format(port=port)}: Connection refused"
    assert proc.stderr.splitlines() == [line]
    assert "s3cret" not in proc.stderr


# -- during calls: PostgreSQL and Redis behind proxies the tests cut


@dataclass
class Outages:
    """The engine's three network paths: call store and queue, tracker store, lock store."""

    store: TcpProxy
    tracker: TcpProxy
    lock: TcpProxy
    database: QueueDatabase  # the direct URL, for checking what arrived


@pytest.fixture(scope="module")
def action_server(
    tmp_path_factory: pytest.TempPathFactory, project_dir: Path
) -> Iterator[ActionServer]:
    tmp = tmp_path_factory.mktemp("actions")
    server = ActionServer(project_dir, tmp / "backend.sqlite3", tmp / "actions.log")
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def outages() -> Iterator[Outages]:
    require("127.0.0.1", 5432, "PostgreSQL")
    redis_host, redis_port = REDIS_URL.removeprefix("redis://").split("/")[0].split(":")
    require(redis_host, int(redis_port), "Redis")
    with postgres_schema() as database:
        target = sa.engine.make_url(database.url)
        paths = Outages(
            TcpProxy(target.host or "127.0.0.1", target.port or 5432),
            TcpProxy(target.host or "127.0.0.1", target.port or 5432),
            TcpProxy(redis_host, int(redis_port)),
            database,
        )
        yield paths
        for proxy in (paths.store, paths.tracker, paths.lock):
            proxy.close()


@pytest.fixture(scope="module")
def outage_settings(
    outages: Outages,
    action_server: ActionServer,
    tmp_path_factory: pytest.TempPathFactory,
    project_dir: Path,
) -> Settings:
    tmp = tmp_path_factory.mktemp("outage")
    settings = load_settings(project_dir, env={**os.environ, **isolated_env(tmp)})
    store = dataclasses.replace(settings.store, url=outages.store.url(outages.database.url))
    dialogue = dataclasses.replace(
        settings.dialogue,
        actions_url=action_server.webhook_url,
        tracker_store_url=outages.tracker.url(outages.database.url),
        lock_store_url=outages.lock.url(REDIS_URL),
        model_poll_seconds=0,
    )
    return dataclasses.replace(settings, store=store, dialogue=dialogue)


@pytest.fixture(scope="module")
def engine(outage_settings: Settings, dialogue_model: Path) -> Iterator[CallEngine]:
    engine = CallEngine(outage_settings)
    engine.start()
    asyncio.run(engine.warm_up())
    yield engine
    engine.close()


def stored_turns(database: QueueDatabase, call_id: str) -> list[str]:
    """The call's stored caller words, in turn order, read past the proxy."""
    db = sa.create_engine(database.url, future=True)
    try:
        with db.connect() as conn:
            rows = conn.execute(
                sa.select(turns.c.transcript)
                .where(turns.c.call_id == call_id)
                .order_by(turns.c.turn_index)
            )
            return [row[0] for row in rows]
    finally:
        db.dispose()


def stored_call(database: QueueDatabase, call_id: str) -> dict[str, object] | None:
    db = sa.create_engine(database.url, future=True)
    try:
        with db.connect() as conn:
            row = conn.execute(calls.select().where(calls.c.call_id == call_id)).mappings().first()
            return dict(row) if row else None
    finally:
        db.dispose()


def waited_for(caplog: pytest.LogCaptureFixture, service: str) -> bool:
    return any(_waiting(record, service) for record in caplog.records)


def _waiting(record: logging.LogRecord, service: str) -> bool:
    message = record.getMessage()
    return record.name == "bot.retry" and service in message and "waiting for it" in message


class _Seen(logging.Handler):
    def __init__(self, service: str) -> None:
        super().__init__(logging.WARNING)
        self.service = service
        self.event = threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if _waiting(record, self.service):
            self.event.set()


@contextlib.contextmanager
def outage_noticed(service: str) -> Iterator[Callable[[], Awaitable[None]]]:
    """An awaitable that returns once ``service`` is being waited for."""
    seen = _Seen(service)
    retry_log = logging.getLogger("bot.retry")
    retry_log.addHandler(seen)

    async def noticed() -> None:
        waited = await asyncio.get_running_loop().run_in_executor(
            None, seen.event.wait, PATIENCE_SECONDS
        )
        assert waited, f"{service} was never waited for"

    try:
        yield noticed
    finally:
        retry_log.removeHandler(seen)


def test_call_store_outage_loses_no_turn(
    engine: CallEngine, outages: Outages, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    assert engine.store is not None

    async def call() -> list[str]:
        call = engine.new_call()
        said = [(await engine.turn(call, "hello")).user]
        assert engine.store is not None and engine.store.flush(30)
        outages.store.cut()
        try:
            for words in ("what are your opening hours", "thank you"):
                result = await engine.turn(call, words)
                assert result.bot and not result.escalated, result  # answered, not an error
                said.append(result.user)
        finally:
            outages.store.restore()
        engine.end_call(call, "caller_hang_up")
        assert engine.store.flush(60)
        assert stored_turns(outages.database, call.call_id) == said
        row = stored_call(outages.database, call.call_id)
        assert row is not None and row["end_reason"] == "caller_hang_up"
        return said

    said = asyncio.run(call())
    assert len(said) == 3
    assert waited_for(caplog, "the call store (store.url")


def test_escalation_during_outage_reaches_the_queue(
    engine: CallEngine, outages: Outages, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)

    async def call() -> tuple[str, list[str]]:
        call = engine.new_call()
        with outage_noticed("the queue's database") as noticed:
            outages.store.cut()
            try:
                turn = asyncio.ensure_future(engine.turn(call, "i want to speak to a person"))
                await noticed()  # the handoff waits for the queue...
            finally:
                outages.store.restore()  # ...which comes back
        result = await turn
        assert result.escalation_reason == "explicit_request"
        return call.call_id, list(result.bot)

    call_id, bot = asyncio.run(call())
    assert "in the queue" in bot[-1]
    assert waited_for(caplog, "the queue's database")
    queue = AgentQueue(outages.database.url, outages.database.settings)
    try:
        assert call_id in {item.call_id for item in queue.waiting()}
    finally:
        queue.close()


def test_dialogue_stores_outage_waits_then_answers(
    engine: CallEngine, outages: Outages, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)

    async def call() -> list[str]:
        call = engine.new_call()
        asked = await engine.turn(call, "where is my order")
        assert "order number" in " ".join(asked.bot)
        with (
            outage_noticed("the tracker store") as tracker_noticed,
            outage_noticed("the lock store") as lock_noticed,
        ):
            outages.tracker.cut()
            outages.lock.cut()
            try:
                turn = asyncio.ensure_future(engine.turn(call, "one two three four five"))
                await tracker_noticed()  # the turn waits for the call's state...
                outages.tracker.restore()
                await lock_noticed()  # ...then for the call's lock
            finally:
                outages.tracker.restore()
                outages.lock.restore()
        answered = await turn
        assert not answered.escalated, answered
        return list(answered.bot)

    # The form still knew it was waiting for the number: the state survived.
    assert "shipped" in " ".join(asyncio.run(call()))
    assert waited_for(caplog, "the tracker store (dialogue.tracker_store_url")
    assert waited_for(caplog, "the lock store (dialogue.lock_store_url")


@pytest.mark.parametrize("store", ["tracker", "lock"])
def test_dialogue_store_gone_past_the_limit_puts_the_caller_through(
    store: str, engine: CallEngine, outages: Outages
) -> None:
    proxy = outages.tracker if store == "tracker" else outages.lock
    default = engine.dialogue.store_backoff
    engine.dialogue.store_backoff = Backoff(give_up_seconds=0.5)

    async def call() -> list[str]:
        call = engine.new_call()
        proxy.cut()
        try:
            result = await engine.turn(call, "where is my order")
        finally:
            proxy.restore()
        assert result.escalation_reason == "action_failure"
        assert result.intent == "order_status"
        return list(result.bot)

    try:
        bot = asyncio.run(call())
    finally:
        engine.dialogue.store_backoff = default
    assert bot[0] == ACTION_FAILURE
    assert "in the queue" in bot[-1]


def test_writes_wait_in_a_spill_file_until_the_database_is_back(
    outages: Outages, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    url = outages.store.url(outages.database.url)
    store = CallStore(url, spill_dir=tmp_path)
    said = ["my email is jane dot doe at example dot com", "thanks"]
    outages.store.cut()
    try:
        store.listener(CallStarted("spilled-call", 0, "text"))
        for turn_id, words in enumerate(said, 1):
            store.listener(TranscriptFinal("spilled-call", turn_id, words, 0.9, turn_id=turn_id))
            store.listener(
                BotTurn("spilled-call", turn_id, user=words, intent="inform", turn_id=turn_id)
            )
        store.listener(CallEnded("spilled-call", 9, EndReason.CALLER_HANG_UP))
        store.close()  # the database never came back while the bot ran
    finally:
        outages.store.restore()
    (spill,) = tmp_path.glob(f"{SPILL_PREFIX}*.jsonl")
    assert any(str(spill) in r.getMessage() for r in caplog.records)
    kept = [json.loads(line) for line in spill.read_text().splitlines()]
    assert [w["op"] for w in kept] == ["insert", "insert", "insert", "redact", "update_call"]
    # Redacted before it was written to disk, as the database would have it.
    assert kept[1]["values"]["transcript"] == "my email is [email]"
    assert stored_call(outages.database, "spilled-call") is None

    # The next start writes it (and the file goes).
    again = CallStore(url, spill_dir=tmp_path)
    try:
        assert again.flush(60)
    finally:
        again.close()
    assert stored_turns(outages.database, "spilled-call") == ["my email is [email]", "thanks"]
    row = stored_call(outages.database, "spilled-call")
    assert row is not None and row["end_reason"] == "caller_hang_up"
    assert not list(tmp_path.glob(f"{SPILL_PREFIX}*"))


# -- the caller is spoken to while a store is away, and no handoff is lost

HOLDING_PHRASE = "One moment please."
QUEUE_UNAVAILABLE = "Please stay on the line and a colleague will be with you as soon as possible."


def test_a_turn_waiting_for_the_tracker_store_says_one_moment_then_answers(
    engine: CallEngine, outages: Outages
) -> None:
    async def call() -> tuple[list[str], list[str]]:
        text_call = TextCall(engine)
        asked = await text_call.say("where is my order")
        assert HOLDING_PHRASE not in asked.bot  # no store away: no phrase
        outages.tracker.cut()
        try:
            turn = asyncio.ensure_future(text_call.say("one two three four five"))
            # The phrase joins the call's transcript the moment it is due.
            while not any(line.text == HOLDING_PHRASE for line in text_call.call.transcript):
                assert not turn.done(), turn.result()
                await asyncio.sleep(0.05)
        finally:
            outages.tracker.restore()
        answered = await turn
        await text_call.hang_up("caller_hang_up")
        assert not answered.escalated, answered
        return list(answered.bot), [line.text for line in text_call.call.transcript]

    bot, transcript = asyncio.run(call())
    assert bot[0] == HOLDING_PHRASE
    assert "shipped" in " ".join(bot[1:])  # the form's state survived the wait
    assert transcript.count(HOLDING_PHRASE) == 1


def queue_items(outages: Outages, call_id: str) -> list[dict[str, Any]]:
    """The queue's rows of a call, read past the proxy."""
    db = sa.create_engine(outages.database.url, future=True)
    try:
        with db.connect() as conn:
            rows = conn.execute(
                sa.select(items).where(items.c.call_id == call_id).order_by(items.c.id)
            ).mappings()
            return [dict(row) for row in rows]
    finally:
        db.dispose()


async def escalate_while_the_queue_is_away(engine: CallEngine, call: Call) -> TurnResult:
    await engine.turn(call, "where is my order")
    result = await engine.turn(call, "i want to speak to a person")
    assert result.escalation_reason == "explicit_request"
    assert result.bot[-1] == QUEUE_UNAVAILABLE
    assert call.queue_item_id is None and call.pending_handoff is not None
    assert engine.awaits_agent(call)  # the caller waits on hold meanwhile
    return result


def test_a_handoff_waits_for_the_queue_and_is_queued_once(
    engine: CallEngine, outages: Outages
) -> None:
    async def call() -> str:
        call = engine.new_call()
        outages.store.cut()
        try:
            await escalate_while_the_queue_is_away(engine, call)
            await asyncio.sleep(1.0)  # a few attempts fail meanwhile
            assert not call.pending_handoff.done()  # type: ignore[union-attr]
        finally:
            outages.store.restore()
        assert call.pending_handoff is not None
        item = await asyncio.wait_for(call.pending_handoff, PATIENCE_SECONDS)
        assert item is not None and call.queue_item_id == item.id
        engine.end_call(call, "caller_hang_up")
        return call.call_id

    call_id = asyncio.run(call())
    (item,) = queue_items(outages, call_id)
    assert (item["kind"], item["status"], item["reason"]) == ("call", "waiting", "explicit_request")
    package = json.loads(item["handoff"])
    said = [line["text"] for line in package["transcript"] if line["speaker"] == "caller"]
    assert said == ["where is my order", "i want to speak to a person"]
    assert "the status of an order" in item["summary"]


def test_a_call_ending_while_the_queue_is_away_leaves_its_handoff_for_the_next_start(
    engine: CallEngine,
    outages: Outages,
    outage_settings: Settings,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING)
    spill_dir = outage_settings.var_dir
    number = "+447700900123"

    async def calls() -> tuple[str, str]:
        with_number = engine.new_call(line=LineInfo(1, caller_number=number))
        without = engine.new_call()
        outages.store.cut()
        try:
            for call in (with_number, without):
                await escalate_while_the_queue_is_away(engine, call)
            # Both callers hang up before the queue is back.
            engine.end_call(with_number, "caller_hang_up")
            engine.end_call(without, "caller_hang_up")
        finally:
            outages.store.restore()
        return with_number.call_id, without.call_id

    called_back, abandoned = asyncio.run(calls())
    (spill,) = spill_dir.glob(f"{HANDOFF_SPILL_PREFIX}*.jsonl")
    assert any(str(spill) in r.getMessage() for r in caplog.records)
    kept = [json.loads(line) for line in spill.read_text().splitlines()]
    assert [h["call_id"] for h in kept] == [called_back, abandoned]
    assert queue_items(outages, called_back) == queue_items(outages, abandoned) == []

    # The next start queues them; a second start finds nothing left to do.
    key = database_key(outage_settings.store_url)
    url, settings = outages.database.url, outages.database.settings
    assert replay_handoff_spills(url, spill_dir, key, settings) == 2
    assert replay_handoff_spills(url, spill_dir, key, settings) == 0
    assert not list(spill_dir.glob(f"{HANDOFF_SPILL_PREFIX}*"))

    # Known number: a callback task; none: an abandoned call the reports count.
    (callback,) = queue_items(outages, called_back)
    assert (callback["kind"], callback["status"], callback["caller_number"]) == (
        "callback", "waiting", number,
    )  # fmt: skip
    assert callback["summary"].endswith(HUNG_UP_NOTE)
    assert callback["enqueued_at"] == datetime.fromisoformat(kept[0]["escalated_at"])
    (gone,) = queue_items(outages, abandoned)
    assert (gone["kind"], gone["status"]) == ("call", "abandoned")
    assert gone["abandoned_wait_seconds"] > 0


# -- several processes on one SQLite file


def open_and_call(url: str, folder: str, start: Any, results: Any) -> None:
    """In a spawned process: opens the call store and the queue the moment
    the others do, then, again at the same moment as the others, stores calls
    and queues one of them; puts ("ok", call ids) or the error."""
    call_ids = [f"call-{os.getpid()}-{n}" for n in range(3)]
    try:
        start.wait()
        store = CallStore(url, redact_after_call=False, spill_dir=Path(folder))
        queue = AgentQueue(url)
        start.wait()  # every process writes to the one file at once
        for call_id in call_ids:
            store.listener(CallStarted(call_id, 0, "text"))
            for turn_id, words in enumerate(WORDS, 1):
                store.listener(BotTurn(call_id, turn_id, user=words, turn_id=turn_id))
            store.listener(CallEnded(call_id, 9, EndReason.BOT_HANG_UP))
        queue.enqueue(call_ids[0], "call", "explicit_request")
        queue.close()
        store.close()
        results.put(("ok", call_ids))
    except Exception as exc:  # reported to the test, which fails on it
        results.put(("error", f"{type(exc).__name__}: {exc}"))


WORDS = ("hello", "where is my order", "one two three", "thanks", "goodbye")


def test_several_processes_write_to_one_sqlite_file_at_once(tmp_path: Path) -> None:
    """Creating the tables and switching a new file to WAL race when processes
    start together (the first creates a table another has just looked for);
    then their writes meet on the file's lock, which each waits for."""
    context = multiprocessing.get_context("spawn")
    url = f"sqlite:///{tmp_path / 'calls.sqlite3'}"
    start, results = context.Barrier(6), context.Queue()
    processes = [
        context.Process(target=open_and_call, args=(url, str(tmp_path), start, results))
        for _ in range(6)
    ]
    for process in processes:
        process.start()
    outcomes = [results.get(timeout=PATIENCE_SECONDS) for _ in processes]
    for process in processes:
        process.join(timeout=PATIENCE_SECONDS)
    assert [kind for kind, _ in outcomes] == ["ok"] * 6, outcomes
    # Nothing waited in a spill file or was refused: every write went in.
    assert not list(tmp_path.glob("call-store-*.jsonl"))
    store = CallStore(url, spill_dir=tmp_path)
    queue = AgentQueue(url)
    try:
        for _, call_ids in outcomes:
            for call_id in call_ids:
                assert [t["transcript"] for t in store.turns(call_id)] == list(WORDS)
                row = store.call(call_id)
                assert row is not None and row["end_reason"] == "bot_hang_up"
        queued = sorted(item.call_id for item in queue.waiting())
        assert queued == sorted(call_ids[0] for _, call_ids in outcomes)
    finally:
        queue.close()
        store.close()
