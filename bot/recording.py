"""Stereo call recordings: the caller on the left, the bot on the right."""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np

from bot.pcm import SAMPLE_RATE_HZ


class CallRecorder:
    """Writes frame pairs as they happen; the file appears whole when closed."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._partial = path.with_name(path.name + ".partial")
        # Open for the whole call; closed (and renamed into place) by close().
        self._wav: wave.Wave_write | None = wave.open(str(self._partial), "wb")  # noqa: SIM115
        self._wav.setnchannels(2)
        self._wav.setsampwidth(2)
        self._wav.setframerate(SAMPLE_RATE_HZ)

    def write(self, caller: bytes, bot: bytes) -> None:
        if self._wav is None:
            return
        left = np.frombuffer(caller, dtype="<i2")
        right = np.frombuffer(bot, dtype="<i2")
        n = max(left.size, right.size)
        stereo = np.zeros((n, 2), dtype="<i2")
        stereo[: left.size, 0] = left
        stereo[: right.size, 1] = right
        self._wav.writeframes(stereo.tobytes())

    def close(self) -> Path:
        if self._wav is not None:
            self._wav.close()
            self._wav = None
            self._partial.replace(self.path)
        return self.path
