"""Is it the caller talking, or the bot hearing itself?

Without a headset the bot's own voice comes back through the microphone while
it speaks. ``EchoGate`` looks at each microphone frame next to the frame the
bot was playing at that moment (the reference) and says whether the caller is
speaking. It does not cancel the echo; it gates speech detection:

- The echo path delay (beyond the alignment the caller of ``feed`` already
  applies) is found by normalised cross-correlation of the recent microphone
  audio with the reference history, over lags 0..``max_lag_ms``.
- The echo path gain is learnt while only the bot is talking (the microphone
  is then strongly correlated with the reference): the energy ratio of the
  microphone to the delayed reference, smoothed.
- While the bot plays, a frame is the caller when the microphone is speech
  (VAD with a raised energy floor) and either louder than the expected echo by
  ``margin_db``, or poorly correlated with the reference while somewhat louder
  than the echo, for ``confirm_ms`` in a row.
- Without playback the VAD decision passes through unchanged.

All arithmetic is numpy on 16 kHz mono int16 frames of 20 ms.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from bot.pcm import FRAME_BYTES, FRAME_MS, FRAME_SAMPLES, SAMPLE_RATE_HZ
from bot.speech.vad import VoiceActivityDetector

SILENCE_DBFS = -100.0
_SAMPLES_PER_MS = SAMPLE_RATE_HZ // 1000
_FULL_SCALE = 32768.0


@dataclass(frozen=True)
class EchoGateSettings:
    # Echo delays searched on top of the alignment the caller of feed() applies.
    max_lag_ms: int = 200
    # Microphone history correlated with the reference to find the delay.
    search_window_ms: int = 300
    search_interval_ms: int = 100
    # Shorter window for the per-frame correlation, so it reacts to a caller quickly.
    correlation_window_ms: int = 100
    # The caller must be this much louder than the expected echo...
    margin_db: float = 8.0
    # ...or the microphone correlate with the reference less than this...
    min_correlation: float = 0.5
    # (while still this much louder than the expected echo: reverberation alone
    # lowers the correlation when the bot's voice changes abruptly)...
    uncorrelated_margin_db: float = 3.0
    # ...for this long without a break.
    confirm_ms: int = 40
    # The gain is learnt only from frames this clearly echo.
    adapt_min_correlation: float = 0.8
    # Weight of each new gain measurement (0..1).
    gain_smoothing: float = 0.3
    # Before anything is learnt, assume the loudest plausible echo (speakerphone).
    initial_echo_gain_db: float = 0.0
    # Reference frames quieter than this are not playback.
    reference_silence_dbfs: float = -60.0
    # After playback stops, the gate stays on this long past max_lag_ms (room echo).
    echo_tail_ms: int = 200
    # The echo fades at most this fast after the reference drops (room reverberation).
    echo_decay_db_per_frame: float = 4.0
    # VAD energy floor raised by this much while the bot plays.
    vad_boost_db: float = 6.0
    # A microphone this quiet while the bot plays means little or no echo path.
    quiet_microphone_dbfs: float = -55.0
    # ...for this long, playback going on, before the gain is lowered.
    quiet_learn_ms: int = 600

    def __post_init__(self) -> None:
        for name in ("max_lag_ms", "search_window_ms", "correlation_window_ms"):
            if getattr(self, name) % FRAME_MS:
                raise ValueError(f"{name} must be a multiple of {FRAME_MS} ms")
        if not 0 < self.correlation_window_ms <= self.search_window_ms:
            raise ValueError("need 0 < correlation_window_ms <= search_window_ms")
        if not 0 < self.gain_smoothing <= 1:
            raise ValueError("gain_smoothing must be in (0, 1]")


@dataclass(frozen=True)
class EchoDecision:
    caller_speaking: bool
    # Learnt microphone level relative to the reference, in dB.
    echo_gain_db: float
    # Microphone level above the expected echo, in dB (above -100 dBFS without playback).
    residual_db: float


def _power(samples: np.ndarray) -> float:
    return float(np.mean(samples * samples)) if samples.size else 0.0


def _db(power: float) -> float:
    return SILENCE_DBFS if power <= 1e-10 else 10.0 * math.log10(power)


class EchoGate:
    """Caller-or-echo decisions for one call's microphone (not thread-safe)."""

    def __init__(self, vad: VoiceActivityDetector, settings: EchoGateSettings | None = None):
        self.settings = settings or EchoGateSettings()
        self._vad = vad
        s = self.settings
        self._max_lag = s.max_lag_ms * _SAMPLES_PER_MS
        self._search_window = s.search_window_ms * _SAMPLES_PER_MS
        self._corr_window = s.correlation_window_ms * _SAMPLES_PER_MS
        self._confirm_frames = max(1, math.ceil(s.confirm_ms / FRAME_MS))
        self._search_every = max(1, s.search_interval_ms // FRAME_MS)
        # Playback may still echo this long after the reference went quiet.
        self._active_frames = math.ceil((s.max_lag_ms + s.echo_tail_ms) / FRAME_MS)
        self.reset()

    def reset(self) -> None:
        """Forgets the history, the delay and the learnt gain (a new call)."""
        history = self._max_lag + max(self._search_window, self._corr_window) + FRAME_SAMPLES
        self._reference = np.zeros(history, dtype=np.float32)
        self._mic = np.zeros(self._search_window, dtype=np.float32)
        self._frames_since_playback = self._active_frames + 1
        self._frames_since_search = 0
        self._playback_frames = 0
        self._lag: int | None = None
        self._gain_db = self.settings.initial_echo_gain_db
        self._gain_learnt = False
        self._expected_db = SILENCE_DBFS
        self._quiet_frames = 0
        self._candidate_run = 0
        self._correlation = 0.0

    @property
    def echo_delay_ms(self) -> float | None:
        """The echo delay found beyond the caller's alignment, once found."""
        return None if self._lag is None else self._lag / _SAMPLES_PER_MS

    @property
    def echo_gain_learnt(self) -> bool:
        return self._gain_learnt

    @property
    def correlation(self) -> float:
        """Microphone-to-reference correlation at the echo delay, last frame (0..1)."""
        return self._correlation

    def feed(self, mic: bytes, reference: bytes | None) -> EchoDecision:
        """One 20 ms microphone frame and the frame being played meanwhile."""
        if len(mic) != FRAME_BYTES or (reference is not None and len(reference) != FRAME_BYTES):
            raise ValueError(f"frames must be {FRAME_BYTES} bytes")
        mic_samples = np.frombuffer(mic, dtype=np.int16).astype(np.float32) / _FULL_SCALE
        if reference is None:
            ref_samples = np.zeros(FRAME_SAMPLES, dtype=np.float32)
        else:
            ref_samples = np.frombuffer(reference, dtype=np.int16).astype(np.float32) / _FULL_SCALE
        self._push(mic_samples, ref_samples)
        mic_db = _db(_power(mic_samples))

        if _db(_power(ref_samples)) >= self.settings.reference_silence_dbfs:
            self._frames_since_playback = 0
            self._playback_frames += 1
        else:
            self._frames_since_playback += 1
        if self._frames_since_playback > self._active_frames:
            # No playback that could still be echoing: the VAD decides alone.
            self._playback_frames = 0
            self._candidate_run = 0
            self._expected_db = SILENCE_DBFS
            return EchoDecision(
                caller_speaking=self._vad.is_speech(mic),
                echo_gain_db=self._gain_db,
                residual_db=mic_db - SILENCE_DBFS,
            )

        vad_speech = self._vad.is_speech(mic, threshold_boost_db=self.settings.vad_boost_db)
        self._frames_since_search += 1
        if self._frames_since_search >= self._search_every:
            self._frames_since_search = 0
            self._search_delay()
        self._correlation = self._correlation_at_lag()
        self._expected_db = self._expected_echo_db()
        residual_db = mic_db - self._expected_db

        louder_than_echo = residual_db >= self.settings.margin_db
        unlike_reference = (
            self._lag is not None
            and self._correlation < self.settings.min_correlation
            and residual_db >= self.settings.uncorrelated_margin_db
        )
        candidate = vad_speech and (louder_than_echo or unlike_reference)
        self._candidate_run = self._candidate_run + 1 if candidate else 0
        caller_speaking = self._candidate_run >= self._confirm_frames
        if not candidate and self._correlation >= self.settings.adapt_min_correlation:
            self._adapt_gain()
        elif not vad_speech:
            self._learn_quiet_path(mic_db)
        return EchoDecision(
            caller_speaking=caller_speaking, echo_gain_db=self._gain_db, residual_db=residual_db
        )

    def _push(self, mic: np.ndarray, reference: np.ndarray) -> None:
        self._reference = np.concatenate((self._reference[FRAME_SAMPLES:], reference))
        self._mic = np.concatenate((self._mic[FRAME_SAMPLES:], mic))

    def _delayed_reference(self, lag: int, length: int) -> np.ndarray:
        end = self._reference.size - lag
        return self._reference[end - length : end]

    def _search_delay(self) -> None:
        """Normalised cross-correlation of the recent microphone audio with the
        reference at every lag in range; keeps the best lag if it is clear."""
        window = self._search_window
        if self._playback_frames * FRAME_SAMPLES < window:
            return
        mic = self._mic
        mic_energy = float(np.dot(mic, mic))
        if mic_energy <= 1e-9:
            return
        region = self._reference[self._reference.size - window - self._max_lag :]
        size = 1 << (region.size + window).bit_length()
        spectrum = np.fft.rfft(region, size) * np.conj(np.fft.rfft(mic, size))
        raw = np.fft.irfft(spectrum, size)[: self._max_lag + 1]
        # raw[k] pairs the mic window with region[k : k + window], i.e. lag max_lag - k.
        squares = np.concatenate(([0.0], np.cumsum(region.astype(np.float64) ** 2)))
        ref_energy = squares[window : window + self._max_lag + 1] - squares[: self._max_lag + 1]
        valid = ref_energy > 1e-9
        scores = np.zeros_like(raw)
        scores[valid] = raw[valid] / np.sqrt(ref_energy[valid] * mic_energy)
        # Magnitude: some loudspeaker and microphone chains invert the polarity.
        best = int(np.argmax(np.abs(scores)))
        if abs(scores[best]) >= self.settings.min_correlation:
            self._lag = self._max_lag - best

    def _correlation_at_lag(self) -> float:
        if self._lag is None:
            return 0.0
        mic = self._mic[-self._corr_window :]
        ref = self._delayed_reference(self._lag, self._corr_window)
        energy = float(np.dot(mic, mic)) * float(np.dot(ref, ref))
        return 0.0 if energy <= 1e-18 else abs(float(np.dot(mic, ref))) / math.sqrt(energy)

    def _expected_echo_db(self) -> float:
        """Loudest echo the current frame could hold: the delayed reference
        (a frame either side, or the whole lag range while the delay is
        unknown) times the gain, and no faster fade than the room allows."""
        if self._lag is None:
            low, high = 0, self._max_lag
        else:
            low = max(0, self._lag - FRAME_SAMPLES)
            high = min(self._max_lag, self._lag + FRAME_SAMPLES)
        span = self._delayed_reference(low, high - low + FRAME_SAMPLES)
        frames = np.lib.stride_tricks.sliding_window_view(span, FRAME_SAMPLES)[::80]
        loudest_db = _db(float(np.max(np.mean(frames * frames, axis=1))))
        decayed_db = self._expected_db - self.settings.echo_decay_db_per_frame
        return max(loudest_db + self._gain_db, decayed_db)

    def _learn_quiet_path(self, mic_db: float) -> None:
        """The bot is playing and the microphone stays far quieter than the
        playback (a headset, or speakers far from the microphone): the echo
        path is at most that loud, so the gain comes down towards it and a
        caller at a normal level is not mistaken for echo."""
        reference_db = self._expected_db - self._gain_db
        if reference_db < self.settings.reference_silence_dbfs + 20:
            return  # too little playing to tell anything from the silence
        if mic_db > self.settings.quiet_microphone_dbfs:
            self._quiet_frames = 0  # something is coming in: it may be echo
            return
        # Only a long quiet stretch while the bot talks says there is no echo
        # path; a short one may be the echo not having arrived yet.
        self._quiet_frames += 1
        if self._quiet_frames * FRAME_MS < self.settings.quiet_learn_ms:
            return
        ceiling_db = mic_db - reference_db
        if ceiling_db < self._gain_db - self.settings.margin_db:
            self._gain_db += self.settings.gain_smoothing * (ceiling_db - self._gain_db)
            self._gain_learnt = True

    def _adapt_gain(self) -> None:
        assert self._lag is not None
        mic = self._mic[-self._corr_window :]
        ref = self._delayed_reference(self._lag, self._corr_window)
        ref_db = _db(_power(ref))
        if ref_db < self.settings.reference_silence_dbfs:
            return
        measured_db = _db(_power(mic)) - ref_db
        if not self._gain_learnt:
            self._gain_db = measured_db
            self._gain_learnt = True
        else:
            self._gain_db += self.settings.gain_smoothing * (measured_db - self._gain_db)
