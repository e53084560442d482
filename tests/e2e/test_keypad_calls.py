"""Keys pressed on a phone during a voice call: real voice activity detection,
Rasa dialogue, action server, pyttsx3 speech and call store. The phone line is
``KeyedLine``, a test double standing in for the SIP line (it replays a WAV
file and presses keys at set call times, as a caller's phone would send
them); only acoustic decoding is scripted, as in test_voice_file_calls.py."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from bot.call import CallEngine, LineInfo
from bot.events import CallEvent
from bot.file_channel import FileChannel, read_wav_16k
from bot.settings import Settings
from bot.voice import SpeechStack
from tests.e2e.test_voice_file_calls import caller_file, named, silence, speak
from tests.scripted import ScriptedRecogniser

pytestmark = pytest.mark.slow


class KeyedLine(FileChannel):
    """Test double of a phone line: caller audio from a file, keys at call times."""

    name = "phone"

    def __init__(self, pcm: bytes, keys: list[tuple[int, str]], line: LineInfo) -> None:
        super().__init__(pcm)
        self._keys = sorted(keys)
        self.line_info = line
        self.cleared_by: str | None = None

    def take_keys(self) -> list[str]:
        due = [key for at, key in self._keys if at <= self.now_ms()]
        self._keys = self._keys[len(due) :]
        return due

    async def clear_line(self) -> str:
        self.cleared_by = "caller" if self.far_end_gone else "bot"
        return self.cleared_by


def run_keyed_call(
    engine: CallEngine, settings: Settings, channel: KeyedLine, sentences: list[str]
) -> list[CallEvent]:
    stack = SpeechStack.load(settings, new_recogniser=lambda: ScriptedRecogniser(sentences))
    events: list[CallEvent] = []
    try:
        session = stack.session(engine, channel, [events.append])
        asyncio.run(session.run())
    finally:
        stack.close()
    return events


def test_an_order_number_keyed_in_fills_the_order_form(
    call_engine: CallEngine, isolated_settings: Settings, tmp_path: Path
) -> None:
    sentences = ["where is my order", "goodbye"]
    pcm = read_wav_16k(caller_file(
        tmp_path,
        [silence(6.0), speak(sentences[0], tmp_path), silence(14.0),
         speak(sentences[1], tmp_path), silence(4.0)],
    ))  # fmt: skip
    # The order question comes about 8 s in: "1 2 *" is a false start, then 12345#.
    presses = ["1", "2", "*", "1", "2", "3", "4", "5", "#"]
    keys = [(11_000 + 300 * i, key) for i, key in enumerate(presses)]
    line = LineInfo(line=1, caller_number="+447700900123", dialled_number="08001234567")
    channel = KeyedLine(pcm, keys, line)
    events = run_keyed_call(call_engine, isolated_settings, channel, sentences)

    started = events[0].to_dict()
    assert started["caller_number"] == "+447700900123"
    assert started["dialled_number"] == "08001234567" and started["line"] == 1
    assert [e.to_dict()["digit"] for e in named(events, "dtmf")] == presses
    turns = [e.to_dict() for e in named(events, "bot_turn")]
    assert [t["user"] for t in turns] == ["where is my order", "12345", "goodbye"]
    assert turns[1]["entities"] == {"order_id": "12345"}
    assert "shipped" in " ".join(turns[1]["bot"])
    # The keypad is mentioned once, with the first question that wants a number.
    said = [e.to_dict()["text"] for e in named(events, "bot_speech_started")]
    hinted = [text for text in said if "key it in" in text]
    assert len(hinted) == 1 and "order number" in hinted[0].lower()
    # The bot's goodbye clears the line, before the call's end is recorded.
    assert [e.name for e in events[-2:]] == ["hangup", "call_ended"]
    assert events[-2].to_dict()["by"] == "bot" and channel.cleared_by == "bot"
    store = call_engine.store
    assert store is not None
    store.flush()
    stored = store.call(events[0].call_id)
    assert stored is not None
    assert (stored["caller_number"], stored["dialled_number"], stored["line"]) == (
        "+447700900123", "08001234567", 1,
    )  # fmt: skip
    assert [t["transcript"] for t in store.turns(events[0].call_id)][1] == "12345"
