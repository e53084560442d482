"""The turn detector on real recorded speech with known pauses
(../shared/speech; the tests skip where that folder is absent)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.file_channel import read_wav_16k
from bot.pcm import FRAME_BYTES, rms_dbfs
from bot.session.turns import Completeness, Pause, TurnDetector, TurnEnded, TurnStarted
from bot.speech.vad import VoiceActivityDetector

SPEECH_DIR = Path(__file__).resolve().parents[3] / "shared" / "speech"
pytestmark = pytest.mark.skipif(
    not SPEECH_DIR.is_dir(), reason=f"real speech recordings not found at {SPEECH_DIR}"
)
SINGLE_SENTENCES = [
    "goforward_16k.wav",
    "cards_001.wav",
    "cards_002.wav",
    "cards_003.wav",
    "cards_004.wav",
    "cards_005.wav",
    "forever_input_2_16k.wav",
    "librivox_sense_and_sensibility_01_austen_64kb-0880.wav",
    "librivox_sense_and_sensibility_01_austen_64kb-0930.wav",
]


def turns_of(name: str, words: str, completeness: Completeness) -> list[TurnEnded]:
    """Runs a recording (and 2 s of silence) through voice activity and the
    detector; each turn's words are ``words`` with the given verdict."""
    pcm = read_wav_16k(SPEECH_DIR / name) + bytes(64_000)
    vad, detector = VoiceActivityDetector(), TurnDetector()
    ended: list[TurnEnded] = []
    for i in range(0, len(pcm) - FRAME_BYTES + 1, FRAME_BYTES):
        frame = pcm[i : i + FRAME_BYTES]
        step = detector.frame(frame, vad.is_speech(frame), rms_dbfs(frame))
        for signal in step.signals:
            if isinstance(signal, TurnStarted):
                detector.heard(words, completeness)
            elif isinstance(signal, TurnEnded):
                ended.append(signal)
            else:
                assert isinstance(signal, Pause)
    return ended


@pytest.mark.parametrize("name", SINGLE_SENTENCES)
def test_a_spoken_sentence_is_one_turn(name: str) -> None:
    (turn,) = turns_of(name, "a sentence", Completeness.OPEN)
    assert not turn.discarded and turn.silence_ms == 500


def test_a_pause_after_a_trailing_word_does_not_cut_the_sentence() -> None:
    """JFK pauses between 500 ms and 1 s inside his sentence ("... what your
    country can do for you | ask what you can do ..."). Words that promise
    more wait through the pause; a clause that sounds finished does not,
    exactly as the fixed 500 ms silence did not."""
    (whole,) = turns_of(
        "whisper_jfk_16k.wav", "ask not what your country can do for", Completeness.TRAILING
    )
    assert whole.last_speech_ms > 10_500
    cut = turns_of(
        "whisper_jfk_16k.wav", "ask not what your country can do for you", Completeness.OPEN
    )
    assert [t.last_speech_ms < 8_000 for t in cut] == [True, False]


def test_three_phrases_with_long_pauses_are_three_turns() -> None:
    """The digits recording: three phrases with pauses over a second."""
    turns = turns_of("vosk_test_16k.wav", "one two three", Completeness.TRAILING)
    assert len(turns) == 3 and all(t.silence_ms == 1000 for t in turns)


def test_one_speakers_turns_stay_within_a_few_db() -> None:
    """The premise of the shouting rule: a caller's own turns vary far less
    than the 10 dB that shouting adds."""
    levels = [
        turns_of(f"cards_00{n}.wav", "cards", Completeness.OPEN)[0].level_dbfs for n in range(1, 6)
    ]
    assert all(level is not None for level in levels)
    spread = max(levels) - min(levels)  # type: ignore[type-var, operator]
    assert spread < 8
