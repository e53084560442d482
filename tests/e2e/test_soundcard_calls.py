"""Whole calls on a real sound card: a PulseAudio server with two null sinks,
"caller_line" (its monitor is the bot's microphone) and "bot_line" (the bot's
speaker, recorded through its monitor). Real voice activity, echo gate,
dialogue and speech; acoustic decoding is scripted (tests/scripted.py: no
English Vosk model exists here)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

from bot.call import CallEngine
from bot.events import CallEvent
from bot.file_channel import read_wav_16k, write_wav
from bot.settings import Settings
from bot.soundcard import SoundCardChannel, SoundCardSettings, rescan_devices
from bot.voice import SpeechStack
from tests.pulse import PulseServer, pulse_server_fixture
from tests.scripted import ScriptedRecogniser

pytestmark = pytest.mark.slow

lines = pulse_server_fixture(on_change=rescan_devices)
RATE = 48_000


def speech(text: str, tmp: Path) -> Path:
    raw = tmp / "raw.wav"
    subprocess.run(["espeak-ng", "-v", "en-us", "-w", str(raw), text], check=True)
    path = tmp / "caller.wav"
    write_wav(path, read_wav_16k(raw))
    return path


def loud(samples: np.ndarray, rate: int, window_ms: int = 20) -> np.ndarray:
    """Per window: louder than -35 dBFS."""
    size = rate * window_ms // 1000
    n = samples.size // size
    frames = samples[: n * size].reshape(n, size).astype(np.float64)
    rms = np.sqrt(np.mean(frames * frames, axis=1))
    return rms > 32768 * 10 ** (-35 / 20)


async def call_on_lines(
    call_engine: CallEngine,
    settings: Settings,
    lines: PulseServer,
    sentences: list[str],
    caller: Path | None,
    caller_at_seconds: float,
    seconds: float,
) -> tuple[list[CallEvent], np.ndarray]:
    recogniser = ScriptedRecogniser(sentences)
    stack = SpeechStack.load(settings, new_recogniser=lambda: recogniser)
    channel = SoundCardChannel(
        SoundCardSettings(input_device="caller_line", output_device="bot_line")
    )
    events: list[CallEvent] = []
    recording = lines.start_recording("bot_line.monitor", RATE)
    await channel.start()
    session = stack.session(call_engine, channel, [events.append], echo_gate=True)
    task = asyncio.create_task(session.run())
    try:
        if caller is not None:
            await asyncio.sleep(caller_at_seconds)
            await asyncio.to_thread(lines.play_wav, "caller_line", caller)
        await asyncio.sleep(seconds)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await channel.close()
        stack.close()
    audio = recording.stop()
    return events, np.asarray(audio.samples)


def named(events: list[CallEvent], name: str) -> list[dict]:
    return [e.to_dict() for e in events if e.name == name]


def test_the_greeting_is_heard_on_the_line(
    call_engine: CallEngine, isolated_settings: Settings, lines: PulseServer
) -> None:
    events, bot = asyncio.run(
        call_on_lines(call_engine, isolated_settings, lines, [], None, 0, 6.0)
    )
    started = named(events, "bot_speech_started")
    assert started and started[0]["text"].startswith("Thank you for calling")
    heard = loud(bot, RATE)
    assert heard.sum() * 0.02 > 2.0  # seconds of greeting on the bot's line
    assert not named(events, "barge_in")


def test_the_caller_interrupts_the_greeting(
    call_engine: CallEngine, isolated_settings: Settings, lines: PulseServer, tmp_path: Path
) -> None:
    caller = speech("i want to speak to a person please", tmp_path)
    events, bot = asyncio.run(
        call_on_lines(
            call_engine,
            isolated_settings,
            lines,
            ["i want to speak to a person please"],
            caller,
            1.5,
            6.0,
        )
    )
    (barge,) = named(events, "barge_in")
    greeting = named(events, "bot_speech_started")[0]
    assert named(events, "bot_speech_ended")[0]["interrupted"] is True
    # On the bot's line the greeting stops within 300 ms of the barge-in.
    heard = loud(bot, RATE)
    first = int(np.argmax(heard))
    quiet_run = np.convolve(~heard[first:], np.ones(15, dtype=int), "valid") == 15
    cut = first + int(np.argmax(quiet_run))
    played_seconds = (cut - first) * 0.02
    assert played_seconds <= (barge["t_ms"] - greeting["t_ms"]) / 1000 + 0.3
    assert named(events, "transcript_final")[0]["text"] == "i want to speak to a person please"


def test_the_bots_own_voice_coming_back_does_not_interrupt_it(
    call_engine: CallEngine, isolated_settings: Settings, lines: PulseServer
) -> None:
    """Speakers without a headset: the bot's line is looped back into the
    caller's line (about 60 ms later, quieter), so the microphone hears the bot."""
    env = {**os.environ, **lines.client_env()}
    loop_id = subprocess.run(
        ["pactl", "load-module", "module-loopback", "source=bot_line.monitor",
         "sink=caller_line", "latency_msec=60", "sink_input_properties=media.name=echo"],
        capture_output=True, text=True, env=env, check=True,
    ).stdout.strip()  # fmt: skip
    try:
        events, bot = asyncio.run(
            call_on_lines(call_engine, isolated_settings, lines, [], None, 0, 7.0)
        )
    finally:
        subprocess.run(["pactl", "unload-module", loop_id], env=env, check=False)
    assert not named(events, "barge_in")
    assert not named(events, "speech_started")
    ended = named(events, "bot_speech_ended")
    assert ended and ended[0]["interrupted"] is False
