"""The sound-card channel against a real PulseAudio server with null sinks.

The bot's output device is the ALSA device ``bot_line`` (the null sink of that
name; the tests record its monitor). The caller's audio is played into the
``caller_line`` sink, whose monitor is the bot's input device.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import subprocess
import sys
import time
import wave
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bot import pcm
from bot.soundcard import (
    AudioDeviceError,
    CapturedFrame,
    SoundCardChannel,
    SoundCardSettings,
    find_device,
    list_devices,
    rescan_devices,
)
from tests.pulse import PulseServer, pulse_server_fixture

SPEECH_DIR = Path(__file__).resolve().parents[3] / "shared" / "speech"
STOP_LATENCY_REQUIREMENT_MS = 300

lines = pulse_server_fixture(on_change=rescan_devices)


def tone(frequency_hz: float, seconds: float, rate_hz: int = 16_000) -> np.ndarray:
    t = np.arange(round(seconds * rate_hz)) / rate_hz
    return np.round(np.sin(2 * np.pi * frequency_hz * t) * 0.5 * 32767).astype(np.int16)


def dominant_hz(samples: np.ndarray, rate_hz: int) -> float:
    spectrum = np.abs(np.fft.rfft(samples.astype(np.float64) * np.hanning(samples.size)))
    return float(np.argmax(spectrum) * rate_hz / samples.size)


def write_wav(path: Path, samples: np.ndarray, rate_hz: int) -> Path:
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate_hz)
        wav.writeframes(samples.astype("<i2").tobytes())
    return path


def loud_part(samples: np.ndarray, rate_hz: int, threshold_dbfs: float = -30.0) -> np.ndarray:
    """The stretch from the first to the last 10 ms window louder than the threshold."""
    window = rate_hz // 100
    loud = [
        i
        for i in range(0, samples.size - window + 1, window)
        if pcm.rms_dbfs(samples[i : i + window].astype("<i2").tobytes()) > threshold_dbfs
    ]
    return samples[loud[0] : loud[-1] + window] if loud else samples[:0]


def heard_and_over(samples: np.ndarray, rate_hz: int = pcm.SAMPLE_RATE_HZ) -> bool:
    """Something loud was heard, and the last 200 ms are quiet again."""
    tail = samples[-rate_hz // 5 :]
    return (
        samples.size > tail.size
        and bool(np.any(np.abs(samples) > 1000))
        and bool(np.all(np.abs(tail) < 1000))
    )


async def until(condition: Callable[[], bool], timeout_seconds: float = 15.0) -> None:
    """Waits (boundedly) for what the test needs next: PulseAudio may pause for a
    second or two now and then, so the tests wait for audio, not for time."""
    deadline = time.monotonic() + timeout_seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting for audio"
        await asyncio.sleep(0.02)


@contextlib.asynccontextmanager
async def running_channel(
    input_device: str = "caller_line", output_device: str = "bot_line", **settings: Any
) -> AsyncIterator[SoundCardChannel]:
    channel = SoundCardChannel(
        SoundCardSettings(input_device=input_device, output_device=output_device, **settings)
    )
    await channel.start()
    try:
        yield channel
    finally:
        await channel.close()


async def collect(channel: SoundCardChannel, sink: list[CapturedFrame]) -> None:
    async for frame in channel.captured_frames():
        sink.append(frame)


def samples_of(frames: list[CapturedFrame]) -> np.ndarray:
    return np.frombuffer(b"".join(frame.pcm for frame in frames), dtype="<i2")


async def caller_says(lines: PulseServer, wav: Path) -> None:
    await asyncio.to_thread(lines.play_wav, "caller_line", wav)


# Devices ------------------------------------------------------------------


def test_the_lines_are_listed_and_found_by_name_or_index(lines: PulseServer) -> None:
    devices = {device.name: device for device in list_devices()}
    assert {"caller_line", "bot_line"} <= devices.keys()
    bot_line = devices["bot_line"]
    assert bot_line.max_output_channels >= 2 and bot_line.max_input_channels >= 2
    assert bot_line.default_sample_rate_hz > 0
    assert find_device("BOT_LINE", "output") == bot_line
    assert find_device("caller", "input") == devices["caller_line"]
    assert find_device(bot_line.index, "output") == bot_line
    assert find_device(str(bot_line.index), "input") == bot_line
    assert find_device(None, "output").is_default_output


def test_an_unknown_device_is_refused_with_the_list_of_devices(lines: PulseServer) -> None:
    with pytest.raises(AudioDeviceError) as unknown:
        find_device("no such line", "input")
    assert unknown.value.code == "no_such_device"
    assert "caller_line" in str(unknown.value) and "bot_line" in str(unknown.value)
    with pytest.raises(AudioDeviceError) as ambiguous:
        find_device("_line", "output")
    assert ambiguous.value.code == "ambiguous_device"
    with pytest.raises(AudioDeviceError) as too_far:
        find_device(len(list_devices()) + 5, "output")
    assert too_far.value.code == "no_such_device"

    async def start_on_unknown_device() -> None:
        async with running_channel(input_device="no such line"):
            pass

    with pytest.raises(AudioDeviceError) as at_start:
        asyncio.run(start_on_unknown_device())
    assert at_start.value.code == "no_such_device"


def test_a_missing_portaudio_library_names_the_package_to_install(tmp_path: Path) -> None:
    """PortAudio cannot be removed from this machine, so a child process hides it
    by making ctypes' library lookup find nothing (a stand-in for its absence)."""
    script = (
        "import ctypes.util\n"
        "ctypes.util.find_library = lambda name: None\n"
        "from bot.soundcard import AudioDeviceError, list_devices\n"
        "try:\n"
        "    list_devices()\n"
        "except AudioDeviceError as error:\n"
        "    print(error.code, error)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert result.stdout.startswith("portaudio_missing ")
    assert "apt-get install libportaudio2" in result.stdout


# The bot speaking ---------------------------------------------------------


@pytest.mark.parametrize(("rate_hz", "channels"), [(0, 0), (8_000, 2), (44_100, 2), (48_000, 1)])
def test_played_audio_reaches_the_output_line(
    lines: PulseServer, rate_hz: int, channels: int
) -> None:
    async def scenario() -> tuple[np.ndarray, SoundCardChannel]:
        async with running_channel(sample_rate_hz=rate_hz, channels=channels) as channel:
            recording = lines.start_recording("bot_line.monitor", rate_hz=16_000)
            await channel.play(tone(1000, 1.0).tobytes())
            await until(lambda: heard_and_over(recording.samples_so_far()))
            return recording.stop().samples, channel

    heard, channel = asyncio.run(scenario())
    assert channel.output_rate_hz == (rate_hz or channel.output_device.default_sample_rate_hz)  # type: ignore[union-attr]
    assert channel.output_channels == (channels or 2)
    played = loud_part(heard, 16_000)
    assert 0.9 <= played.size / 16_000 <= 1.1
    assert abs(dominant_hz(played, 16_000) - 1000) < 5
    assert pcm.rms_dbfs(played.tobytes()) > -12  # a 0.5 sine is -9 dBFS


def test_a_line_added_later_is_found_after_a_rescan(lines: PulseServer) -> None:
    module_id = lines.load_null_sink("extra_line")
    try:
        rescan_devices()
        assert find_device("extra_line", "output").name == "extra_line"
        with wave.open(io.BytesIO(lines.record("extra_line.monitor", 0.3, 16_000)), "rb") as wav:
            assert (wav.getframerate(), wav.getnchannels(), wav.getsampwidth()) == (16_000, 1, 2)
            quiet = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2")
        assert quiet.size > 0 and not np.any(quiet)  # nothing plays there yet

        async def scenario() -> np.ndarray:
            async with running_channel(output_device="extra_line") as channel:
                recording = lines.start_recording("extra_line.monitor", rate_hz=16_000)
                await channel.play(tone(1000, 0.5).tobytes())
                await until(lambda: heard_and_over(recording.samples_so_far()))
                return recording.stop().samples

        heard = asyncio.run(scenario())
    finally:
        lines.unload(module_id)
        rescan_devices()
    played = loud_part(heard, 16_000)
    assert abs(played.size / 16_000 - 0.5) < 0.05
    assert abs(dominant_hz(played, 16_000) - 1000) < 5


def test_played_speech_arrives_unchanged(lines: PulseServer) -> None:
    source = SPEECH_DIR / "goforward_16k.wav"
    if not source.is_file():
        pytest.skip(f"real speech recordings are not at {SPEECH_DIR}")
    with wave.open(str(source), "rb") as wav:
        speech = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2")

    async def scenario() -> np.ndarray:
        async with running_channel() as channel:
            recording = lines.start_recording("bot_line.monitor", rate_hz=16_000)
            await channel.play(speech.tobytes())
            await asyncio.sleep(0.5)
            return recording.stop().samples

    heard = asyncio.run(scenario()).astype(np.float64)
    said = speech.astype(np.float64)
    correlation = np.correlate(heard, said, mode="valid")
    best = int(np.argmax(np.abs(correlation)))
    aligned = heard[best : best + said.size]
    similarity = float(np.dot(aligned, said) / (np.linalg.norm(aligned) * np.linalg.norm(said)))
    assert similarity > 0.95


def test_queued_plays_come_out_in_order_and_each_waits_for_its_audio(
    lines: PulseServer,
) -> None:
    async def scenario() -> tuple[np.ndarray, list[str]]:
        finished: list[str] = []

        async def say(name: str, frequency_hz: float) -> None:
            played_out = await channel.play(tone(frequency_hz, 0.5).tobytes())
            finished.append(f"{name} {played_out}")

        async with running_channel() as channel:
            recording = lines.start_recording("bot_line.monitor", rate_hz=16_000)
            await asyncio.gather(say("low", 500), say("high", 1500))
            finished.append(f"playing={channel.is_playing}")
            await until(lambda: heard_and_over(recording.samples_so_far()))
            return recording.stop().samples, finished

    heard, finished = asyncio.run(scenario())
    assert finished == ["low True", "high True", "playing=False"]
    played = loud_part(heard, 16_000)
    half = played.size // 2
    assert abs(dominant_hz(played[: half - 800], 16_000) - 500) < 10
    assert abs(dominant_hz(played[half + 800 :], 16_000) - 1500) < 10


def test_stop_playback_silences_the_line(lines: PulseServer, record_property: Any) -> None:
    async def scenario() -> tuple[float, Any, list[bool]]:
        async with running_channel() as channel:
            recording = lines.start_recording("bot_line.monitor", rate_hz=16_000)
            playing = asyncio.create_task(channel.play(tone(1000, 8.0).tobytes()))
            await until(lambda: np.sum(np.abs(recording.samples_so_far()) > 1000) > 16_000)
            stopped_at = time.monotonic()
            channel.stop_playback()
            outcomes = [await asyncio.wait_for(playing, timeout=5), channel.is_playing]
            await asyncio.sleep(1.0)
            # The next turn plays as usual.
            outcomes.append(await channel.play(tone(500, 0.5).tobytes()))
            await until(lambda: heard_and_over(recording.samples_so_far()))
            return stopped_at, recording.stop(), outcomes

    stopped_at, audio, outcomes = asyncio.run(scenario())
    assert outcomes == [False, False, True]  # cut, not playing, then played out
    loud = np.abs(audio.samples) > 1000
    tone_end = int(np.flatnonzero(loud[: int(np.flatnonzero(loud)[-1]) - 16_000 // 2])[-1])
    first_turn = loud_part(audio.samples[: tone_end + 1], 16_000)
    assert 0.5 < first_turn.size / 16_000 < 4.0, "stop_playback() did not cut the tone"
    assert abs(dominant_hz(first_turn, 16_000) - 1000) < 5
    next_turn = loud_part(audio.samples[tone_end + 16_000 // 2 :], 16_000)
    assert abs(next_turn.size / 16_000 - 0.5) < 0.05
    assert abs(dominant_hz(next_turn, 16_000) - 500) < 5
    # An upper bound: it includes the recorder's own buffering (10 ms asked).
    latency_ms = (audio.arrival_time(tone_end) - stopped_at) * 1000
    record_property("stop_latency_ms", round(latency_ms, 1))
    print(f"stop_playback() to silence on the line: {latency_ms:.0f} ms")
    assert latency_ms < STOP_LATENCY_REQUIREMENT_MS


def test_cancelling_play_stops_the_audio_and_closing_ends_the_channel(
    lines: PulseServer,
) -> None:
    async def scenario() -> tuple[np.ndarray, bool, SoundCardChannel]:
        async with running_channel() as channel:
            recording = lines.start_recording("bot_line.monitor", rate_hz=16_000)
            await asyncio.wait_for(channel.play(b""), timeout=5)  # nothing to wait for
            playing = asyncio.create_task(channel.play(tone(1000, 8.0).tobytes()))
            await asyncio.sleep(1.0)
            playing.cancel()
            with pytest.raises(asyncio.CancelledError):
                await playing
            was_playing = channel.is_playing
            await asyncio.sleep(1.0)
            heard = recording.stop().samples
        return heard, was_playing, channel

    heard, was_playing, channel = asyncio.run(scenario())
    assert not was_playing
    assert 0.5 < loud_part(heard, 16_000).size / 16_000 < 2.0

    async def use_after_close() -> None:
        await channel.play(tone(1000, 0.1).tobytes())

    with pytest.raises(AudioDeviceError) as closed:
        asyncio.run(use_after_close())
    assert closed.value.code == "closed"


# The caller speaking --------------------------------------------------------


@pytest.mark.parametrize(
    ("rate_hz", "channels"), [(0, 0), (8_000, 2), (44_100, 2), (48_000, 1), (16_000, 1)]
)
def test_caller_audio_arrives_as_16k_frames(
    lines: PulseServer, tmp_path: Path, rate_hz: int, channels: int
) -> None:
    caller = write_wav(tmp_path / "caller.wav", tone(440, 1.0, 44_100), 44_100)

    async def scenario() -> tuple[list[CapturedFrame], SoundCardChannel]:
        frames: list[CapturedFrame] = []
        async with running_channel(sample_rate_hz=rate_hz, channels=channels) as channel:
            listening = asyncio.create_task(collect(channel, frames))
            await caller_says(lines, caller)
            await until(lambda: heard_and_over(samples_of(frames)))
        await asyncio.wait_for(listening, timeout=5)  # frames() ends when the channel closes
        return frames, channel

    frames, channel = asyncio.run(scenario())
    assert channel.input_rate_hz == (rate_hz or channel.input_device.default_sample_rate_hz)  # type: ignore[union-attr]
    assert all(len(frame.pcm) == pcm.FRAME_BYTES for frame in frames)
    heard = loud_part(samples_of(frames), pcm.SAMPLE_RATE_HZ)
    assert 0.95 <= heard.size / pcm.SAMPLE_RATE_HZ <= 1.05
    assert abs(dominant_hz(heard, pcm.SAMPLE_RATE_HZ) - 440) < 5
    # Capture times step by 20 ms, give or take the easing towards the callbacks' clock.
    steps = np.diff([frame.capture_time_seconds for frame in frames])
    assert np.all((steps > 0) & (steps < 0.04))
    assert abs(float(np.median(steps)) - 0.02) < 0.002
    assert channel.input_blocks_dropped == 0


def test_a_lagging_listener_loses_no_audio(lines: PulseServer, tmp_path: Path) -> None:
    caller = write_wav(tmp_path / "caller.wav", tone(440, 1.0, 44_100), 44_100)

    async def scenario() -> tuple[list[CapturedFrame], SoundCardChannel]:
        frames: list[CapturedFrame] = []
        async with running_channel() as channel:
            await caller_says(lines, caller)  # nobody reads frames meanwhile
            await asyncio.sleep(1.0)
            listening = asyncio.create_task(collect(channel, frames))
            await until(lambda: heard_and_over(samples_of(frames)))
        await asyncio.wait_for(listening, timeout=5)
        return frames, channel

    frames, channel = asyncio.run(scenario())
    heard = loud_part(samples_of(frames), pcm.SAMPLE_RATE_HZ)
    assert 0.95 <= heard.size / pcm.SAMPLE_RATE_HZ <= 1.05
    assert channel.input_overflows == 0 and channel.input_blocks_dropped == 0


def test_audio_the_listener_cannot_keep_is_counted(lines: PulseServer) -> None:
    async def scenario() -> SoundCardChannel:
        async with running_channel(input_queue_seconds=0.2) as channel:
            await asyncio.sleep(1.0)  # nobody reads frames
        return channel

    channel = asyncio.run(scenario())
    assert channel.input_blocks_dropped > 0


def test_the_echo_reference_lines_up_with_the_captured_frames(
    lines: PulseServer, record_property: Any
) -> None:
    """The bot hears its own line: each captured frame should match the
    reference of what was played at that frame's capture time."""
    rng = np.random.default_rng(7)
    noise = (rng.standard_normal(pcm.SAMPLE_RATE_HZ * 2) * 6000).astype(np.int16)

    async def scenario() -> tuple[np.ndarray, np.ndarray]:
        heard: list[bytes] = []
        references: list[bytes] = []

        async def listen() -> None:
            async for frame in channel.frames():  # as the call session reads them
                heard.append(frame)
                references.append(channel.played_frame())

        async with running_channel(input_device="bot_line") as channel:
            listening = asyncio.create_task(listen())
            await channel.play(noise.tobytes())
            await until(lambda: heard_and_over(np.frombuffer(b"".join(heard), "<i2")))
        await asyncio.wait_for(listening, timeout=5)
        return (
            np.frombuffer(b"".join(heard), "<i2").astype(np.float64),
            np.frombuffer(b"".join(references), "<i2").astype(np.float64),
        )

    heard, reference = asyncio.run(scenario())
    assert np.abs(reference).max() > 0, "no reference was kept"
    max_lag = pcm.SAMPLE_RATE_HZ // 5  # 200 ms either way
    compared = slice(max_lag, reference.size - max_lag)
    lags = range(-max_lag, max_lag + 1, 4)
    scores = [
        float(np.dot(heard[compared.start + lag : compared.stop + lag], reference[compared]))
        for lag in lags
    ]
    best = int(np.argmax(scores))
    lag_ms = lags[best] * 1000 / pcm.SAMPLE_RATE_HZ
    record_property("echo_reference_lag_ms", lag_ms)
    print(f"captured frames lag their echo reference by {lag_ms:.1f} ms")
    assert abs(lag_ms) <= 100


# Losing the device -----------------------------------------------------------


@pytest.fixture
def lone_line(lines: PulseServer) -> Iterator[PulseServer]:
    """A second server whose only sink is ``lone_line``: PulseAudio moves streams
    to another sink when theirs goes away, so with none left they end instead."""
    with PulseServer(["lone_line"]) as server:
        rescan_devices()
        yield server
    rescan_devices()  # back to the module's server, whose environment is restored


def test_unloading_the_sink_ends_frames_with_device_lost(lone_line: PulseServer) -> None:
    async def scenario() -> tuple[int, AudioDeviceError, AudioDeviceError]:
        frames: list[CapturedFrame] = []
        async with running_channel("lone_line", "lone_line") as channel:
            listening = asyncio.create_task(collect(channel, frames))
            while len(frames) < 10:
                await asyncio.sleep(0.02)
            speaking = asyncio.create_task(channel.play(tone(1000, 10.0).tobytes()))
            await asyncio.sleep(0.2)
            lone_line.unload(lone_line.module_id("lone_line"))
            with pytest.raises(AudioDeviceError) as from_frames:
                await asyncio.wait_for(listening, timeout=10)
            with pytest.raises(AudioDeviceError) as from_play:
                await asyncio.wait_for(speaking, timeout=10)
            return len(frames), from_frames.value, from_play.value

    frame_count, from_frames, from_play = asyncio.run(scenario())
    assert frame_count >= 10
    assert from_frames.code == "device_lost"
    assert from_play.code == "device_lost"


def test_a_hung_sound_server_ends_frames_with_device_lost(lone_line: PulseServer) -> None:
    async def scenario() -> tuple[AudioDeviceError, float]:
        frames: list[CapturedFrame] = []
        async with running_channel("lone_line", "lone_line", device_stall_seconds=1.0) as channel:
            listening = asyncio.create_task(collect(channel, frames))
            while len(frames) < 10:
                await asyncio.sleep(0.02)
            lone_line.freeze()
            frozen_at = time.monotonic()
            try:
                with pytest.raises(AudioDeviceError) as lost:
                    await asyncio.wait_for(listening, timeout=10)
                noticed_after = time.monotonic() - frozen_at
            finally:
                lone_line.thaw()
        return lost.value, noticed_after

    lost, noticed_after = asyncio.run(scenario())
    print(f"a hung server was noticed after {noticed_after:.1f} s")
    assert lost.code == "device_lost"
