"""A call whose caller speaks from a WAV file, on a simulated clock.

The call's clock is the caller's audio: each 20 ms input frame is 20 ms of
call time. Frames are handed over as fast as the session takes them, except
while the session waits on work (recognition, dialogue, synthesis): then the
clock moves at real time, so the caller's audio goes on during the bot's
thinking exactly as it would on a phone line, and latencies measured on the
call's clock are real. Pauses in the file are pauses in the call.

The end of the file is the caller hanging up (``far_end_gone``): the session
lets the caller hear the answer to their last words, then ends the call; a
caller on hold hangs up at once. Silent frames follow the end of the file
until then, at most ``tail_seconds`` of them while the session is idle.

The bot's audio is laid on an output track at the call time it is played,
and cut where the caller barges in. ``real_time`` paces every frame at 20 ms,
as a live call is (``voicebot call --real-time``).
"""

from __future__ import annotations

import asyncio
import logging
import time
import wave
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np

from bot.pcm import FRAME_BYTES, FRAME_MS, SAMPLE_RATE_HZ, to_mono_16k

log = logging.getLogger(__name__)

_SILENT_FRAME = b"\0" * FRAME_BYTES
# How far a paced call may fall behind the wall clock and still catch up
# (a sound card's buffer holds about this much before it loses audio).
MAX_PACE_LAG_S = 2.0


class AudioFileError(ValueError):
    """A caller audio file that cannot be used."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def read_wav_16k(path: Path) -> bytes:
    """Any PCM WAV (8/16/24/32-bit, any rate, mono or more channels) as 16 kHz mono int16.

    A truncated file (header promises more than is there) is read as far as it
    goes, with a warning; a file that is not a WAV is an error.
    """
    try:
        with wave.open(str(path), "rb") as wav:
            channels = wav.getnchannels()
            width = wav.getsampwidth()
            rate = wav.getframerate()
            promised = wav.getnframes()
            raw = wav.readframes(promised)
    except FileNotFoundError as exc:
        raise AudioFileError("not_found", f"{path}: no such file") from exc
    except (wave.Error, EOFError) as exc:
        raise AudioFileError(
            "not_wav", f"{path} is not a PCM WAV file ({exc}); convert it, e.g. with sox"
        ) from exc
    if channels < 1 or rate < 4000 or width not in (1, 2, 3, 4):
        raise AudioFileError(
            "bad_format",
            f"{path}: unsupported WAV format ({channels} ch, {width * 8} bit, {rate} Hz)",
        )
    usable = len(raw) - len(raw) % (width * channels)
    got = usable // (width * channels)
    if got < promised:
        log.warning("%s is truncated: header says %d frames, found %d", path, promised, got)
    raw = raw[:usable]
    if width == 3:
        bytes3 = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 3)
        wide = np.zeros((bytes3.shape[0], 4), dtype=np.uint8)
        wide[:, 1:] = bytes3
        samples = wide.view("<i4").reshape(-1)
    else:
        dtype = {1: "u1", 2: "<i2", 4: "<i4"}[width]
        samples = np.frombuffer(raw, dtype=np.dtype(dtype))
    samples = samples.reshape(-1, channels) if channels > 1 else samples
    return to_mono_16k(samples, rate).tobytes()


class FileChannel:
    """Caller audio from a file; the bot's audio onto a track; a simulated clock."""

    name = "file"

    def __init__(
        self, caller_pcm: bytes, tail_seconds: float = 10.0, real_time: bool = False
    ) -> None:
        self._caller = caller_pcm
        # Every frame at the pace of a real call (an agent joining it from the
        # console hears it as it would a phone call), not only while busy.
        self._real_time = real_time
        self._frame_index = 0
        self._tail_frames = int(tail_seconds * 1000 / FRAME_MS)
        self._idle_tail = 0
        self._busy = 0
        # While paced: the moment and frame index the pace counts from.
        self._paced_from: tuple[float, int] | None = None
        self._output = bytearray()
        self._play_end_frame = 0
        self._play_done: asyncio.Event | None = None
        self._stopped = False
        # Plays replaced by a later one before they finished.
        self._cut: set[asyncio.Event] = set()
        self.hung_up = False

    @classmethod
    def from_wav(
        cls, path: Path, tail_seconds: float = 10.0, real_time: bool = False
    ) -> FileChannel:
        return cls(read_wav_16k(path), tail_seconds, real_time)

    # -- clock

    def now_ms(self) -> int:
        return self._frame_index * FRAME_MS

    def busy(self) -> _Busy:
        """While held, the clock runs at real time (the session is working)."""
        return _Busy(self)

    # -- input

    @property
    def far_end_gone(self) -> bool:
        """The caller's audio is over: they have hung up."""
        return self._frame_index * FRAME_BYTES >= len(self._caller)

    async def frames(self) -> AsyncIterator[bytes]:
        while not self.hung_up:
            start = self._frame_index * FRAME_BYTES
            if start < len(self._caller):
                frame = self._caller[start : start + FRAME_BYTES].ljust(FRAME_BYTES, b"\0")
            else:
                if not self._busy and not self.is_playing:
                    self._idle_tail += 1
                    if self._idle_tail > self._tail_frames:
                        return
                frame = _SILENT_FRAME
            if self._busy or self._real_time:
                await self._pace()
            else:
                self._paced_from = None
                await asyncio.sleep(0)
            self._frame_index += 1
            self._advance_playback()
            yield frame

    async def _pace(self) -> None:
        """Real time while the session works: frame n is handed over 20 ms
        after frame n-1 on a fixed schedule, as a sound card's clock does, so a
        moment the process stalled is made up (the call's clock stays with the
        wall clock) unless it fell more than ``MAX_PACE_LAG_S`` behind."""
        now = time.monotonic()
        if self._paced_from is None:
            self._paced_from = (now, self._frame_index)
        origin, first = self._paced_from
        due = origin + (self._frame_index - first) * FRAME_MS / 1000
        if now - due > MAX_PACE_LAG_S:  # a long stall: start the schedule again
            self._paced_from = (now, self._frame_index)
        elif due > now:
            await asyncio.sleep(due - now)
        else:
            await asyncio.sleep(0)

    # -- output

    @property
    def is_playing(self) -> bool:
        return self._play_done is not None and not self._play_done.is_set()

    def _advance_playback(self) -> None:
        if self._play_done is not None and self._frame_index >= self._play_end_frame:
            self._play_done.set()

    async def play(self, pcm: bytes) -> bool:
        """Lays the bot's audio from now on; True when played out, False when cut."""
        if not pcm:
            return True
        start = self._frame_index * FRAME_BYTES
        if len(self._output) < start:
            self._output.extend(b"\0" * (start - len(self._output)))
        del self._output[start:]
        self._output.extend(pcm)
        previous = self._play_done
        if previous is not None and not previous.is_set():
            # A new sound replaces the one playing: that play returns as cut.
            self._cut.add(previous)
            previous.set()
        self._stopped = False
        self._play_end_frame = self._frame_index + -(-len(pcm) // FRAME_BYTES)
        done = self._play_done = asyncio.Event()
        await done.wait()
        if done in self._cut:
            self._cut.discard(done)
            return False
        return not (self._stopped and done is self._play_done)

    def stop_playback(self) -> None:
        if self.is_playing and self._play_done is not None:
            self._stopped = True
            del self._output[self._frame_index * FRAME_BYTES :]
            self._play_done.set()

    def played_frame(self) -> bytes:
        """The bot's audio during the input frame just handed over (echo reference, recording)."""
        start = (self._frame_index - 1) * FRAME_BYTES
        frame = bytes(self._output[start : start + FRAME_BYTES])
        return frame.ljust(FRAME_BYTES, b"\0")

    def hang_up(self) -> None:
        self.hung_up = True
        if self._play_done is not None:
            self._play_done.set()

    def bot_track(self) -> bytes:
        """Everything the bot said, placed at its call time (16 kHz mono int16)."""
        end = max(len(self._output), self._frame_index * FRAME_BYTES)
        return bytes(self._output).ljust(end, b"\0")

    async def close(self) -> None:
        self.hang_up()


class _Busy:
    def __init__(self, channel: FileChannel) -> None:
        self._channel = channel

    def __enter__(self) -> None:
        self._channel._busy += 1

    def __exit__(self, *_exc: object) -> None:
        self._channel._busy -= 1


def write_wav(path: Path, pcm: bytes, channels: int = 1, rate_hz: int = SAMPLE_RATE_HZ) -> None:
    """Writes int16 PCM (interleaved when stereo) atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    with wave.open(str(partial), "wb") as wav:
        wav.setnchannels(channels)
        wav.setsampwidth(2)
        wav.setframerate(rate_hz)
        wav.writeframes(pcm)
    partial.replace(path)
