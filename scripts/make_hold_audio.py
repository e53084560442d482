"""Writes audio/hold.wav: eight seconds of soft, loopable hold music made from
sine tones (so the product ships audio it owns)."""

from __future__ import annotations

import sys
import wave
from pathlib import Path

import numpy as np

RATE = 16000
NOTES_HZ = [261.63, 329.63, 392.00, 523.25, 392.00, 329.63, 293.66, 349.23]


def hold_music() -> np.ndarray:
    beat = RATE  # one note a second
    t = np.arange(beat) / RATE
    envelope = np.minimum(1.0, t / 0.05) * np.exp(-2.5 * t)
    notes = [
        (np.sin(2 * np.pi * f * t) + 0.3 * np.sin(2 * np.pi * 2 * f * t)) * envelope
        for f in NOTES_HZ
    ]
    music = np.concatenate(notes) * 0.12
    return (music * 32767).astype("<i2")


def main() -> int:
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else Path("audio/hold.wav")
    target.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(target), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(RATE)
        wav.writeframes(hold_music().tobytes())
    print(target)
    return 0


if __name__ == "__main__":
    sys.exit(main())
