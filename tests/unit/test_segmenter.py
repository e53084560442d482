"""The utterance segmenter, driven with plain speech/silence patterns."""

from __future__ import annotations

import pytest

from bot.speech.vad import (
    Segmenter,
    SegmenterSettings,
    SegmentEvent,
    SpeechDiscarded,
    SpeechEnded,
    SpeechStarted,
)

SETTINGS = SegmenterSettings(
    speech_start_ms=60,
    end_silence_ms=500,
    min_utterance_ms=200,
    pre_roll_ms=300,
    max_utterance_seconds=30,
)


def run(segmenter: Segmenter, pattern: str, frame_ms: int = 20) -> list[SegmentEvent]:
    """Feeds one frame per character: '1' speech, '0' silence."""
    events: list[SegmentEvent] = []
    for mark in pattern:
        events += segmenter.process(mark == "1", frame_ms)
    return events


def test_silence_alone_starts_nothing() -> None:
    segmenter = Segmenter(SETTINGS)
    assert run(segmenter, "0" * 200) == []
    assert not segmenter.in_utterance
    assert segmenter.last_speech_end_ms is None
    assert segmenter.now_ms == 4000


def test_start_needs_speech_start_ms_without_a_break() -> None:
    segmenter = Segmenter(SETTINGS)
    # Two speech frames (40 ms), a gap, two more: never 60 ms in a row.
    assert run(segmenter, "0000110110") == []
    events = run(segmenter, "111")
    # The third frame of the run completes 60 ms; the start is the run's first frame.
    assert events == [SpeechStarted(t_ms=200, audio_start_ms=0)]


def test_start_is_reported_on_the_frame_that_completes_speech_start_ms() -> None:
    segmenter = Segmenter(SETTINGS)
    assert run(segmenter, "0" * 50 + "11") == []
    assert run(segmenter, "1") == [SpeechStarted(t_ms=1000, audio_start_ms=700)]
    assert segmenter.in_utterance


def test_end_after_end_silence_ms_at_the_last_speech_frame() -> None:
    segmenter = Segmenter(SETTINGS)
    run(segmenter, "0" * 50 + "1" * 25)  # speech 1000..1500 ms
    # 24 silent frames are 480 ms: not yet.
    assert run(segmenter, "0" * 24) == []
    assert run(segmenter, "0") == [SpeechEnded(t_ms=1500, start_ms=1000, reason="silence")]
    assert not segmenter.in_utterance


def test_pauses_shorter_than_end_silence_keep_the_utterance_open() -> None:
    segmenter = Segmenter(SETTINGS)
    events = run(segmenter, "1" * 10 + "0" * 20 + "1" * 10 + "0" * 24 + "1" * 5)
    assert events == [SpeechStarted(t_ms=0, audio_start_ms=0)]
    ended = run(segmenter, "0" * 25)
    assert ended == [SpeechEnded(t_ms=(10 + 20 + 10 + 24 + 5) * 20, start_ms=0, reason="silence")]
    assert isinstance(ended[0], SpeechEnded)
    assert ended[0].speech_ms == 1380


def test_pre_roll_reaches_back_pre_roll_ms_but_not_before_the_stream() -> None:
    segmenter = Segmenter(SETTINGS)
    assert run(segmenter, "0" * 5 + "111") == [SpeechStarted(t_ms=100, audio_start_ms=0)]
    segmenter = Segmenter(SETTINGS)
    assert run(segmenter, "0" * 30 + "111") == [SpeechStarted(t_ms=600, audio_start_ms=300)]


def test_pre_roll_does_not_reach_into_the_previous_utterance() -> None:
    segmenter = Segmenter(SETTINGS)
    run(segmenter, "1" * 20 + "0" * 25)  # utterance 0..400 ms, closed at 900 ms
    assert segmenter.now_ms == 900
    events = run(segmenter, "0" * 5 + "111")  # next speech at 1000 ms
    assert events == [SpeechStarted(t_ms=1000, audio_start_ms=900)]


def test_short_blips_are_discarded_not_ended() -> None:
    segmenter = Segmenter(SETTINGS)
    # Too short to start at all: 40 ms.
    assert run(segmenter, "0" * 10 + "11" + "0" * 40) == []
    # Long enough to start (100 ms) but below min_utterance_ms (200 ms).
    events = run(segmenter, "11111" + "0" * 25)
    assert events == [
        SpeechStarted(t_ms=1040, audio_start_ms=740),
        SpeechDiscarded(t_ms=1140, start_ms=1040),
    ]


def test_exactly_min_utterance_ms_of_speech_is_an_utterance() -> None:
    segmenter = Segmenter(SETTINGS)
    events = run(segmenter, "1" * 10 + "0" * 25)
    assert events[-1] == SpeechEnded(t_ms=200, start_ms=0, reason="silence")


def test_max_length_ends_a_non_stop_utterance_and_speech_restarts_it() -> None:
    settings = SegmenterSettings(max_utterance_seconds=1.0)
    segmenter = Segmenter(settings)
    events = run(segmenter, "1" * 49)
    assert events == [SpeechStarted(t_ms=0, audio_start_ms=0)]
    assert run(segmenter, "1") == [SpeechEnded(t_ms=1000, start_ms=0, reason="max_length")]
    # Continuing speech is a new utterance once speech_start_ms is met again.
    assert run(segmenter, "11") == []
    assert run(segmenter, "1") == [SpeechStarted(t_ms=1000, audio_start_ms=1000)]


def test_max_length_counts_trailing_silence_too() -> None:
    settings = SegmenterSettings(max_utterance_seconds=1.0, end_silence_ms=800)
    segmenter = Segmenter(settings)
    events = run(segmenter, "1" * 40 + "0" * 10)
    assert events[-1] == SpeechEnded(t_ms=800, start_ms=0, reason="max_length")


def test_force_end_closes_at_the_last_speech_frame_even_when_short() -> None:
    segmenter = Segmenter(SETTINGS)
    assert segmenter.force_end() == []
    run(segmenter, "0" * 10 + "1" * 5 + "00")
    assert segmenter.force_end() == [SpeechEnded(t_ms=300, start_ms=200, reason="forced")]
    assert not segmenter.in_utterance
    assert segmenter.force_end() == []
    # Silence after a forced end reports nothing more.
    assert run(segmenter, "0" * 40) == []


def test_reset_drops_the_utterance_silently_and_keeps_the_clock() -> None:
    segmenter = Segmenter(SETTINGS)
    run(segmenter, "1" * 10)
    segmenter.reset()
    assert not segmenter.in_utterance
    assert segmenter.now_ms == 200
    assert run(segmenter, "0" * 40) == []
    assert run(segmenter, "111") == [SpeechStarted(t_ms=1000, audio_start_ms=700)]


def test_reset_mid_run_needs_a_full_speech_start_again() -> None:
    segmenter = Segmenter(SETTINGS)
    run(segmenter, "11")
    segmenter.reset()
    assert run(segmenter, "1") == []
    assert run(segmenter, "11") == [SpeechStarted(t_ms=40, audio_start_ms=0)]


def test_last_speech_end_is_tracked_in_and_out_of_utterances() -> None:
    segmenter = Segmenter(SETTINGS)
    run(segmenter, "0001")  # a blip too short to start
    assert segmenter.last_speech_end_ms == 80
    run(segmenter, "0" * 10 + "1" * 20 + "0" * 3)
    assert segmenter.last_speech_end_ms == 680


def test_frame_length_is_taken_per_call() -> None:
    segmenter = Segmenter(SETTINGS)
    assert run(segmenter, "1", frame_ms=30) == []
    assert run(segmenter, "1", frame_ms=30) == [SpeechStarted(t_ms=0, audio_start_ms=0)]
    assert run(segmenter, "1" * 8 + "0" * 16, frame_ms=30) == []
    assert run(segmenter, "0", frame_ms=30) == [SpeechEnded(t_ms=300, start_ms=0, reason="silence")]


def test_invalid_values_are_refused() -> None:
    with pytest.raises(ValueError):
        Segmenter().process(True, frame_ms=0)
    with pytest.raises(ValueError):
        SegmenterSettings(end_silence_ms=-1)
    with pytest.raises(ValueError):
        SegmenterSettings(max_utterance_seconds=0)
