"""The post-call survey on whole calls: voice calls from WAV files (real voice
activity detection, turns, Rasa dialogue, action server, pyttsx3 speech, call
store), a phone-like line whose caller keys the rating after an agent
resolved the call, and text calls (`voicebot chat --json`'s loop, and a text
call an agent resolves). Only acoustic decoding is scripted, as in
test_voice_file_calls.py; ``KeyedLine`` stands in for the SIP line as in
test_keypad_calls.py."""

from __future__ import annotations

import asyncio
import dataclasses
import io
import json
import time
from pathlib import Path

import pytest

from bot.call import CallEngine, LineInfo
from bot.events import CallEvent
from bot.expectations import Expectation
from bot.file_channel import read_wav_16k
from bot.settings import Settings
from bot.voice import SpeechStack
from tests.conftest import ChatRun
from tests.e2e.test_keypad_calls import KeyedLine
from tests.e2e.test_voice_file_calls import caller_file, named, run_call, silence, speak
from tests.scripted import ScriptedRecogniser

pytestmark = pytest.mark.slow

GOODBYE = "Thank you for calling. Goodbye."
ANSWER_SECONDS = 4.0


@pytest.fixture(scope="module")
def isolated_settings(isolated_settings: Settings) -> Settings:
    """This module's calls have the survey on (as VOICEBOT_SURVEY_ENABLED=1 does)."""
    survey = dataclasses.replace(
        isolated_settings.survey, enabled=True, answer_seconds=ANSWER_SECONDS
    )
    return dataclasses.replace(isolated_settings, survey=survey)


def said(events: list[CallEvent]) -> list[str]:
    return [e.to_dict()["text"] for e in named(events, "bot_speech_started")]


def stored_call(engine: CallEngine, call_id: str) -> dict:
    assert engine.store is not None
    engine.store.flush()
    row = engine.store.call(call_id)
    assert row is not None
    return row


def test_a_voice_caller_rates_the_call_the_bot_resolved(
    call_engine: CallEngine, isolated_settings: Settings, tmp_path: Path
) -> None:
    sentences = ["goodbye", "four out of five"]
    caller = caller_file(
        tmp_path,
        [silence(6.0), speak(sentences[0], tmp_path), silence(8.5),
         speak(sentences[1], tmp_path), silence(6.0)],
    )  # fmt: skip
    events, recogniser = run_call(
        call_engine, isolated_settings, caller, sentences, tmp_path / "bot.wav"
    )
    survey = isolated_settings.survey
    assert said(events)[1:] == [GOODBYE, survey.question, survey.thanks]
    (answer,) = [e.to_dict() for e in named(events, "survey_answer")]
    assert (answer["score"], answer["via"], answer["turn_id"]) == (4, "voice", 2)
    # The answer was listened for with the rating grammar, and never went to the dialogue.
    assert recogniser.grammars[-1] == Expectation.RATING.grammar()
    assert [e.to_dict()["user"] for e in named(events, "bot_turn")] == ["goodbye"]
    # The question follows the goodbye, with nothing between; the call ends after the thanks.
    names = [e.name for e in events]
    goodbye_ended = names.index("bot_speech_ended", names.index("bot_turn"))
    assert names[goodbye_ended + 1] == "bot_speech_started"
    assert [e.name for e in events[-2:]] == ["bot_speech_ended", "call_ended"]
    assert events[-1].to_dict()["reason"] == "bot_hang_up"
    row = stored_call(call_engine, events[0].call_id)
    assert (row["end_reason"], row["csat_score"], row["csat_via"]) == ("bot_hang_up", 4, "voice")
    assert row["csat_at"] is not None
    assert call_engine.store is not None
    assert [t["transcript"] for t in call_engine.store.turns(events[0].call_id)] == ["goodbye"]


def test_silence_after_the_question_just_ends_the_call(
    call_engine: CallEngine, isolated_settings: Settings, tmp_path: Path
) -> None:
    caller = caller_file(tmp_path, [silence(6.0), speak("goodbye", tmp_path), silence(30.0)])
    events, _ = run_call(call_engine, isolated_settings, caller, ["goodbye"], tmp_path / "s.wav")
    assert said(events)[-1] == isolated_settings.survey.question
    assert not named(events, "survey_answer")
    asked_until = named(events, "bot_speech_ended")[-1].t_ms
    assert ANSWER_SECONDS * 1000 <= events[-1].t_ms - asked_until <= ANSWER_SECONDS * 1000 + 100
    assert events[-1].to_dict()["reason"] == "bot_hang_up"
    row = stored_call(call_engine, events[0].call_id)
    assert (row["end_reason"], row["csat_score"], row["csat_via"]) == ("bot_hang_up", None, None)


def test_a_caller_who_hangs_up_during_the_question_is_not_kept(
    call_engine: CallEngine, isolated_settings: Settings, tmp_path: Path
) -> None:
    words = speak("goodbye", tmp_path)
    # The file (the caller) ends about two seconds into the question.
    caller = caller_file(tmp_path, [silence(6.0), words, silence(5.0)])
    ends_ms = 11_000 + len(words) * 1000 // 16000
    events, _ = run_call(call_engine, isolated_settings, caller, ["goodbye"], tmp_path / "h.wav")
    assert said(events)[-2:] == [GOODBYE, isolated_settings.survey.question]
    assert named(events, "bot_speech_ended")[-1].to_dict()["interrupted"] is True
    assert ends_ms <= events[-1].t_ms <= ends_ms + 200
    assert not named(events, "survey_answer")
    assert events[-1].to_dict()["reason"] == "bot_hang_up"


class KeyingLine(KeyedLine):
    """Test double of a phone line (see ``KeyedLine``) whose caller presses a
    key a moment after the bot starts saying given words."""

    def __init__(self, pcm: bytes, line: LineInfo) -> None:
        super().__init__(pcm, [], line)
        self.on_hearing: dict[str, str] = {}

    def hear(self, event: CallEvent) -> None:
        data = event.to_dict()
        if data["event"] == "bot_speech_started" and data["text"] in self.on_hearing:
            self._keys.append((event.t_ms + 1500, self.on_hearing[data["text"]]))


def test_a_phone_caller_keys_a_rating_after_the_agent_resolves(
    call_engine: CallEngine, isolated_settings: Settings, tmp_path: Path
) -> None:
    asks = "can i talk to a real person"
    pcm = read_wav_16k(caller_file(tmp_path, [silence(6.0), speak(asks, tmp_path), silence(60.0)]))
    channel = KeyingLine(pcm, LineInfo(line=2, caller_number="+447700900456"))
    survey = isolated_settings.survey
    question = f"{survey.question} {survey.keypad_hint}"
    channel.on_hearing[question] = "5"
    queue = call_engine.queue
    assert queue is not None
    agent = queue.add_agent(f"kim-{time.monotonic_ns()}", "a long password", "agent", ["general"])

    def agent_resolves_at_once(event: CallEvent) -> None:
        if event.name == "escalated":
            item = next(i for i in queue.waiting() if i.call_id == event.call_id)
            queue.claim(item.id, agent.id)
            queue.resolve(item.id, agent.id, "resolved", "sorted on the call")

    stack = SpeechStack.load(isolated_settings, new_recogniser=lambda: ScriptedRecogniser([asks]))
    events: list[CallEvent] = []
    try:
        listeners = [events.append, channel.hear, agent_resolves_at_once]
        asyncio.run(stack.session(call_engine, channel, listeners).run())
    finally:
        stack.close()
    spoken = said(events)
    finished = next(i for i, text in enumerate(spoken) if "has finished with your call" in text)
    assert spoken[finished + 1 :] == [question, survey.thanks]
    assert [e.to_dict()["digit"] for e in named(events, "dtmf")] == ["5"]
    (answer,) = [e.to_dict() for e in named(events, "survey_answer")]
    assert (answer["score"], answer["via"]) == (5, "keypad")
    # The key cut the question short; the bot hangs up after its thanks.
    assert named(events, "bot_speech_ended")[-2].to_dict()["interrupted"] is True
    assert [e.name for e in events[-2:]] == ["hangup", "call_ended"]
    assert events[-2].to_dict()["by"] == "bot"
    assert events[-1].to_dict()["reason"] == "resolved"
    row = stored_call(call_engine, events[0].call_id)
    assert (row["end_reason"], row["csat_score"], row["csat_via"]) == ("resolved", 5, "keypad")


def test_a_text_caller_rates_the_call_the_agent_resolved(call_engine: CallEngine) -> None:
    from bot.chat import TextCall

    queue = call_engine.queue
    assert queue is not None
    agent = queue.add_agent(f"lee-{time.monotonic_ns()}", "pw", skills=["general", "orders"])
    survey = call_engine.settings.survey

    async def call() -> tuple[str, list]:
        text_call = TextCall(call_engine)
        await text_call.say("i want to speak to a person")
        item_id = text_call.call.queue_item_id
        assert item_id is not None and queue.claim(item_id, agent.id) is not None
        queue.resolve(item_id, agent.id, "resolved")
        results = [await text_call.say("thanks")]
        results.append(await text_call.say("it was a 2"))
        await text_call.hang_up(results[-1].end_reason or "bot_hang_up")
        return text_call.call.call_id, results

    call_id, (asked, rated) = asyncio.run(call())
    assert any("has finished with your call" in text for text in asked.bot)
    assert asked.bot[-1] == survey.question and not asked.hang_up
    assert rated.intent == "survey_answer" and rated.entities == {"csat_score": 2}
    assert rated.bot == (survey.thanks,) and rated.hang_up and rated.end_reason == "resolved"
    row = stored_call(call_engine, call_id)
    assert (row["end_reason"], row["csat_score"], row["csat_via"]) == ("resolved", 2, "text")


def test_voicebot_chat_json_asks_for_a_typed_rating(call_engine: CallEngine) -> None:
    """`voicebot chat --json`'s loop, with the caller's lines on its stdin."""
    from bot.chat import chat_json

    lines = [
        "goodbye", "purple", "i dunno",  # not understood twice: no score
        "goodbye", "5",  # a rating
        "goodbye",  # the input ends at the question: the caller has gone
    ]  # fmt: skip
    out = io.StringIO()
    asyncio.run(chat_json(call_engine, io.StringIO("".join(f"{x}\n" for x in lines)), out))
    turns = [json.loads(line) for line in out.getvalue().splitlines()]
    unrated, rated, left = ChatRun(0, turns, "").calls()
    survey = call_engine.settings.survey
    assert [t["bot"] for t in unrated] == [
        [GOODBYE, survey.question], [survey.reask], [survey.goodbye],
    ]  # fmt: skip
    assert [t["intent"] for t in unrated] == ["goodbye", "survey_answer", "survey_answer"]
    assert rated[1]["bot"] == [survey.thanks] and rated[1]["entities"] == {"csat_score": 5}
    assert [t["bot"] for t in left] == [[GOODBYE, survey.question]]
    rows = [stored_call(call_engine, call[0]["call_id"]) for call in (unrated, rated, left)]
    assert [(r["end_reason"], r["csat_score"], r["csat_via"]) for r in rows] == [
        ("bot_hang_up", None, None), ("bot_hang_up", 5, "text"), ("bot_hang_up", None, None),
    ]  # fmt: skip
