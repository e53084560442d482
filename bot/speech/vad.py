"""Where a caller's utterances start and end.

Two parts, kept apart so the logic can be tested with plain numbers:

- ``VoiceActivityDetector`` says whether one frame of audio holds speech
  (WebRTC's VAD, plus an energy floor so faint background talk and line hiss
  are not taken for the caller).
- ``Segmenter`` turns a stream of per-frame yes/no decisions into utterances:
  ``SpeechStarted`` once speech has lasted long enough, ``SpeechEnded`` after
  enough trailing silence, at a maximum length, or when the dialogue ends the
  turn early. It never sees audio; it only counts milliseconds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import webrtcvad

from bot.pcm import FRAME_MS, SAMPLE_RATE_HZ, rms_dbfs

EndReason = Literal["silence", "max_length", "forced"]

# WebRTC's VAD only takes these rates and frame lengths.
WEBRTC_RATES_HZ = (8_000, 16_000, 32_000, 48_000)
WEBRTC_FRAME_MS = (10, 20, 30)


@dataclass(frozen=True)
class SegmenterSettings:
    """Timing of utterance detection, all in milliseconds of audio."""

    # Speech needed, without a break, before an utterance starts (filters clicks).
    speech_start_ms: int = 60
    # Trailing silence that ends an utterance.
    end_silence_ms: int = 500
    # An utterance with less speech than this (first to last speech frame) is a
    # blip (cough, knock, line noise) and is discarded instead of ended.
    min_utterance_ms: int = 200
    # Audio kept from before the first speech frame, so the recogniser hears the
    # caller's first sound from its soft start rather than from mid-syllable.
    pre_roll_ms: int = 300
    max_utterance_seconds: float = 30.0

    def __post_init__(self) -> None:
        for name in ("speech_start_ms", "end_silence_ms", "min_utterance_ms", "pre_roll_ms"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative")
        if self.max_utterance_seconds <= 0:
            raise ValueError("max_utterance_seconds must be positive")


@dataclass(frozen=True)
class SpeechStarted:
    """An utterance began at ``t_ms`` (start of its first speech frame).

    ``audio_start_ms`` is where the audio for the recogniser should begin: the
    pre-roll before ``t_ms``, clipped so it never reaches back into the stream
    before the segmenter started or into the previous utterance.
    """

    t_ms: int
    audio_start_ms: int


@dataclass(frozen=True)
class SpeechEnded:
    """An utterance ended at ``t_ms`` (end of its last speech frame)."""

    t_ms: int
    start_ms: int
    reason: EndReason

    @property
    def speech_ms(self) -> int:
        return self.t_ms - self.start_ms


@dataclass(frozen=True)
class SpeechDiscarded:
    """A started utterance held less than ``min_utterance_ms`` of speech: ignore it."""

    t_ms: int
    start_ms: int


SegmentEvent = SpeechStarted | SpeechEnded | SpeechDiscarded


class Segmenter:
    """Utterance boundaries from per-frame speech decisions.

    Time is counted from the first ``process`` call: each call advances the
    clock by ``frame_ms``. ``reset`` drops the utterance in progress but keeps
    the clock, so event times stay on one timeline for the whole call.
    """

    def __init__(self, settings: SegmenterSettings | None = None) -> None:
        self.settings = settings or SegmenterSettings()
        self._now_ms = 0
        self._speech_run_ms = 0
        self._utterance_start_ms: int | None = None
        self._last_speech_end_ms: int | None = None
        self._audio_floor_ms = 0

    @property
    def now_ms(self) -> int:
        """End of the last frame processed."""
        return self._now_ms

    @property
    def in_utterance(self) -> bool:
        return self._utterance_start_ms is not None

    @property
    def last_speech_end_ms(self) -> int | None:
        """End of the latest frame judged as speech, in or out of an utterance."""
        return self._last_speech_end_ms

    def process(self, is_speech: bool, frame_ms: int = FRAME_MS) -> list[SegmentEvent]:
        """Advances the clock by one frame and returns the boundaries it reveals."""
        if frame_ms <= 0:
            raise ValueError("frame_ms must be positive")
        self._now_ms += frame_ms
        if is_speech:
            self._last_speech_end_ms = self._now_ms
            self._speech_run_ms += frame_ms
        else:
            self._speech_run_ms = 0

        if self._utterance_start_ms is None:
            if is_speech and self._speech_run_ms >= self.settings.speech_start_ms:
                start_ms = self._now_ms - self._speech_run_ms
                self._utterance_start_ms = start_ms
                audio_start_ms = max(self._audio_floor_ms, start_ms - self.settings.pre_roll_ms)
                return [SpeechStarted(t_ms=start_ms, audio_start_ms=audio_start_ms)]
            return []

        # An utterance starts on a speech frame, so a last speech time exists.
        last_speech_ms = self._last_speech_end_ms
        assert last_speech_ms is not None
        if self._now_ms - self._utterance_start_ms >= self.settings.max_utterance_seconds * 1000:
            return [self._close("max_length", last_speech_ms)]
        if self._now_ms - last_speech_ms >= self.settings.end_silence_ms:
            return [self._close("silence", last_speech_ms)]
        return []

    def force_end(self) -> list[SegmentEvent]:
        """Ends the utterance now (the dialogue heard a complete answer).

        Returns ``[SpeechEnded(reason="forced")]`` whatever its length, since
        the caller of this knows the words were real; ``[]`` outside an utterance.
        """
        if self._utterance_start_ms is None:
            return []
        last_speech_ms = self._last_speech_end_ms
        assert last_speech_ms is not None
        return [self._close("forced", last_speech_ms)]

    def reset(self) -> None:
        """Drops any utterance in progress without an event; the clock runs on."""
        if self._utterance_start_ms is not None:
            self._audio_floor_ms = self._now_ms
        self._utterance_start_ms = None
        self._speech_run_ms = 0

    def _close(self, reason: EndReason, last_speech_ms: int) -> SpeechEnded | SpeechDiscarded:
        start_ms = self._utterance_start_ms
        assert start_ms is not None
        self._utterance_start_ms = None
        self._speech_run_ms = 0
        # The audio up to now went to this utterance; the next pre-roll must not repeat it.
        self._audio_floor_ms = self._now_ms
        if reason != "forced" and last_speech_ms - start_ms < self.settings.min_utterance_ms:
            return SpeechDiscarded(t_ms=last_speech_ms, start_ms=start_ms)
        return SpeechEnded(t_ms=last_speech_ms, start_ms=start_ms, reason=reason)


@dataclass(frozen=True)
class VadSettings:
    """Frame-level speech detection.

    ``aggressiveness`` is WebRTC's mode: 0 lets most sound through as speech,
    3 is the strictest. ``energy_floor_dbfs``: quieter frames are never speech,
    whatever WebRTC says (it reacts to speech-like spectra at any level).
    The rate and frame length exist for WebRTC's other modes (8 kHz, 30 ms);
    the bot itself always uses 16 kHz and 20 ms.
    """

    aggressiveness: int = 2
    energy_floor_dbfs: float = -50.0
    sample_rate_hz: int = SAMPLE_RATE_HZ
    frame_ms: int = FRAME_MS

    def __post_init__(self) -> None:
        if self.aggressiveness not in (0, 1, 2, 3):
            raise ValueError("aggressiveness must be 0, 1, 2 or 3")
        if self.sample_rate_hz not in WEBRTC_RATES_HZ:
            raise ValueError(f"sample_rate_hz must be one of {WEBRTC_RATES_HZ}")
        if self.frame_ms not in WEBRTC_FRAME_MS:
            raise ValueError(f"frame_ms must be one of {WEBRTC_FRAME_MS}")

    @property
    def frame_bytes(self) -> int:
        return self.sample_rate_hz * self.frame_ms // 1000 * 2


class VoiceActivityDetector:
    """Speech or not, one int16 mono frame at a time (WebRTC VAD keeps state
    between frames, so use one detector per audio stream)."""

    def __init__(self, settings: VadSettings | None = None) -> None:
        self.settings = settings or VadSettings()
        self._vad = webrtcvad.Vad(self.settings.aggressiveness)

    def is_speech(self, frame: bytes, threshold_boost_db: float = 0.0) -> bool:
        """True when the frame is speech and louder than the energy floor.

        ``threshold_boost_db`` raises the floor for this frame, e.g. while the
        bot is talking and its own voice may leak back into the microphone.
        """
        if len(frame) != self.settings.frame_bytes:
            raise ValueError(f"a frame must be {self.settings.frame_bytes} bytes, got {len(frame)}")
        # WebRTC is always run, so its internal state follows the whole stream.
        webrtc_says_speech = self._vad.is_speech(frame, self.settings.sample_rate_hz)
        loud_enough = rms_dbfs(frame) >= self.settings.energy_floor_dbfs + threshold_boost_db
        return bool(webrtc_says_speech) and loud_enough
