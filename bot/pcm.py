"""PCM audio as the voicebot moves it: conversions between device formats
and the 16 kHz mono 16-bit frames that recognition works on."""

from __future__ import annotations

import numpy as np
import soxr

SAMPLE_RATE_HZ = 16_000
FRAME_MS = 20
FRAME_SAMPLES = SAMPLE_RATE_HZ * FRAME_MS // 1000
FRAME_BYTES = FRAME_SAMPLES * 2


def to_float(samples: np.ndarray) -> np.ndarray:
    """int16 or float samples, any shape, as float32 in [-1, 1]."""
    if samples.dtype == np.int16:
        return samples.astype(np.float32) / 32768.0
    if samples.dtype == np.int32:
        return samples.astype(np.float32) / 2147483648.0
    if samples.dtype == np.uint8:
        return (samples.astype(np.float32) - 128.0) / 128.0
    return samples.astype(np.float32)


def to_int16(samples: np.ndarray) -> np.ndarray:
    """Float samples in [-1, 1] as int16, clipped rather than wrapped."""
    return np.clip(np.round(samples * 32767.0), -32768, 32767).astype(np.int16)


def to_mono_16k(samples: np.ndarray, rate_hz: int) -> np.ndarray:
    """Any rate, mono (n,) or multi-channel (n, channels), to 16 kHz mono int16."""
    audio = to_float(samples)
    if audio.ndim == 2:
        audio = audio.mean(axis=1)
    if rate_hz != SAMPLE_RATE_HZ and audio.size:
        audio = soxr.resample(audio, rate_hz, SAMPLE_RATE_HZ, quality="HQ")
    return to_int16(audio)


def from_mono_16k(pcm: np.ndarray, rate_hz: int, channels: int) -> np.ndarray:
    """16 kHz mono int16 to a device's rate and channel count, as float32 (n, channels)."""
    audio = to_float(pcm)
    if rate_hz != SAMPLE_RATE_HZ and audio.size:
        audio = soxr.resample(audio, SAMPLE_RATE_HZ, rate_hz, quality="HQ")
    return np.repeat(audio[:, None], channels, axis=1).astype(np.float32)


def frames(pcm: bytes) -> list[bytes]:
    """Splits 16 kHz mono int16 PCM into 20 ms frames, zero-padding the last."""
    out = [pcm[i : i + FRAME_BYTES] for i in range(0, len(pcm), FRAME_BYTES)]
    if out and len(out[-1]) < FRAME_BYTES:
        out[-1] = out[-1] + b"\0" * (FRAME_BYTES - len(out[-1]))
    return out


def rms_dbfs(pcm: bytes) -> float:
    """Loudness of int16 PCM in dB relative to full scale (-100 for silence)."""
    samples = np.frombuffer(pcm, dtype=np.int16).astype(np.float32)
    if samples.size == 0:
        return -100.0
    rms = float(np.sqrt(np.mean(samples * samples)))
    return -100.0 if rms < 1.0 else 20.0 * float(np.log10(rms / 32768.0))
