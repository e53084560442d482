"""Operations endpoints over real HTTP: the console's /metrics, /healthz and
/readyz on a real queue database (an SQLite file, and a schema on the real
PostgreSQL server), and a bot process's listener while real calls run
through the real call engine (dialogue model, action server, call store).

Scrapes are parsed with prometheus_client's own parser."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa
from prometheus_client.parser import text_string_to_metric_families

from bot.call import CallEngine
from bot.console import ConsoleServer, ConsoleSettings
from bot.events import EndReason
from bot.file_channel import read_wav_16k, write_wav
from bot.ops import BotOperations
from bot.queue import AgentQueue
from bot.settings import Settings
from bot.training.deploy import record
from bot.voice import SpeechStack, call_from_file
from tests.queue_databases import BACKENDS, QueueDatabase, queue_database
from tests.scripted import ScriptedRecogniser

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


@dataclass
class Reply:
    status: int
    content_type: str
    body: str

    def json(self) -> dict:
        return json.loads(self.body)


def get(url: str) -> Reply:
    try:
        with urllib.request.urlopen(url, timeout=15) as response:
            body = response.read().decode()
            return Reply(response.status, response.headers.get("content-type", ""), body)
    except urllib.error.HTTPError as refused:
        return Reply(refused.code, refused.headers.get("content-type", ""), refused.read().decode())


def scrape(url: str) -> Samples:
    reply = get(url + "/metrics")
    assert reply.status == 200, reply.body
    assert reply.content_type.startswith("text/plain; version=0.0.4")
    found: Samples = {}
    for family in text_string_to_metric_families(reply.body):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def labelled(found: Samples, name: str, label: str) -> dict[str, float]:
    return {dict(labels)[label]: value for (n, labels), value in found.items() if n == name}


# -- the console


class TcpForwarder:
    """A real TCP relay between the console and PostgreSQL: closing it cuts
    the console off from its database as a network failure would."""

    def __init__(self, target: tuple[str, int]) -> None:
        self._target = target
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            server = socket.create_connection(self._target)
            with self._lock:
                self._sockets += [client, server]
            for source, sink in ((client, server), (server, client)):
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

    def close(self) -> None:
        with contextlib.suppress(OSError):  # wakes the accepting thread (Linux)
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        with self._lock:
            for sock in self._sockets:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()


@dataclass
class Console:
    url: str
    database: QueueDatabase
    queue: AgentQueue
    cut_off: Callable[[], None]
    reconnect: Callable[[], None]


@pytest.fixture(params=BACKENDS)
def console(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Console]:
    folder = tmp_path / "db"
    folder.mkdir()
    with queue_database(request.param, folder) as database:
        queue = database.queue()
        forwarder: TcpForwarder | None = None
        if database.backend == "postgresql":
            url = sa.engine.make_url(database.url)
            forwarder = TcpForwarder((url.host or "127.0.0.1", url.port or 5432))
            console_url = url.set(host="127.0.0.1", port=forwarder.port).render_as_string(
                hide_password=False
            )
            cut_off, reconnect = forwarder.close, lambda: None
        else:
            console_url = database.url
            away = tmp_path / "db-away"
            cut_off, reconnect = (lambda: folder.rename(away)), (lambda: away.rename(folder))
        settings = ConsoleSettings(database_url=console_url, port=0, queue=database.settings)
        try:
            with ConsoleServer(settings) as server:
                yield Console(server.url, database, queue, cut_off, reconnect)
        finally:
            queue.close()
            if forwarder is not None:
                forwarder.close()


def test_console_metrics_show_the_queue_as_its_rows_are(console: Console) -> None:
    queue = console.queue
    ann = queue.add_agent("ann", "ann-secret", "agent", ["general"])
    queue.add_agent("bob", "bob-secret", "agent", ["orders"])
    queue.add_agent("sue", "sue-secret", "supervisor", ["general"])
    queue.set_agent_state(ann.id, "available")
    # Two callers on hold (the first for 10 minutes), one callback task (for an hour).
    now = datetime.now(timezone.utc)
    for call_id, kind, reason, waited in (
        ("c1", "call", "explicit_request", 600),
        ("c2", "call", "complaint", 30),
        ("c3", "callback", "callback_requested", 3600),
    ):
        earlier = AgentQueue(
            console.database.url,
            console.database.settings,
            lambda w=waited: now - timedelta(seconds=w),
        )
        try:
            earlier.enqueue(call_id, kind, reason, 2, "general", None, {}, "summary")
        finally:
            earlier.close()

    found = scrape(console.url)
    assert found[("voicebot_queue_database_up", ())] == 1
    assert labelled(found, "voicebot_queue_length", "kind") == {"call": 2, "callback": 1}
    longest = labelled(found, "voicebot_queue_longest_wait_seconds", "kind")
    # Measured from the rows' times to the scrape: at least what they had waited.
    assert 600 <= longest["call"] < 600 + 300
    assert 3600 <= longest["callback"] < 3600 + 300
    assert labelled(found, "voicebot_agents", "state") == {
        "available": 1,
        "offline": 2,
        "on_call": 0,
        "wrap_up": 0,
    }
    escalations = {
        dict(labels)["reason"]: value
        for (name, labels), value in found.items()
        if name == "voicebot_queue_escalations_total"
    }
    assert escalations == {"explicit_request": 1, "complaint": 1, "callback_requested": 1}
    assert not labelled(found, "voicebot_model_info", "model")  # nothing deployed yet

    # Claimed: no longer waiting; a deployment names production.
    item = next(item for item in queue.waiting() if item.kind == "call")
    assert queue.claim(item.id, ann.id) is not None
    record(queue.engine, "dialogue-0123456789abcdef", "deploy", "sue")
    found = scrape(console.url)
    assert labelled(found, "voicebot_queue_length", "kind")["call"] == 1
    assert labelled(found, "voicebot_agents", "state")["on_call"] == 1
    assert labelled(found, "voicebot_model_info", "model") == {"dialogue-0123456789abcdef": 1}


def test_console_health_and_readiness_follow_its_database(console: Console) -> None:
    assert get(console.url + "/healthz").status == 200
    ready = get(console.url + "/readyz")
    assert ready.status == 200, ready.body
    assert ready.json()["checks"] == {"queue_database": "ok"}

    console.cut_off()
    try:
        refused = get(console.url + "/readyz")
        assert refused.status == 503
        assert list(refused.json()["not_ready"]) == ["queue_database"]
        assert get(console.url + "/healthz").status == 200  # alive all the same
    finally:
        console.reconnect()
    if console.database.backend == "sqlite":
        assert get(console.url + "/readyz").status == 200


# -- a bot process


def espeak(text: str, tmp: Path) -> np.ndarray:
    path = tmp / "caller-words.wav"
    subprocess.run(["espeak-ng", "-v", "en-us", "-s", "170", "-w", str(path), text], check=True)
    return np.frombuffer(read_wav_16k(path), dtype="<i2")


def silence(seconds: float) -> np.ndarray:
    return np.zeros(int(seconds * 16000), dtype="<i2")


@pytest.fixture(scope="module")
def operations(call_engine: CallEngine) -> Iterator[BotOperations]:
    ops = BotOperations(call_engine)
    ops.listen("127.0.0.1", 0)
    yield ops
    ops.close()


def test_a_bot_that_has_not_loaded_its_model_is_alive_but_not_ready(
    isolated_settings: Settings,
) -> None:
    ops = BotOperations(CallEngine(isolated_settings))  # never started
    listener = ops.listen("127.0.0.1", 0)
    try:
        assert get(listener.url + "/healthz").status == 200
        reply = get(listener.url + "/readyz")
        assert reply.status == 503 and reply.content_type == "application/json"
        assert {"model", "answering", "database", "action_server"} <= set(reply.json()["not_ready"])
        found = scrape(listener.url)
        assert not labelled(found, "voicebot_model_info", "model")
        assert set(labelled(found, "voicebot_calls_in_progress", "channel").values()) == {0}
        assert get(listener.url + "/nowhere").status == 404
    finally:
        ops.close()


def test_calls_through_the_engine_move_the_bot_metrics(
    call_engine: CallEngine,
    operations: BotOperations,
    isolated_settings: Settings,
    tmp_path: Path,
) -> None:
    assert operations.listener is not None
    url = operations.listener.url
    assert get(url + "/readyz").json()["not_ready"] == {
        "answering": "not answering calls yet (still loading)"
    }
    operations.mark_answering()
    ready = get(url + "/readyz")
    assert ready.status == 200, ready.body

    # A voice call from a WAV file: real VAD, turns, dialogue and speech;
    # only the acoustic decoding is scripted (no English Vosk model here).
    caller = tmp_path / "caller.wav"
    audio = [silence(5.0), espeak("where is my order", tmp_path), silence(5.0)]
    write_wav(caller, np.concatenate(audio).astype("<i2").tobytes())
    recogniser = ScriptedRecogniser(["where is my order"])
    stack = SpeechStack.load(isolated_settings, new_recogniser=lambda: recogniser)
    try:
        asyncio.run(call_from_file(call_engine, stack, caller, None, [operations.record]))
    finally:
        stack.close()

    # A text call that asks for a person.
    async def text_call() -> None:
        call = call_engine.new_call([operations.record], channel="text")
        await call_engine.turn(call, "i want to speak to a real person")
        call_engine.end_call(call, EndReason.TRANSFERRED)

    asyncio.run(text_call())

    found = scrape(url)
    calls = {
        (dict(labels)["channel"], dict(labels)["reason"]): value
        for (name, labels), value in found.items()
        if name == "voicebot_calls_total"
    }
    assert calls == {("file", "caller_hang_up"): 1, ("text", "transferred"): 1}
    assert set(labelled(found, "voicebot_calls_in_progress", "channel").values()) == {0}
    assert found[("voicebot_turns_total", (("channel", "file"), ("kind", "answered")))] == 1
    assert found[("voicebot_turns_total", (("channel", "text"), ("kind", "answered")))] == 1
    stages = labelled(found, "voicebot_turn_stage_seconds_count", "stage")
    assert stages["dialogue"] == 2 and stages["asr_final"] == 1 and stages["endpoint"] == 1
    assert stages["tts_first_chunk"] >= 2  # the greeting and the answer
    assert found[("voicebot_first_audio_seconds_count", ())] == 1
    assert found[("voicebot_first_audio_seconds_sum", ())] > 0
    assert labelled(found, "voicebot_escalations_total", "reason") == {"explicit_request": 1}
    assert labelled(found, "voicebot_model_info", "model") == {call_engine.model_name: 1}


def test_a_bot_whose_action_server_is_down_is_not_ready(
    call_engine: CallEngine, operations: BotOperations
) -> None:
    assert operations.listener is not None
    operations.mark_answering()
    assert get(operations.listener.url + "/readyz").status == 200
    server = call_engine.action_server
    assert server is not None and server.pid is not None
    os.kill(server.pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while server.alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    reply = get(operations.listener.url + "/readyz")
    assert reply.status == 503
    assert list(reply.json()["not_ready"]) == ["action_server"]
    assert "exited" in reply.json()["not_ready"]["action_server"]
