"""`voicebot serve` answering real SIP phone calls: baresip as the caller,
SIP over UDP and G.711 RTP inside a private network namespace, the real
dialogue, real speech synthesis, the Korean Vosk model (the only one here)
and the call store; JSON events read from the server's stdout."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import wave
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.baresip_caller import BaresipCaller, silence_wav
from tests.conftest import isolated_env
from tests.e2e.test_voice_cli import korean_model  # noqa: F401  (fixture)
from tests.netns import ADDRESS, NetNamespace, netns  # noqa: F401  (fixture)

pytestmark = pytest.mark.slow

SIP_PORT = 5090
BOT_URI = f"sip:support@{ADDRESS}:{SIP_PORT}"


class PhoneServer:
    """One `voicebot serve --json` process and the events it has printed."""

    def __init__(self, proc: subprocess.Popen[str], tmp: Path) -> None:
        self.proc = proc
        self.tmp = tmp
        self.events: list[dict[str, Any]] = []
        self.stderr: list[str] = []
        self._cond = threading.Condition()
        self._threads = [
            threading.Thread(target=self._read_stdout, daemon=True),
            threading.Thread(target=self._read_stderr, daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def _read_stdout(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                event = json.loads(line)
            except ValueError:
                continue
            with self._cond:
                self.events.append(event)
                self._cond.notify_all()

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            with self._cond:
                self.stderr.append(line)
                self._cond.notify_all()

    def wait_ready(self, timeout: float) -> None:
        def ready() -> bool:
            return any("voicebot: answering SIP calls on" in line for line in self.stderr)

        with self._cond:
            if not self._cond.wait_for(lambda: ready() or self.proc.poll() is not None, timeout):
                raise TimeoutError("voicebot serve did not start: " + "".join(self.stderr)[-3000:])
        assert ready(), "voicebot serve exited: " + "".join(self.stderr)[-3000:]

    def mark(self) -> int:
        with self._cond:
            return len(self.events)

    def wait_for(self, name: str, timeout: float, after: int = 0, **fields: Any) -> dict[str, Any]:
        def found() -> dict[str, Any] | None:
            return next(
                (
                    e
                    for e in self.events[after:]
                    if e.get("event") == name and all(e.get(k) == v for k, v in fields.items())
                ),
                None,
            )

        with self._cond:
            if not self._cond.wait_for(lambda: found() is not None, timeout):
                names = [(e.get("event"), e.get("line")) for e in self.events[after:]]
                raise TimeoutError(
                    f"no {name} {fields} within {timeout} s; got {names}; "
                    + "".join(self.stderr)[-2000:]
                )
            event = found()
            assert event is not None
            return event

    def events_since(self, after: int) -> list[dict[str, Any]]:
        with self._cond:
            return list(self.events[after:])

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for thread in self._threads:
            thread.join(timeout=5)


@pytest.fixture(scope="module")
def phone_server(
    netns: NetNamespace,  # noqa: F811
    project_dir: Path,
    dialogue_model: Path,
    korean_model: Path,  # noqa: F811
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[PhoneServer]:
    tmp = tmp_path_factory.mktemp("phone")
    env = {
        **os.environ,
        **isolated_env(tmp),
        "VOICEBOT_TELEPHONY_MEDIA_ADDRESS": ADDRESS,
        "PYTHONUNBUFFERED": "1",
        # A silent caller is asked again, then said goodbye to, sooner.
        "VOICEBOT_VOICE_SILENCE_REPROMPT_SECONDS": "3",
    }
    proc = netns.popen(
        [
            sys.executable,
            "-m",
            "bot",
            "serve",
            "--sip-listen",
            f"{ADDRESS}:{SIP_PORT}",
            "--lines",
            "2",
            "--json",
            "--asr-model",
            str(korean_model),
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=project_dir,
        env=env,
    )
    server = PhoneServer(proc, tmp)
    try:
        server.wait_ready(180)
        yield server
    finally:
        server.stop()


@pytest.fixture
def caller_factory(netns: NetNamespace, tmp_path: Path) -> Iterator[Any]:  # noqa: F811
    callers: list[BaresipCaller] = []

    def make(name: str, number: str, sip_port: int) -> BaresipCaller:
        workdir = tmp_path / name
        workdir.mkdir()
        caller = BaresipCaller(
            netns, workdir, silence_wav(workdir / "silence.wav"), number=number, sip_port=sip_port
        )
        callers.append(caller)
        caller.start()
        return caller

    yield make
    for caller in callers:
        caller.close()


def rms_per_second(path: Path) -> list[float]:
    with wave.open(str(path)) as wav:
        rate = wav.getframerate()
        samples = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2").astype(float)
    return [
        float(np.sqrt(np.mean(samples[i : i + rate] ** 2)))
        for i in range(0, len(samples) - rate + 1, rate)
    ]


def test_a_sip_caller_hears_the_greeting_and_hangs_up_mid_sentence(
    phone_server: PhoneServer, caller_factory: Any
) -> None:
    caller = caller_factory("alice", "+447700900123", 5070)
    mark = phone_server.mark()
    caller.dial(BOT_URI)
    caller.wait_event("CALL_ESTABLISHED", timeout=15)
    started = phone_server.wait_for("call_started", 15, after=mark)
    assert started["caller_number"] == "+447700900123"
    phone_server.wait_for("bot_speech_started", 15, after=mark)
    time.sleep(2.0)  # the greeting is under way: hang up in the middle of it
    caller.hang_up()
    caller.wait_event("CALL_CLOSED", timeout=10)
    hangup = phone_server.wait_for("hangup", 15, after=mark)
    assert hangup["by"] == "caller"
    ended = phone_server.wait_for("call_ended", 15, after=mark)
    assert ended["reason"] == "caller_hang_up"
    # Mid-sentence: the greeting was cut off when the caller left.
    events = phone_server.events_since(mark)
    spoken = [e for e in events if e["event"] == "bot_speech_ended"]
    assert spoken and spoken[0]["interrupted"] is True, json.dumps(events)
    assert spoken[0]["t_ms"] >= hangup["t_ms"] - 200, json.dumps(events)
    assert ended["recording_path"] and Path(ended["recording_path"]).is_file()

    loudness = rms_per_second(caller.received_wav())
    assert loudness, "the recording of what the caller heard is empty"
    assert max(loudness[:4]) > 300, loudness  # clearly not silence: the greeting

    deadline = time.monotonic() + 15
    rows: list[Any] = []
    while time.monotonic() < deadline and not rows:
        db = phone_server.tmp / "calls.sqlite3"
        if db.exists():
            with sqlite3.connect(db) as conn:
                rows = conn.execute(
                    "SELECT caller_number, line FROM calls WHERE caller_number LIKE ?",
                    ("%447700900123%",),
                ).fetchall()
        time.sleep(0.5)
    assert rows, "the call was not saved in the store"


def test_keys_pressed_on_the_phone_arrive_as_rfc4733_digits(
    phone_server: PhoneServer, caller_factory: Any
) -> None:
    caller = caller_factory("bob", "+447700900456", 5072)
    mark = phone_server.mark()
    caller.dial(BOT_URI)
    caller.wait_event("CALL_ESTABLISHED", timeout=15)
    phone_server.wait_for("call_started", 15, after=mark)
    phone_server.wait_for("bot_speech_started", 15, after=mark)
    phone_server.wait_for("bot_speech_ended", 20, after=mark)  # keys after the greeting
    caller.send_keys("4271#")
    deadline = time.monotonic() + 10
    digits: list[str] = []
    while time.monotonic() < deadline and len(digits) < 4:
        digits = [e["digit"] for e in phone_server.events_since(mark) if e["event"] == "dtmf"]
        time.sleep(0.2)
    time.sleep(1.0)  # no late duplicates
    digits = [e["digit"] for e in phone_server.events_since(mark) if e["event"] == "dtmf"]
    assert digits == ["4", "2", "7", "1", "#"], digits
    caller.hang_up()
    caller.wait_event("CALL_CLOSED", timeout=10)
    phone_server.wait_for("call_ended", 15, after=mark)


def test_two_callers_at_once_get_a_line_each(
    phone_server: PhoneServer, caller_factory: Any
) -> None:
    first = caller_factory("carol", "+447700900001", 5074)
    second = caller_factory("dave", "+447700900002", 5076)
    mark = phone_server.mark()
    first.dial(BOT_URI)
    second.dial(BOT_URI)
    first.wait_event("CALL_ESTABLISHED", timeout=15)
    second.wait_event("CALL_ESTABLISHED", timeout=15)
    a = phone_server.wait_for("call_started", 15, after=mark, line=1)
    b = phone_server.wait_for("call_started", 15, after=mark, line=2)
    assert {str(a["caller_number"]), str(b["caller_number"])} == {"+447700900001", "+447700900002"}
    for line in (1, 2):
        phone_server.wait_for("bot_speech_started", 15, after=mark, line=line)
    time.sleep(2.0)  # both hear their greeting at the same time
    first.hang_up()
    second.hang_up()
    for caller in (first, second):
        caller.wait_event("CALL_CLOSED", timeout=10)
    for line in (1, 2):
        assert phone_server.wait_for("hangup", 15, after=mark, line=line)["by"] == "caller"
        phone_server.wait_for("call_ended", 15, after=mark, line=line)
    for caller in (first, second):
        assert max(rms_per_second(caller.received_wav())[:4]) > 300


def test_the_bot_says_goodbye_to_a_silent_caller_and_sends_bye(
    phone_server: PhoneServer, caller_factory: Any
) -> None:
    caller = caller_factory("erin", "+447700900789", 5078)
    mark = phone_server.mark()
    caller.dial(BOT_URI)
    caller.wait_event("CALL_ESTABLISHED", timeout=15)
    phone_server.wait_for("call_started", 15, after=mark)
    closed = caller.wait_event("CALL_CLOSED", timeout=60)  # the bot's BYE
    hangup = phone_server.wait_for("hangup", 15, after=mark)
    ended = phone_server.wait_for("call_ended", 15, after=mark)
    events = phone_server.events_since(mark)
    assert hangup["by"] == "bot", json.dumps(events)
    assert ended["reason"] == "silence", json.dumps(events)
    spoken = [e["text"] for e in events if e["event"] == "bot_speech_started"]
    assert len(spoken) >= 3, spoken  # greeting, asked again, goodbye
    assert closed.get("param") is not None


def test_a_caller_who_presses_zero_talks_with_an_agent_in_the_browser(
    phone_server: PhoneServer,
    caller_factory: Any,
    netns: NetNamespace,  # noqa: F811
    tmp_path: Path,
) -> None:
    """A SIP caller keys 0 (a person, please), waits, and hears the agent who
    took the call from the console: chromium's fake microphone beeps at
    700 Hz, and those beeps are in what the caller's phone decoded."""
    from playwright.sync_api import expect, sync_playwright

    from bot.file_channel import write_wav
    from bot.queue import AgentQueue
    from tests.e2e.test_agent_voice_browser import (
        BEEP_HZ,
        CONSOLE_PORT,
        beeps,
        chromium_in,
        launch,
        log_in,
    )

    env = {**os.environ, **isolated_env(phone_server.tmp)}
    queue = AgentQueue(env["VOICEBOT_STORE_URL"])
    queue.add_agent("sam", "correct horse", "agent", ["general"])
    console = netns.popen(
        [sys.executable, "-m", "bot", "console", "--port", str(CONSOLE_PORT)],
        cwd=Path(__file__).resolve().parent.parent.parent, env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    microphone = tmp_path / "agent.wav"
    write_wav(microphone, beeps(3.0).tobytes())
    caller = caller_factory("dora", "+447700900789", 5074)
    mark = phone_server.mark()
    try:
        caller.dial(BOT_URI)
        caller.wait_event("CALL_ESTABLISHED", timeout=15)
        phone_server.wait_for("bot_speech_ended", 20, after=mark)  # the greeting is over
        caller.send_keys("0")
        escalated = phone_server.wait_for("escalated", 30, after=mark)
        assert escalated["reason"] == "explicit_request"
        with sync_playwright() as playwright:
            browser = launch(playwright, chromium_in(netns, tmp_path), microphone)
            page = log_in(browser, "sam")
            page.get_by_role("button", name="Take next").click()
            page.goto(page.url + "?audio=raw")
            page.get_by_role("button", name="Connect my headset").click()
            expect(page.locator("#voice-status")).to_have_text(
                "Connected: you are talking with the caller.", timeout=20000
            )
            time.sleep(6.0)
            browser.close()
        caller.hang_up()
        caller.wait_event("CALL_CLOSED", timeout=10)
        phone_server.wait_for("call_ended", 20, after=mark)
    finally:
        console.terminate()
        console.wait(20)
        queue.close()
    with wave.open(str(caller.received_wav())) as wav:
        rate = wav.getframerate()
        heard = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2").astype(float)
    # The last seconds of the call: 100 ms windows whose strongest tone is the beep.
    window = rate // 10
    tail = heard[-12 * rate :]
    beeping = 0
    for start in range(0, len(tail) - window, window):
        chunk = tail[start : start + window]
        if np.sqrt(np.mean(chunk**2)) < 300:
            continue
        spectrum = np.abs(np.fft.rfft(chunk * np.hanning(window)))
        if abs(np.fft.rfftfreq(window, 1 / rate)[int(np.argmax(spectrum))] - BEEP_HZ) < 30:
            beeping += 1
    assert beeping >= 10, beeping
