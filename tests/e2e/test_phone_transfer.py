"""An escalated phone call goes to the PBX when ``escalation.transfer_to`` is
set: the session transfers the caller and the handoff stays queued for the
console; a transfer that fails keeps the caller on hold on the bot's line.

The dialogue, queue, store and synthesiser are real; the caller's words are
a WAV file with a scripted recogniser, as in test_voice_file_calls.py.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

from bot.call import CallEngine
from bot.events import CallEvent
from bot.file_channel import FileChannel, read_wav_16k, write_wav
from bot.settings import Settings
from bot.voice import SpeechStack
from tests.scripted import ScriptedRecogniser

pytestmark = pytest.mark.slow

RATE = 16000


class TransferringLine(FileChannel):
    """Test double for a phone line whose PBX takes transfers: a WAV call
    whose ``transfer`` reports what a PBX would. The REFER exchange itself
    runs against sipp in tests/integration/test_sip_register_transfer.py."""

    transfer_target = "600"
    connects = True

    def __init__(self, pcm: bytes, tail_seconds: float = 10.0, real_time: bool = False) -> None:
        super().__init__(pcm, tail_seconds, real_time)
        self.transfers = 0

    async def transfer(self) -> bool:
        self.transfers += 1
        return self.connects


def caller_wav(tmp: Path, seconds_after: float) -> Path:
    import subprocess

    words = tmp / "words.wav"
    subprocess.run(
        ["espeak-ng", "-v", "en-us", "-w", str(words), "i want to speak to a person please"],
        check=True,
    )
    speech = np.frombuffer(read_wav_16k(words), dtype="<i2")
    quiet = np.zeros(int(1.0 * RATE), dtype="<i2")
    tail = np.zeros(int(seconds_after * RATE), dtype="<i2")
    path = tmp / "caller.wav"
    write_wav(path, np.concatenate([quiet, speech, tail]).tobytes())
    return path


def run(
    engine: CallEngine, settings: Settings, caller: Path, connects: bool
) -> tuple[list[CallEvent], TransferringLine]:
    recogniser = ScriptedRecogniser(["i want to speak to a person please"])
    stack = SpeechStack.load(settings, new_recogniser=lambda: recogniser)
    line = TransferringLine.from_wav(caller, tail_seconds=0.0)
    assert isinstance(line, TransferringLine)
    line.connects = connects
    events: list[CallEvent] = []

    async def call() -> None:
        try:
            await stack.session(engine, line, [events.append]).run()
        finally:
            await line.close()

    try:
        asyncio.run(call())
    finally:
        stack.close()
    return events, line


def _named(events: list[CallEvent], name: str) -> list[dict]:
    return [e.to_dict() for e in events if e.name == name]


def test_an_escalated_call_is_transferred_and_stays_queued(
    call_engine: CallEngine, isolated_settings: Settings, tmp_path: Path
) -> None:
    events, line = run(call_engine, isolated_settings, caller_wav(tmp_path, 8.0), connects=True)
    assert line.transfers == 1
    (escalated,) = _named(events, "escalated")
    assert escalated["reason"] == "explicit_request"
    (transferred,) = _named(events, "transferred")
    assert transferred["to"] == "600" and transferred["connected"] is True
    ended = _named(events, "call_ended")[0]
    assert ended["reason"] == "transferred"
    # The caller's story waits for the agent in the console, not abandoned.
    assert call_engine.queue is not None
    waiting = [i for i in call_engine.queue.waiting() if i.call_id == ended["call_id"]]
    assert len(waiting) == 1 and waiting[0].status == "waiting"


def test_a_failed_transfer_keeps_the_caller_on_hold(
    call_engine: CallEngine, isolated_settings: Settings, tmp_path: Path
) -> None:
    events, line = run(call_engine, isolated_settings, caller_wav(tmp_path, 12.0), connects=False)
    assert line.transfers == 1
    assert [e["connected"] for e in _named(events, "transferred")] == [False]
    # On hold as without a PBX: the place in line is spoken, and the caller
    # who hangs up while waiting is recorded as an abandoned wait.
    said = " ".join(e["text"] for e in _named(events, "bot_speech_started"))
    assert "in the queue" in said
    ended = _named(events, "call_ended")[0]
    assert ended["reason"] != "transferred"
    assert call_engine.queue is not None
    assert all(i.call_id != ended["call_id"] for i in call_engine.queue.waiting())
