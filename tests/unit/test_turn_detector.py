"""The turn detector on plain frame decisions and partial words."""

from __future__ import annotations

import pytest

from bot.events import TurnEnd
from bot.expectations import Expectation
from bot.pcm import FRAME_BYTES, FRAME_MS
from bot.session.turns import (
    Completeness,
    Pause,
    Step,
    TurnDetector,
    TurnEnded,
    TurnSettings,
    TurnStarted,
    judge_words,
)

LEVEL = -25.0


def frame(tag: int) -> bytes:
    """A frame whose bytes say which frame it was (to follow audio through)."""
    return tag.to_bytes(4, "little") * (FRAME_BYTES // 4)


class Feeder:
    def __init__(self, detector: TurnDetector) -> None:
        self.detector = detector
        self.count = 0
        self.signals: list[object] = []
        self.audio: list[bytes] = []

    def run(self, speech: bool, ms: int) -> None:
        for _ in range(ms // FRAME_MS):
            self.count += 1
            self.take(self.detector.frame(frame(self.count), speech, LEVEL))

    def take(self, step: Step) -> None:
        self.signals.extend(step.signals)
        self.audio.extend(step.audio)

    def ends(self) -> list[TurnEnded]:
        return [s for s in self.signals if isinstance(s, TurnEnded)]


def test_the_silence_that_ends_a_turn_depends_on_the_words() -> None:
    for completeness, silence in [
        (Completeness.OPEN, 500),
        (Completeness.TRAILING, 1000),
    ]:
        feed = Feeder(TurnDetector())
        feed.run(True, 600)
        feed.take(feed.detector.heard("where is my order", completeness))
        feed.run(False, 1200)
        (ended,) = feed.ends()
        assert ended.silence_ms == silence and ended.reason is TurnEnd.SILENCE
        assert ended.last_speech_ms == 600 and not ended.discarded


def test_a_request_the_dialogue_is_sure_of_ends_after_a_short_silence() -> None:
    feed = Feeder(TurnDetector())
    feed.run(True, 600)
    feed.take(feed.detector.heard("where is my order", Completeness.OPEN))
    feed.run(False, 100)
    (pause,) = [s for s in feed.signals if isinstance(s, Pause)]
    assert pause.words == "where is my order"
    feed.detector.judged("where is my order", True)
    feed.run(False, 400)
    (ended,) = feed.ends()
    assert ended.silence_ms == 240


def test_a_judgement_of_words_the_caller_has_gone_past_is_ignored() -> None:
    feed = Feeder(TurnDetector())
    feed.run(True, 600)
    feed.take(feed.detector.heard("i want to", Completeness.TRAILING))
    feed.run(False, 100)
    feed.run(True, 300)
    feed.take(feed.detector.heard("i want to cancel", Completeness.OPEN))
    feed.detector.judged("i want to", True)  # late, about the old words
    feed.run(False, 600)
    (ended,) = feed.ends()
    assert ended.silence_ms == 500


def test_a_complete_closed_answer_ends_at_once_and_words_after_it_start_the_next_turn() -> None:
    feed = Feeder(TurnDetector())
    feed.run(False, 400)
    feed.run(True, 1500)
    feed.take(feed.detector.heard("one two three four five", Completeness.COMPLETE_ANSWER))
    (ended,) = feed.ends()
    assert ended.reason is TurnEnd.COMPLETE_ANSWER and ended.silence_ms == 0
    fed_before = len(feed.audio)
    # The caller goes straight on: "... and I want to cancel it".
    feed.run(True, 400)
    started = [s for s in feed.signals if isinstance(s, TurnStarted)]
    assert [s.turn_id for s in started] == [1, 2]
    # Every frame after the early end reaches the recogniser, none twice.
    kept = feed.audio[fed_before:]
    assert kept == [frame(n) for n in range(feed.count - len(kept) + 1, feed.count + 1)]
    assert len(kept) == 400 // FRAME_MS
    assert len(set(feed.audio)) == len(feed.audio)


def test_the_tail_of_the_last_word_after_an_early_end_is_dropped() -> None:
    feed = Feeder(TurnDetector())
    feed.run(True, 800)
    feed.take(feed.detector.heard("yes", Completeness.COMPLETE_ANSWER))
    fed_before = len(feed.audio)
    feed.run(True, 120)  # the rest of "yes"
    feed.run(False, 2000)
    assert len(feed.audio) == fed_before
    assert [type(s).__name__ for s in feed.signals] == ["TurnStarted", "TurnEnded"]


def test_pre_roll_reaches_back_before_the_first_speech_and_never_into_the_last_turn() -> None:
    feed = Feeder(TurnDetector(TurnSettings(pre_roll_ms=300)))
    feed.run(False, 1000)
    feed.run(True, 400)
    first_speech = 1000 // FRAME_MS + 1
    # Frames from 300 ms before the first speech frame, each once.
    assert feed.audio[0] == frame(first_speech - 300 // FRAME_MS)
    assert len(set(feed.audio)) == len(feed.audio)
    feed.run(False, 500)
    assert len(feed.ends()) == 1
    before_second = len(feed.audio)
    feed.run(False, 100)
    feed.run(True, 300)
    second = feed.audio[before_second:]
    assert len(set(feed.audio)) == len(feed.audio)  # nothing of turn one again
    # The pre-roll stops at the end of turn one: only the 100 ms between them.
    assert len(second) == 300 // FRAME_MS + 100 // FRAME_MS


def test_a_cough_is_discarded_and_still_closes_its_turn() -> None:
    feed = Feeder(TurnDetector())
    feed.run(True, 100)
    feed.run(False, 600)
    (ended,) = feed.ends()
    assert ended.discarded
    assert [type(s).__name__ for s in feed.signals] == ["TurnStarted", "TurnEnded"]


def test_every_turn_started_is_ended_whatever_ends_it() -> None:
    detector = TurnDetector(TurnSettings(max_turn_seconds=1.0))
    feed = Feeder(detector)
    feed.run(True, 1000)  # too long: cut at the maximum
    feed.run(False, 600)
    feed.run(True, 300)
    feed.take(detector.end_now(TurnEnd.RECOGNISER))
    feed.run(True, 300)
    feed.take(detector.end_now(TurnEnd.HANG_UP))
    kinds = [type(s).__name__ for s in feed.signals if not isinstance(s, Pause)]
    assert kinds == ["TurnStarted", "TurnEnded"] * 3
    assert [e.reason for e in feed.ends()] == [
        TurnEnd.MAX_LENGTH,
        TurnEnd.RECOGNISER,
        TurnEnd.HANG_UP,
    ]
    started = [s.turn_id for s in feed.signals if isinstance(s, TurnStarted)]
    assert started == [e.turn_id for e in feed.ends()] == [1, 2, 3]


def test_the_turn_level_is_the_power_of_its_speech_frames() -> None:
    detector = TurnDetector()
    for level in (-20.0, -30.0):
        for _ in range(10):
            detector.frame(frame(0), True, level)
    ended = next(
        s
        for _ in range(40)
        for s in detector.frame(frame(0), False, -90.0).signals
        if isinstance(s, TurnEnded)
    )
    # Mean power of -20 and -30 dBFS frames (speech only; silence not counted).
    assert ended.level_dbfs == pytest.approx(-22.6, abs=0.1)


@pytest.mark.parametrize(
    ("words", "expectation", "verdict"),
    [
        ("where is my order", Expectation.FREE, Completeness.OPEN),
        ("i want to return it and", Expectation.FREE, Completeness.TRAILING),
        ("my order um", Expectation.FREE, Completeness.TRAILING),
        ("thank you", Expectation.FREE, Completeness.OPEN),
        ("one two three", Expectation.ORDER_ID, Completeness.TRAILING),
        ("one two three four five", Expectation.ORDER_ID, Completeness.COMPLETE_ANSWER),
        ("yes", Expectation.YES_NO, Completeness.COMPLETE_ANSWER),
        # A phone number: 11 digits from 0 is a whole UK number; 11 without
        # it may go on (12 and 13 digits without "plus" are real numbers).
        ("oh seven seven oh oh nine oh oh seven eight nine", Expectation.PHONE_NUMBER,
         Completeness.COMPLETE_ANSWER),
        ("four four seven seven oh oh nine oh oh seven eight", Expectation.PHONE_NUMBER,
         Completeness.TRAILING),
        ("four four seven seven oh oh nine oh oh seven eight nine three",
         Expectation.PHONE_NUMBER, Completeness.TRAILING),
        ("plus four four seven seven oh oh nine oh oh seven eight nine", Expectation.PHONE_NUMBER,
         Completeness.TRAILING),
    ],
)  # fmt: skip
def test_words_alone_say_complete_trailing_or_open(
    words: str, expectation: Expectation, verdict: Completeness
) -> None:
    assert judge_words(words, expectation) is verdict


def test_silences_must_grow() -> None:
    with pytest.raises(ValueError, match="must grow"):
        TurnSettings(complete_silence_ms=600, open_silence_ms=500)
