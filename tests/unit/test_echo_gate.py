"""The echo gate on real recorded speech mixed as a loudspeaker echo would be.

The bot's voice is a real recording (or espeak-ng output); the microphone is
that voice delayed and attenuated (optionally through a synthetic room) plus
faint noise, and for barge-in a second real recording of a caller on top.
Recordings come from ../shared/speech; the tests skip where it is absent.
"""

from __future__ import annotations

import shutil
import subprocess
import wave
from pathlib import Path

import numpy as np
import pytest

from bot.pcm import FRAME_BYTES, FRAME_MS, frames, to_float, to_int16, to_mono_16k
from bot.speech.echo import EchoDecision, EchoGate, EchoGateSettings
from bot.speech.vad import Segmenter, SpeechStarted, VoiceActivityDetector

SPEECH_DIR = Path(__file__).resolve().parents[3] / "shared" / "speech"
pytestmark = pytest.mark.skipif(
    not SPEECH_DIR.is_dir(), reason=f"real speech recordings not found at {SPEECH_DIR}"
)

BOT_VOICE = "librivox_sense_and_sensibility_01_austen_64kb-0870.wav"  # 7.1 s of reading
CALLER_VOICE = "goforward_16k.wav"
ADAPTATION_MS = 500
NOISE_DBFS = -60.0


def read_speech(path: Path) -> np.ndarray:
    with wave.open(str(path), "rb") as wav:
        samples = np.frombuffer(wav.readframes(wav.getnframes()), dtype=np.int16)
        return to_float(to_mono_16k(samples, wav.getframerate()))


def active_rms(signal: np.ndarray) -> float:
    """RMS over the louder half of the 20 ms frames (the speech, not the pauses)."""
    usable = signal[: signal.size // 320 * 320].reshape(-1, 320)
    power = np.mean(usable * usable, axis=1)
    return float(np.sqrt(np.mean(power[power >= np.median(power)])))


def room_response(rt60_ms: int, seed: int) -> np.ndarray:
    """A direct path followed by an exponentially decaying diffuse tail."""
    rng = np.random.default_rng(seed)
    length = rt60_ms * 16
    tail = rng.normal(0.0, 1.0, length) * np.exp(-6.9 * np.arange(length) / length)
    tail[:16] = 0.0  # first reflections arrive after about 1 ms
    tail *= 0.5 / np.sqrt(np.sum(tail * tail))
    tail[0] = 1.0
    return tail / np.sqrt(np.sum(tail * tail))


def echo_of(
    bot: np.ndarray, delay_ms: int, gain_db: float, rt60_ms: int = 0, seed: int = 0
) -> np.ndarray:
    """What the microphone hears of the bot: delayed, attenuated, noisy."""
    voice = np.convolve(bot, room_response(rt60_ms, seed))[: bot.size] if rt60_ms else bot
    delayed = np.concatenate((np.zeros(delay_ms * 16), voice))[: bot.size]
    noise = np.random.default_rng(seed + 1).normal(0.0, 10 ** (NOISE_DBFS / 20), bot.size)
    return delayed * 10 ** (gain_db / 20) + noise


def run_gate(mic: np.ndarray, reference: np.ndarray | None) -> tuple[EchoGate, list[EchoDecision]]:
    gate = EchoGate(VoiceActivityDetector(), EchoGateSettings())
    mic_frames = frames(to_int16(mic).tobytes())
    if reference is None:
        return gate, [gate.feed(frame, None) for frame in mic_frames]
    ref_frames = frames(to_int16(reference).tobytes())
    return gate, [gate.feed(m, r) for m, r in zip(mic_frames, ref_frames, strict=True)]


def caller_frames(decisions: list[EchoDecision], from_ms: int = 0) -> list[int]:
    """Start times of the frames judged as the caller, from ``from_ms`` on."""
    return [
        i * FRAME_MS
        for i, decision in enumerate(decisions)
        if decision.caller_speaking and i * FRAME_MS >= from_ms
    ]


def speech_onset_ms(signal: np.ndarray) -> int:
    """Where the VAD and segmenter put the start of speech in a clean recording."""
    vad, segmenter = VoiceActivityDetector(), Segmenter()
    for frame in frames(to_int16(signal).tobytes()):
        for event in segmenter.process(vad.is_speech(frame)):
            if isinstance(event, SpeechStarted):
                return event.t_ms
    raise AssertionError("no speech in the recording")


@pytest.fixture(scope="module")
def bot_voice() -> np.ndarray:
    return read_speech(SPEECH_DIR / BOT_VOICE)


@pytest.fixture(scope="module")
def caller_voice() -> np.ndarray:
    return read_speech(SPEECH_DIR / CALLER_VOICE)


@pytest.mark.parametrize("delay_ms", [40, 80, 120])
@pytest.mark.parametrize("gain_db", [-6, -12, -20])
def test_the_bots_own_voice_is_not_the_caller(
    bot_voice: np.ndarray, delay_ms: int, gain_db: float
) -> None:
    gate, decisions = run_gate(echo_of(bot_voice, delay_ms, gain_db), bot_voice)
    assert caller_frames(decisions, from_ms=ADAPTATION_MS) == []
    assert gate.echo_delay_ms == pytest.approx(delay_ms, abs=1.0)
    assert gate.echo_gain_learnt
    assert decisions[-1].echo_gain_db == pytest.approx(gain_db, abs=3.0)


def test_the_bots_synthesised_voice_is_not_the_caller(tmp_path: Path) -> None:
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed (Debian package espeak-ng)")
    wav_path = tmp_path / "bot.wav"
    text = (
        "Thank you for calling. Your order was shipped yesterday and should arrive on "
        "Friday. Is there anything else I can help you with today?"
    )
    subprocess.run(["espeak-ng", "-v", "en-us", "-w", str(wav_path), text], check=True)
    bot = read_speech(wav_path)
    _, decisions = run_gate(echo_of(bot, 80, -10), bot)
    assert caller_frames(decisions, from_ms=ADAPTATION_MS) == []


def test_an_echo_with_inverted_polarity_is_still_the_bot(bot_voice: np.ndarray) -> None:
    gate, decisions = run_gate(-echo_of(bot_voice, 60, -8), bot_voice)
    assert caller_frames(decisions, from_ms=ADAPTATION_MS) == []
    assert gate.echo_delay_ms == pytest.approx(60, abs=1.0)


@pytest.mark.parametrize(("rt60_ms", "seed"), [(150, 1), (300, 2)])
def test_a_reverberant_echo_never_starts_an_utterance(
    bot_voice: np.ndarray, rt60_ms: int, seed: int
) -> None:
    mic = echo_of(bot_voice, 80, -10, rt60_ms=rt60_ms, seed=seed)
    _, decisions = run_gate(mic, bot_voice)
    segmenter = Segmenter()
    events = [e for d in decisions for e in segmenter.process(d.caller_speaking)]
    assert events == []


@pytest.mark.parametrize("delay_ms", [40, 120])
@pytest.mark.parametrize("gain_db", [-6, -12, -20])
def test_a_caller_talking_over_the_bot_is_heard_within_300_ms(
    bot_voice: np.ndarray, caller_voice: np.ndarray, delay_ms: int, gain_db: float
) -> None:
    # The caller is as loud at the microphone as the bot's own playback level,
    # so 6 to 20 dB louder than its echo.
    caller = caller_voice * (active_rms(bot_voice) / active_rms(caller_voice))
    placed_at = 48_000  # 3 s into the bot's turn
    mic = echo_of(bot_voice, delay_ms, gain_db)
    span = min(caller.size, mic.size - placed_at)
    mic[placed_at : placed_at + span] += caller[:span]
    onset_ms = 3000 + speech_onset_ms(caller_voice)

    _, decisions = run_gate(mic, bot_voice)
    assert caller_frames(decisions, from_ms=ADAPTATION_MS)[0] >= onset_ms - FRAME_MS
    heard = caller_frames(decisions, from_ms=onset_ms)
    assert heard and heard[0] - onset_ms <= 300
    # The caller keeps being heard through the phrase, not in a single blip.
    assert len(heard) >= 20


def test_without_playback_the_vad_decides(caller_voice: np.ndarray) -> None:
    mic = caller_voice + np.random.default_rng(3).normal(0.0, 1e-3, caller_voice.size)
    vad = VoiceActivityDetector()
    expected = [vad.is_speech(frame) for frame in frames(to_int16(mic).tobytes())]
    assert sum(expected) > 50
    for reference in (None, np.zeros_like(mic)):
        _, decisions = run_gate(mic, reference)
        assert [d.caller_speaking for d in decisions] == expected


def test_after_playback_stops_the_caller_is_heard_again(
    bot_voice: np.ndarray, caller_voice: np.ndarray
) -> None:
    bot = bot_voice[:32_000]  # the bot speaks for 2 s, then stops
    reference = np.concatenate((bot, np.zeros(caller_voice.size + 16_000)))
    mic = echo_of(reference, 60, -10)
    mic[48_000:] += caller_voice  # the caller answers 1 s after the bot stops
    _, decisions = run_gate(mic, reference)
    onset_ms = 3000 + speech_onset_ms(caller_voice)
    heard = caller_frames(decisions, from_ms=ADAPTATION_MS)
    assert heard and onset_ms - FRAME_MS <= heard[0] <= onset_ms + 100


def test_frames_of_the_wrong_size_are_refused() -> None:
    gate = EchoGate(VoiceActivityDetector())
    with pytest.raises(ValueError):
        gate.feed(b"\0" * (FRAME_BYTES - 2), None)
    with pytest.raises(ValueError):
        gate.feed(b"\0" * FRAME_BYTES, b"\0" * 10)
