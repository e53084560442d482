"""A called-back customer or their answering machine, in the voice session.

The callee's side is real recorded speech from ../shared/speech played as a
WAV call (the bot's VAD, session, dialogue and queue are real): a person who
says a few words and waits hears who calls and why and waits for the agent;
a long read sentence, as a voicemail greeting is, gets the message after it
ends, and the call ends as ``voicemail``.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

from bot.call import CallEngine
from bot.events import CallEvent
from bot.file_channel import FileChannel, read_wav_16k, write_wav
from bot.session import CallbackStart
from bot.settings import Settings
from bot.voice import SpeechStack
from tests.scripted import ScriptedRecogniser

pytestmark = pytest.mark.slow

SPEECH = Path(__file__).resolve().parents[3] / "shared" / "speech"
RATE = 16000


def callee(tmp: Path, name: str, after_s: float) -> Path:
    if not (SPEECH / name).exists():
        pytest.skip(f"{SPEECH} is not here (see its README)")
    words = np.frombuffer(read_wav_16k(SPEECH / name), dtype="<i2")
    path = tmp / "callee.wav"
    quiet = np.zeros(int(0.5 * RATE), dtype="<i2")
    write_wav(path, np.concatenate([quiet, words, np.zeros(int(after_s * RATE), "<i2")]).tobytes())
    return path


def call_back(
    engine: CallEngine, settings: Settings, wav: Path
) -> tuple[list[CallEvent], list[str], int]:
    assert engine.queue is not None
    agent = engine.queue.add_agent(f"agent-{wav.parent.name}", "pw", "agent", ["general"])
    item = engine.queue.enqueue(
        "earlier-call", "callback", "callback_requested", 1, "general", "+447700900123",
        {"intents": [{"intent": "refund_status", "confidence": 0.9}]},
    )  # fmt: skip
    engine.queue.claim(item.id, agent.id)
    told: list[str] = []
    start = CallbackStart(
        item_id=item.id,
        intro="Hello, this is the hotline calling you back about a refund.",
        voicemail="Hello, this is the hotline returning your call about a refund. Goodbye.",
        on_answered=told.append,
    )
    stack = SpeechStack.load(settings, new_recogniser=lambda: ScriptedRecogniser([]))
    events: list[CallEvent] = []
    channel = FileChannel.from_wav(wav, tail_seconds=2.0)

    async def run() -> None:
        try:
            await stack.session(engine, channel, [events.append], callback=start).run()
        finally:
            await channel.close()

    try:
        asyncio.run(run())
    finally:
        stack.close()
    return events, told, item.id


def _said(events: list[CallEvent]) -> list[dict]:
    return [e.to_dict() for e in events if e.name == "bot_speech_started"]


def test_a_person_who_answers_hears_who_calls_and_waits(
    call_engine: CallEngine, isolated_settings: Settings, tmp_path: Path
) -> None:
    events, told, _item = call_back(
        call_engine, isolated_settings, callee(tmp_path, "cards_003.wav", 6.0)
    )
    assert told == ["person"]
    said = _said(events)
    assert said[0]["text"].startswith("Hello, this is the hotline calling you back")
    # Spoken after the callee's words stopped, not over them.
    assert said[0]["t_ms"] > 500 + 1000
    assert events[-1].to_dict()["reason"] != "voicemail"


def test_an_answering_machine_gets_the_message_after_its_greeting(
    call_engine: CallEngine, isolated_settings: Settings, tmp_path: Path
) -> None:
    name = "librivox_sense_and_sensibility_01_austen_64kb-0870.wav"
    greeting_end_ms = 500 + len(read_wav_16k(SPEECH / name)) // 32
    events, told, item_id = call_back(call_engine, isolated_settings, callee(tmp_path, name, 8.0))
    assert told == ["machine"]
    said = _said(events)
    assert [s["text"] for s in said] == [
        "Hello, this is the hotline returning your call about a refund. Goodbye."
    ]
    assert said[0]["t_ms"] >= greeting_end_ms - 300  # after the greeting, not over it
    assert events[-1].to_dict()["reason"] == "voicemail"
