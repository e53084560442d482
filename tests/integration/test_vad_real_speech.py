"""Voice activity detection and segmentation on real recorded speech.

The recordings are read from ../shared/speech (see its README for what is said
in each); the tests skip where that folder is absent.
"""

from __future__ import annotations

import json
import wave
from pathlib import Path

import numpy as np
import pytest

from bot.pcm import FRAME_MS, frames, to_mono_16k
from bot.speech.vad import (
    Segmenter,
    SegmenterSettings,
    SegmentEvent,
    SpeechDiscarded,
    SpeechEnded,
    SpeechStarted,
    VadSettings,
    VoiceActivityDetector,
)

SPEECH_DIR = Path(__file__).resolve().parents[3] / "shared" / "speech"

needs_recordings = pytest.mark.skipif(
    not SPEECH_DIR.is_dir(), reason=f"real speech recordings not found at {SPEECH_DIR}"
)
pytestmark = needs_recordings


def read_wav(name: str) -> tuple[np.ndarray, int]:
    with wave.open(str(SPEECH_DIR / name), "rb") as wav:
        samples = np.frombuffer(wav.readframes(wav.getnframes()), dtype=np.int16)
        return samples, wav.getframerate()


def speech_pcm(name: str) -> bytes:
    samples, rate_hz = read_wav(name)
    return to_mono_16k(samples, rate_hz).tobytes()


def segment(
    pcm: bytes,
    segmenter_settings: SegmenterSettings | None = None,
    vad_settings: VadSettings | None = None,
    trailing_silence_ms: int = 1000,
) -> list[SegmentEvent]:
    """VAD and segmenter over a recording, followed by digital silence."""
    vad = VoiceActivityDetector(vad_settings)
    segmenter = Segmenter(segmenter_settings)
    pcm += b"\0" * (trailing_silence_ms * 32)
    events: list[SegmentEvent] = []
    for frame in frames(pcm):
        events += segmenter.process(vad.is_speech(frame), FRAME_MS)
    return events


def utterances(events: list[SegmentEvent]) -> list[tuple[int, int]]:
    return [(e.start_ms, e.t_ms) for e in events if isinstance(e, SpeechEnded)]


@pytest.mark.parametrize("aggressiveness", [1, 2, 3])
def test_three_digit_phrases_with_pauses_are_three_utterances(aggressiveness: int) -> None:
    events = segment(
        speech_pcm("vosk_test_16k.wav"), vad_settings=VadSettings(aggressiveness=aggressiveness)
    )
    spans = utterances(events)
    assert len(spans) == 3, events
    assert not [e for e in events if isinstance(e, SpeechDiscarded)]
    for start_ms, end_ms in spans:
        assert end_ms - start_ms > 700
    # The pauses between the phrases are over a second long.
    assert spans[1][0] - spans[0][1] > 1000
    assert spans[2][0] - spans[1][1] > 1000


def test_jfk_splits_at_its_long_pause_and_is_one_utterance_with_more_patience() -> None:
    pcm = speech_pcm("whisper_jfk_16k.wav")
    # "... what your country can do for you" [pause of about half a second] "ask what ..."
    spans = utterances(segment(pcm))
    assert len(spans) == 2
    assert 7000 < spans[0][1] < 7800
    assert 8000 < spans[1][0] < 8500
    patient = utterances(segment(pcm, SegmenterSettings(end_silence_ms=1000)))
    assert len(patient) == 1
    start_ms, end_ms = patient[0]
    assert start_ms < 500
    assert end_ms > 10_000


@pytest.mark.parametrize(
    "name",
    [f"cards_00{n}.wav" for n in range(1, 6)]
    + ["goforward_16k.wav", "forever_input_2_16k.wav"]
    + [f"librivox_sense_and_sensibility_01_austen_64kb-0{n}.wav" for n in (870, 880, 930)],
)
def test_single_sentences_are_one_utterance_covering_the_speech(name: str) -> None:
    pcm = speech_pcm(name)
    duration_ms = len(pcm) // 32
    events = segment(pcm)
    spans = utterances(events)
    assert len(spans) == 1, events
    start_ms, end_ms = spans[0]
    # The sentence fills most of each recording.
    assert end_ms - start_ms > 0.5 * duration_ms
    assert end_ms <= duration_ms


def test_pre_roll_starts_the_audio_before_the_first_speech_frame() -> None:
    events = segment(speech_pcm("goforward_16k.wav"))
    started = [e for e in events if isinstance(e, SpeechStarted)]
    assert len(started) == 1
    # Speech starts about half a second in, so the whole 300 ms pre-roll fits.
    assert started[0].t_ms >= 300
    assert started[0].audio_start_ms == started[0].t_ms - 300


def test_the_energy_floor_rejects_speech_too_faint_to_be_the_caller() -> None:
    samples = np.frombuffer(speech_pcm("vosk_test_16k.wav"), dtype=np.int16)
    # 25 dB down: WebRTC alone still hears all three phrases, the -50 dBFS floor none.
    faint = (samples.astype(np.float32) * 10 ** (-25 / 20)).astype(np.int16).tobytes()
    without_floor = VadSettings(energy_floor_dbfs=float("-inf"))
    assert len(utterances(segment(faint, vad_settings=without_floor))) == 3
    assert utterances(segment(faint)) == []


def test_a_threshold_boost_raises_the_floor_for_one_frame() -> None:
    pcm = speech_pcm("cards_005.wav")
    vad = VoiceActivityDetector()
    plain = [vad.is_speech(f) for f in frames(pcm)]
    vad = VoiceActivityDetector()
    boosted = [vad.is_speech(f, threshold_boost_db=25.0) for f in frames(pcm)]
    # Boosting only removes frames (the quieter ones), never adds any.
    assert not any(b and not p for p, b in zip(plain, boosted, strict=True))
    assert 0 < sum(boosted) < 0.7 * sum(plain)


def test_low_white_noise_is_not_speech() -> None:
    noise = np.random.default_rng(7).normal(0.0, 40.0, 16_000 * 5)  # about -58 dBFS
    assert segment(noise.astype(np.int16).tobytes()) == []


def expected_webrtc_decisions() -> dict[int, str]:
    data = json.loads((SPEECH_DIR / "webrtcvad_test-audio_expected.json").read_text())
    assert data["frame_ms"] == 30
    return {int(mode): bits for mode, bits in data["expected_by_mode"].items()}


@pytest.mark.parametrize("aggressiveness", [0, 1, 2, 3])
def test_webrtc_decisions_match_the_reference_at_8_khz(aggressiveness: int) -> None:
    expected = expected_webrtc_decisions()[aggressiveness]
    samples, rate_hz = read_wav("webrtcvad_test-audio_8k.wav")
    assert rate_hz == 8000
    settings = VadSettings(
        aggressiveness=aggressiveness,
        sample_rate_hz=8000,
        frame_ms=30,
        energy_floor_dbfs=float("-inf"),
    )
    vad = VoiceActivityDetector(settings)
    pcm = samples.tobytes()
    step = settings.frame_bytes
    got = "".join(
        "1" if vad.is_speech(pcm[i : i + step]) else "0"
        for i in range(0, len(pcm) - step + 1, step)
    )
    assert got == expected


@pytest.mark.parametrize("aggressiveness", [0, 1, 2, 3])
def test_resampled_16_khz_20_ms_decisions_agree_with_the_8_khz_reference(
    aggressiveness: int,
) -> None:
    expected = expected_webrtc_decisions()[aggressiveness]
    pcm = speech_pcm("webrtcvad_test-audio_8k.wav")
    vad = VoiceActivityDetector(
        VadSettings(aggressiveness=aggressiveness, energy_floor_dbfs=float("-inf"))
    )
    count = len(expected) * 30 // FRAME_MS
    got = [vad.is_speech(frame) for frame in frames(pcm)[:count]]
    # Each 20 ms frame is compared with the 30 ms reference frame holding its middle.
    want = [expected[(i * FRAME_MS + FRAME_MS // 2) // 30] == "1" for i in range(count)]
    agreement = sum(g == w for g, w in zip(got, want, strict=True)) / count
    assert agreement >= 0.9
