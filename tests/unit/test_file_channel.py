from __future__ import annotations

import asyncio
import wave
from pathlib import Path

import numpy as np
import pytest

from bot.file_channel import AudioFileError, FileChannel, read_wav_16k, write_wav
from bot.pcm import FRAME_BYTES


def tone(rate: int, seconds: float, channels: int = 1, freq: float = 440.0) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    mono = (np.sin(2 * np.pi * freq * t) * 8000).astype("<i2")
    return np.repeat(mono[:, None], channels, axis=1) if channels > 1 else mono


def save(path: Path, samples: np.ndarray, rate: int, width: int = 2) -> Path:
    channels = 1 if samples.ndim == 1 else samples.shape[1]
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(channels)
        wav.setsampwidth(width)
        wav.setframerate(rate)
        wav.writeframes(samples.tobytes())
    return path


def test_8k_stereo_is_converted_to_16k_mono(tmp_path: Path) -> None:
    pcm = read_wav_16k(save(tmp_path / "a.wav", tone(8000, 1.0, channels=2), 8000))
    samples = np.frombuffer(pcm, dtype="<i2")
    assert abs(samples.size - 16000) <= 16
    spectrum = np.abs(np.fft.rfft(samples.astype(float)))
    assert abs(np.argmax(spectrum) * 16000 / samples.size - 440) < 5


def test_24_bit_audio_is_read(tmp_path: Path) -> None:
    samples = tone(16000, 0.5).astype("<i4") << 16
    raw = samples.view(np.uint8).reshape(-1, 4)[:, 1:].copy()
    path = tmp_path / "b.wav"
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(3)
        wav.setframerate(16000)
        wav.writeframes(raw.tobytes())
    pcm = np.frombuffer(read_wav_16k(path), dtype="<i2")
    assert np.max(np.abs(pcm)) > 7000


def test_truncated_wav_is_read_as_far_as_it_goes(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = save(tmp_path / "c.wav", tone(16000, 1.0), 16000)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2 + 1])
    pcm = read_wav_16k(path)
    assert 7900 <= len(pcm) // 2 <= 8100
    assert "truncated" in caplog.text


@pytest.mark.parametrize(
    ("content", "code"),
    [(b"ID3\x03 this is an mp3 really" * 10, "not_wav"), (b"", "not_wav")],
)
def test_non_wav_files_are_refused(tmp_path: Path, content: bytes, code: str) -> None:
    path = tmp_path / "x.wav"
    path.write_bytes(content)
    with pytest.raises(AudioFileError) as err:
        read_wav_16k(path)
    assert err.value.code == code


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(AudioFileError) as err:
        read_wav_16k(tmp_path / "nothing.wav")
    assert err.value.code == "not_found"


def test_clock_follows_frames_and_playback_lands_at_call_time() -> None:
    caller = b"\x01\x00" * 16000  # one second
    channel = FileChannel(caller, tail_seconds=0.1)

    async def scenario() -> tuple[list[int], bool, bool]:
        clock: list[int] = []
        played: list[bool] = []
        stream = channel.frames()
        for _ in range(10):
            await anext(stream)
        clock.append(channel.now_ms())
        bot = b"\x10\x00" * 3200  # 200 ms of bot audio from 200 ms on
        playing = asyncio.ensure_future(channel.play(bot))
        await asyncio.sleep(0)
        for _ in range(5):
            await anext(stream)
        channel.stop_playback()  # the caller barges in at 300 ms
        played.append(await playing)
        async for _ in stream:
            pass
        clock.append(channel.now_ms())
        return clock, played[0], channel.is_playing

    clock, completed, still_playing = asyncio.run(scenario())
    assert clock[0] == 200
    assert completed is False and still_playing is False
    track = channel.bot_track()
    assert track[: 200 * 32] == b"\0" * (200 * 32)
    assert track[200 * 32 : 300 * 32] == b"\x10\x00" * 1600
    assert set(track[300 * 32 :]) <= {0}
    # One second of caller audio plus the silent tail before the channel ends.
    assert clock[1] >= 1000


def test_stereo_writer(tmp_path: Path) -> None:
    frames = np.array([[1, 2], [1, 2], [1, 0], [1, 0]], dtype="<i2")
    write_wav(tmp_path / "s.wav", frames.tobytes(), channels=2)
    with wave.open(str(tmp_path / "s.wav")) as wav:
        assert wav.getnchannels() == 2
        read = np.frombuffer(wav.readframes(4), dtype="<i2").reshape(-1, 2)
    assert read[:, 0].tolist() == [1, 1, 1, 1]
    assert read[:, 1].tolist() == [2, 2, 0, 0]
    assert FRAME_BYTES == 640


class SteppedClock:
    """A test double for the wall clock: time moves only when the channel
    sleeps or the test says a moment passed (a stalled process)."""

    def __init__(self) -> None:
        self.now = 100.0

    def monotonic(self) -> float:
        return self.now


def test_real_time_keeps_to_the_wall_clock_after_a_stall(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import bot.file_channel as file_channel

    clock = SteppedClock()
    real_sleep = asyncio.sleep

    async def sleep(seconds: float) -> None:
        clock.now += max(seconds, 0.0)
        await real_sleep(0)

    monkeypatch.setattr(file_channel.time, "monotonic", clock.monotonic)
    monkeypatch.setattr(file_channel.asyncio, "sleep", sleep)
    channel = FileChannel(b"\1" * FRAME_BYTES * 400, tail_seconds=0.0, real_time=True)

    async def consume() -> list[float]:
        handed: list[float] = []
        async for _frame in channel.frames():
            handed.append(clock.now)
            if len(handed) == 50:
                clock.now += 0.3  # the process stalls 300 ms: made up
            if len(handed) == 150:
                clock.now += 5.0  # far behind: the schedule starts again
        return handed

    handed = asyncio.new_event_loop().run_until_complete(consume())
    start = handed[0]
    # Frame n is due 20 ms after frame n-1 on one schedule: the 300 ms stall
    # is made up within 15 frames, and from then on the clocks agree.
    assert handed[100] == pytest.approx(start + 100 * 0.02)
    assert handed[149] == pytest.approx(start + 149 * 0.02)
    # After 5 s behind, the schedule counts from where it is now.
    assert handed[151] - handed[150] == pytest.approx(0.02)
    assert handed[160] == pytest.approx(handed[150] + 10 * 0.02)
