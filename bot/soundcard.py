"""The sound-card channel: a call's audio in and out through PortAudio (sounddevice).

PortAudio calls our callbacks on its own threads. The input callback only copies
the block and hands it to the event loop; the output callback only copies a
ready-made block (already in the device's rate, channels and format) from a
queue, or writes silence. Conversion, framing, counting and logging happen on
the event loop. sounddevice is imported on first use: importing it starts
PortAudio, which scans the machine's devices.

Times (frame capture times, the echo reference) are PortAudio's stream clock at
each callback, less (input) or plus (output) the stream's latency. PortAudio's
own ADC/DAC timestamps are not used: through PulseAudio's ALSA plugin they were
seen 0.6 s off for the first seconds of a stream. Each direction keeps a sample
clock that follows the callback times slowly, so their jitter averages out, and
jumps only across a real gap.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import logging
import math
import threading
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace
from types import ModuleType
from typing import Any, Literal, TypeVar

import numpy as np
import soxr

from bot import pcm

log = logging.getLogger(__name__)

DeviceKind = Literal["input", "output"]
_T = TypeVar("_T")
_CLOSE_TIMEOUT_SECONDS = 5.0
_CLOCK_SLEW = 0.1  # how fast a sample clock may move towards the callbacks' times
_CLOCK_RESYNC_SECONDS = 0.5  # a disagreement this big is a gap: jump


class AudioDeviceError(RuntimeError):
    """A sound device that cannot be found, opened or kept; ``code`` says which."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class SoundCardSettings:
    """Which devices a sound-card call uses, and how. 0 or "" mean the device's own."""

    input_device: str = ""  # "" = system default, digits = PortAudio index, else name part
    output_device: str = ""
    sample_rate_hz: int = 0  # 0 = each device's default rate
    channels: int = 0  # 0 = min(device maximum, 2)
    latency_seconds: float = 0.05  # device buffer; 0 = PortAudio's "low" for the device
    output_block_ms: int = 10  # stop_playback() takes effect within one block
    input_block_ms: int = 20
    start_timeout_seconds: float = 5.0
    device_stall_seconds: float = 3.0  # no callbacks for this long = device lost
    input_queue_seconds: float = 30.0  # audio kept while the consumer lags
    reference_history_seconds: float = 10.0  # played audio kept for the echo reference


@dataclass(frozen=True)
class DeviceInfo:
    index: int
    name: str
    host_api: str
    max_input_channels: int
    max_output_channels: int
    default_sample_rate_hz: int
    is_default_input: bool
    is_default_output: bool


@dataclass(frozen=True)
class CapturedFrame:
    """20 ms of 16 kHz mono int16 audio and the stream-clock time of its first sample."""

    pcm: bytes
    capture_time_seconds: float


def _sounddevice() -> ModuleType:
    try:
        import sounddevice
    except OSError as exc:
        raise AudioDeviceError(
            "portaudio_missing",
            f"the PortAudio library cannot be loaded ({exc}): apt-get install libportaudio2",
        ) from exc
    return sounddevice


def rescan_devices() -> None:
    """Makes PortAudio scan devices again (it scans once, when it starts). This
    restarts PortAudio, closing every open stream: only call it with no channel open."""
    sd = _sounddevice()
    sd._terminate()
    sd._initialize()


def list_devices() -> list[DeviceInfo]:
    sd = _sounddevice()
    default_input, default_output = sd.default.device
    host_apis = sd.query_hostapis()
    return [
        DeviceInfo(
            index=index,
            name=str(info["name"]),
            host_api=str(host_apis[info["hostapi"]]["name"]),
            max_input_channels=int(info["max_input_channels"]),
            max_output_channels=int(info["max_output_channels"]),
            default_sample_rate_hz=round(info["default_samplerate"]),
            is_default_input=index == default_input,
            is_default_output=index == default_output,
        )
        for index, info in enumerate(sd.query_devices())
    ]


def find_device(spec: str | int | None, kind: DeviceKind) -> DeviceInfo:
    """A device by index, by (case-insensitive) name or part of one, or the default."""
    devices = [d for d in list_devices() if getattr(d, f"max_{kind}_channels") > 0]
    text = "" if spec is None else str(spec).strip()
    if not text:
        found = [d for d in devices if getattr(d, f"is_default_{kind}")]
    elif text.isdigit():
        found = [d for d in devices if d.index == int(text)]
    else:
        found = [d for d in devices if d.name.lower() == text.lower()] or [
            d for d in devices if text.lower() in d.name.lower()
        ]
    listing = "; ".join(f"[{d.index}] {d.name}" for d in (found if found else devices))
    if len(found) > 1:
        raise AudioDeviceError("ambiguous_device", f"{text!r} matches {kind} devices {listing}")
    if not found:
        wanted = f"{text!r}" if text else "a default"
        raise AudioDeviceError(
            "no_such_device", f"no {kind} device {wanted}; {kind} devices: {listing or 'none'}"
        )
    return found[0]


class _SampleClock:
    """Stream time of a position in a sample stream (seconds of audio since it
    began). It follows the times it is given at most _CLOCK_SLEW as fast as the
    audio itself runs, so their jitter averages out, and jumps only across gaps."""

    def __init__(self) -> None:
        self._offset: float | None = None
        self._position = 0.0

    def update(self, position: float, observed_time: float) -> float:
        if self._offset is None:
            self._offset = observed_time - position
        error = observed_time - (self._offset + position)
        allowed = _CLOCK_SLEW * max(position - self._position, 0.0)
        self._offset += (
            error if abs(error) > _CLOCK_RESYNC_SECONDS else min(max(error, -allowed), allowed)
        )
        self._position = position
        return self._offset + position

    def time_at(self, position: float) -> float:
        return (self._offset or 0.0) + position


class _InputFramer:
    """Device blocks to timed 20 ms frames of 16 kHz mono int16."""

    def __init__(self, rate_hz: int, channels: int) -> None:
        self._rate_hz, self._channels = rate_hz, channels
        self._resampler = (
            None
            if rate_hz == pcm.SAMPLE_RATE_HZ
            else soxr.ResampleStream(rate_hz, pcm.SAMPLE_RATE_HZ, 1, dtype="float32")
        )
        self._pending = np.zeros(0, dtype=np.float32)
        self._clock = _SampleClock()
        self._samples_in = 0

    def push(self, block: bytes, block_time: float) -> list[CapturedFrame]:
        samples = np.frombuffer(block, dtype=np.float32).reshape(-1, self._channels)
        mono = np.ascontiguousarray(samples.mean(axis=1), dtype=np.float32)
        start_time = self._clock.update(self._samples_in / self._rate_hz, block_time)
        self._samples_in += mono.size
        delay = 0.0
        if self._resampler is not None:
            mono, delay = self._resampler.resample_chunk(mono), self._resampler.delay()
        self._pending = np.concatenate((self._pending, mono))
        end_time = start_time + samples.shape[0] / self._rate_hz
        first_time = end_time - (delay + self._pending.size) / pcm.SAMPLE_RATE_HZ
        count = self._pending.size // pcm.FRAME_SAMPLES
        ready = pcm.to_int16(self._pending[: count * pcm.FRAME_SAMPLES]).tobytes()
        self._pending = self._pending[count * pcm.FRAME_SAMPLES :]
        return [
            CapturedFrame(
                ready[i * pcm.FRAME_BYTES : (i + 1) * pcm.FRAME_BYTES],
                first_time + i * pcm.FRAME_MS / 1000,
            )
            for i in range(count)
        ]


@dataclass(frozen=True)
class _OutputBlock:
    device_bytes: bytes  # one output block in the stream's format
    reference: bytes  # the same stretch as 16 kHz mono int16
    finishes: asyncio.Future[bool] | None = None  # on the last block of a play()


async def _in_daemon_thread(work: Callable[[], _T], timeout_seconds: float) -> _T:
    """Runs blocking PortAudio work in a thread that cannot hold up the process's exit."""
    outcome: concurrent.futures.Future[_T] = concurrent.futures.Future()

    def run() -> None:
        try:
            outcome.set_result(work())
        except BaseException as exc:  # handed to the awaiting task
            outcome.set_exception(exc)

    threading.Thread(target=run, name="portaudio-control", daemon=True).start()
    return await asyncio.wait_for(asyncio.wrap_future(outcome), timeout_seconds)


class SoundCardChannel:
    """One call's audio through a sound card: 20 ms frames in, 16 kHz PCM out.

    On one asyncio loop: ``await start()``; iterate ``frames()`` (or
    ``captured_frames()``) in one task and ``await play(...)`` in another;
    ``stop_playback()`` for barge-in; ``await close()`` at the end. Counters:
    ``input_overflows`` (blocks PortAudio flagged as following lost samples),
    ``output_underflows`` (output blocks that came too late: a gap was heard),
    ``input_blocks_dropped`` (the consumer fell input_queue_seconds behind).
    """

    name = "soundcard"

    def __init__(self, settings: SoundCardSettings) -> None:
        if min(settings.sample_rate_hz, settings.channels, settings.latency_seconds) < 0:
            raise AudioDeviceError("invalid_settings", f"negative rate or channels: {settings}")
        if min(settings.output_block_ms, settings.input_block_ms) <= 0:
            raise AudioDeviceError("invalid_settings", f"blocks must be longer: {settings}")
        self._settings = settings
        self.input_device: DeviceInfo | None = None
        self.output_device: DeviceInfo | None = None
        self.input_rate_hz = self.output_rate_hz = self.input_channels = self.output_channels = 0
        self.input_overflows = self.output_underflows = self.input_blocks_dropped = 0
        self._streams: list[Any] = []  # input, output
        self._loop: asyncio.AbstractEventLoop | None = None
        self._sd: ModuleType | None = None
        self._input_blocks: asyncio.Queue[tuple[bytes, float] | None] = asyncio.Queue()
        self._output_blocks: collections.deque[_OutputBlock] = collections.deque()
        # (output callback number, its time, reference played or None for silence)
        self._played: collections.deque[tuple[int, float, bytes | None]] = collections.deque()
        self._output_clock = _SampleClock()
        self._block_frames = 0  # output block, in device frames
        self._input_latency_seconds = self._output_latency_seconds = 0.0
        self._silence = b""
        self._playbacks: set[asyncio.Future[bool]] = set()
        self._stop_generation = 0
        self._queueing = asyncio.Lock()  # keeps concurrent play() calls in call order
        self._input_blocks_received = self._output_callbacks = 0
        self._failure: AudioDeviceError | None = None
        self._closing = False
        self._watchdog: asyncio.Task[None] | None = None
        self._started_at = 0.0  # loop time
        self._last_frame_time: float | None = None  # capture time of the latest frame

    @property
    def is_playing(self) -> bool:
        return any(not playback.done() for playback in self._playbacks)

    @property
    def far_end_gone(self) -> bool:
        """A sound card's caller is in the room: the call ends when its frames do."""
        return False

    @property
    def _block_seconds(self) -> float:
        return self._block_frames / self.output_rate_hz

    async def start(self) -> None:
        """Opens the devices; returns once both directions are running."""
        if self._loop is not None:
            raise AudioDeviceError("already_started", "the channel was already started")
        self._loop = asyncio.get_running_loop()
        self._sd = _sounddevice()
        settings = self._settings
        self.input_device = find_device(settings.input_device, "input")
        self.output_device = find_device(settings.output_device, "output")
        self.input_rate_hz = settings.sample_rate_hz or self.input_device.default_sample_rate_hz
        self.output_rate_hz = settings.sample_rate_hz or self.output_device.default_sample_rate_hz
        self.input_channels = settings.channels or min(self.input_device.max_input_channels, 2)
        self.output_channels = settings.channels or min(self.output_device.max_output_channels, 2)
        self._block_frames = max(1, round(self.output_rate_hz * settings.output_block_ms / 1000))
        self._silence = bytes(self._block_frames * self.output_channels * 4)
        history_blocks = math.ceil(settings.reference_history_seconds / self._block_seconds)
        self._played = collections.deque(maxlen=max(1, history_blocks))
        try:
            await _in_daemon_thread(self._open_streams, settings.start_timeout_seconds)
            await asyncio.wait_for(self._until_running(), settings.start_timeout_seconds)
        except (asyncio.TimeoutError, AudioDeviceError) as exc:
            await self.close()
            if isinstance(exc, AudioDeviceError):
                raise
            message = f"{self._describe()} gave no audio in {settings.start_timeout_seconds} s"
            raise AudioDeviceError("start_failed", message) from None
        self._watchdog = asyncio.create_task(self._watch_callbacks(), name="soundcard-watchdog")
        self._started_at = self._loop.time()
        log.info("sound card started: %s", self._describe())

    def _describe(self) -> str:
        i, o = self.input_device, self.output_device
        assert i is not None and o is not None
        return (
            f"input [{i.index}] {i.name} ({self.input_rate_hz} Hz, {self.input_channels} ch), "
            f"output [{o.index}] {o.name} ({self.output_rate_hz} Hz, {self.output_channels} ch)"
        )

    def _open_streams(self) -> None:
        sd = self._sd
        assert sd is not None and self.input_device is not None and self.output_device is not None
        common = {"dtype": "float32", "latency": self._settings.latency_seconds or "low"}
        try:
            self._streams.append(
                sd.RawInputStream(
                    device=self.input_device.index,
                    channels=self.input_channels,
                    samplerate=self.input_rate_hz,
                    blocksize=round(self.input_rate_hz * self._settings.input_block_ms / 1000),
                    callback=self._input_callback,
                    finished_callback=self._finished_callback("input"),
                    **common,
                )
            )
            self._streams.append(
                sd.RawOutputStream(
                    device=self.output_device.index,
                    channels=self.output_channels,
                    samplerate=self.output_rate_hz,
                    blocksize=self._block_frames,
                    callback=self._output_callback,
                    finished_callback=self._finished_callback("output"),
                    **common,
                )
            )
            for stream in self._streams:
                stream.start()
            self._input_latency_seconds = float(self._streams[0].latency)
            self._output_latency_seconds = float(self._streams[1].latency)
        except (sd.PortAudioError, ValueError) as exc:  # ValueError: settings it refuses
            raise AudioDeviceError("open_failed", f"{self._describe()}: {exc}") from exc

    async def _until_running(self) -> None:
        """Waits for input, and for output callbacks beyond PortAudio's priming (a
        PulseAudio sink that was idle can hold a new stream for up to two seconds)."""
        priming_blocks = math.ceil(self._output_latency_seconds / self._block_seconds)
        while self._input_blocks_received == 0 or self._output_callbacks <= priming_blocks + 4:
            self._raise_if_failed()
            await asyncio.sleep(self._block_seconds)

    async def _watch_callbacks(self) -> None:
        """Declares the device lost when either direction stops calling back."""
        assert self._loop is not None
        stall = self._settings.device_stall_seconds
        seen, changed_at = [-1, -1], [self._loop.time()] * 2
        while self._failure is None and not self._closing:
            for direction, count in enumerate(
                (self._input_blocks_received, self._output_callbacks)
            ):
                if count != seen[direction]:
                    seen[direction], changed_at[direction] = count, self._loop.time()
                elif self._loop.time() - changed_at[direction] > stall:
                    name = ("input", "output")[direction]
                    self._lose_device(f"no {name} callbacks for {stall} s")
            await asyncio.sleep(min(0.25, stall / 4))

    def _finished_callback(self, direction: str) -> Callable[[], None]:
        def finished() -> None:  # on PortAudio's thread
            if self._loop is not None and not self._closing:
                with contextlib.suppress(RuntimeError):  # the loop has closed
                    self._loop.call_soon_threadsafe(self._lose_device, f"{direction} stream ended")

        return finished

    def _lose_device(self, reason: str) -> None:
        if self._failure is not None or self._closing:
            return
        self._failure = AudioDeviceError("device_lost", f"sound device lost: {reason}")
        log.error("%s (%s)", self._failure, self._describe())
        self._output_blocks.clear()
        for playback in self._playbacks:
            if not playback.done():
                playback.set_exception(AudioDeviceError("device_lost", str(self._failure)))
        self._input_blocks.put_nowait(None)

    def _raise_if_failed(self) -> None:
        if self._failure is not None:
            raise AudioDeviceError(self._failure.code, str(self._failure))

    def _require_running(self) -> None:
        if self._loop is None:
            raise AudioDeviceError("not_started", "start() the channel first")
        if self._closing:
            raise AudioDeviceError("closed", "the channel is closed")
        self._raise_if_failed()

    async def close(self) -> None:
        """Ends playback (waiting play() calls return), frames() and both streams."""
        if self._closing:
            return
        self._closing = True
        if self._watchdog is not None:
            self._watchdog.cancel()
        self.stop_playback()
        self._input_blocks.put_nowait(None)
        streams, self._streams = self._streams, []

        def close_streams() -> None:
            for stream in streams:
                stream.abort(ignore_errors=True)
                stream.close(ignore_errors=True)

        try:
            await _in_daemon_thread(close_streams, _CLOSE_TIMEOUT_SECONDS)
        except asyncio.TimeoutError:
            log.error("the sound device did not close within %s s", _CLOSE_TIMEOUT_SECONDS)

    # On PortAudio's threads: copy and hand over, nothing else.

    def _input_callback(self, indata: Any, frames: int, time: Any, status: Any) -> None:
        assert self._loop is not None and self._sd is not None
        try:
            self._loop.call_soon_threadsafe(
                self._on_input_block,
                bytes(indata),
                time.currentTime,
                status.input_overflow,
            )
        except RuntimeError:  # the loop has closed: nobody listens any more
            raise self._sd.CallbackAbort from None

    def _output_callback(self, outdata: Any, frames: int, time: Any, status: Any) -> None:
        number, self._output_callbacks = self._output_callbacks, self._output_callbacks + 1
        if status.output_underflow:
            self.output_underflows += 1
        now = time.currentTime
        try:
            block = self._output_blocks.popleft()
        except IndexError:
            outdata[:] = self._silence
            self._played.append((number, now, None))
            return
        outdata[:] = block.device_bytes
        self._played.append((number, now, block.reference))
        if block.finishes is not None and self._loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop has closed
                self._loop.call_soon_threadsafe(self._on_last_block_sent, block.finishes)

    # On the event loop.

    def _on_input_block(self, data: bytes, callback_time: float, overflowed: bool) -> None:
        if self._closing or self._failure is not None:
            return
        self._input_blocks_received += 1
        if overflowed:
            self.input_overflows += 1
            _log_now_and_then(self.input_overflows, "input overflow: samples were lost")
        limit = self._settings.input_queue_seconds * 1000 / self._settings.input_block_ms
        if self._input_blocks.qsize() >= limit:
            self.input_blocks_dropped += 1
            _log_now_and_then(self.input_blocks_dropped, "input dropped: the consumer lags")
            return
        # The block's first sample reached the converter a latency before its callback.
        frames = len(data) // (4 * self.input_channels)
        captured_at = callback_time - self._input_latency_seconds - frames / self.input_rate_hz
        self._input_blocks.put_nowait((data, captured_at))

    async def captured_frames(self) -> AsyncIterator[CapturedFrame]:
        """The caller's audio as 20 ms frames with capture times; one consumer only.

        Ends when the channel closes; raises AudioDeviceError(code="device_lost")
        when the device goes away or stops delivering audio."""
        self._require_running()
        framer = _InputFramer(self.input_rate_hz, self.input_channels)
        while (item := await self._input_blocks.get()) is not None:
            for frame in framer.push(*item):
                self._last_frame_time = frame.capture_time_seconds
                yield frame
        self._input_blocks.put_nowait(None)  # for any later reader too
        if not self._closing:
            self._raise_if_failed()

    async def frames(self) -> AsyncIterator[bytes]:
        """The caller's audio as 20 ms frames of 16 kHz mono int16 PCM."""
        async for frame in self.captured_frames():
            yield frame.pcm

    async def play(self, pcm16k: bytes) -> bool:
        """Plays 16 kHz mono int16 PCM after anything already queued.

        Returns True once its last sample has left the device, False at once
        when stop_playback() or close() cuts it; cancelling the call stops
        playback. Raises AudioDeviceError(code="device_lost") if the device goes."""
        self._require_running()
        if len(pcm16k) % 2:
            raise ValueError("16-bit PCM must have an even number of bytes")
        assert self._loop is not None
        generation = self._stop_generation
        async with self._queueing:
            blocks = await self._loop.run_in_executor(None, self._output_blocks_for, pcm16k)
            if not blocks:
                return True
            if generation != self._stop_generation or self._closing:
                return False  # stopped while being converted
            self._raise_if_failed()
            finished: asyncio.Future[bool] = self._loop.create_future()
            blocks[-1] = replace(blocks[-1], finishes=finished)
            self._playbacks.add(finished)
            self._output_blocks.extend(blocks)
        try:
            return await finished
        except asyncio.CancelledError:
            self.stop_playback()
            raise
        finally:
            self._playbacks.discard(finished)

    def _output_blocks_for(self, pcm16k: bytes) -> list[_OutputBlock]:
        samples = np.frombuffer(pcm16k, dtype="<i2")
        device = pcm.from_mono_16k(samples, self.output_rate_hz, self.output_channels)
        size = self._block_frames
        padded = np.zeros((math.ceil(len(device) / size) * size, device.shape[1]), np.float32)
        padded[: len(device)] = device
        ratio = pcm.SAMPLE_RATE_HZ / self.output_rate_hz
        return [
            _OutputBlock(
                padded[start : start + size].tobytes(),
                samples[round(start * ratio) : round((start + size) * ratio)].tobytes(),
            )
            for start in range(0, len(padded), size)
        ]

    def _on_last_block_sent(self, finished: asyncio.Future[bool]) -> None:
        """Settles a play() once its last block has gone through the device's buffer."""
        assert self._loop is not None
        delay_seconds = self._output_latency_seconds + self._block_seconds
        self._loop.call_later(delay_seconds, _settle, finished, True)

    def stop_playback(self) -> None:
        """Barge-in: drops all queued audio, so the next output block is silence.
        What the device has already buffered (its latency) still plays out."""
        self._stop_generation += 1
        self._output_blocks.clear()
        for playback in self._playbacks:
            _settle(playback, False)

    def now_ms(self) -> int:
        """Milliseconds since the channel started."""
        return 0 if self._loop is None else round((self._loop.time() - self._started_at) * 1000)

    def played_frame(self) -> bytes:
        """The echo reference for the frame frames() yielded last (silence before any)."""
        if self._last_frame_time is None:
            return bytes(pcm.FRAME_BYTES)
        return self.playback_reference(self._last_frame_time)

    def playback_reference(
        self, capture_time_seconds: float, sample_count: int = pcm.FRAME_SAMPLES
    ) -> bytes:
        """What the output sent to the device from ``capture_time_seconds`` on, as
        16 kHz mono int16 (zeros where nothing played): the echo reference for
        the captured frame of that time."""
        played = self._played.copy()
        if played:  # the newest callback moves the clock (by at most _CLOCK_SLEW)
            number, callback_time, _ = played[-1]
            dac_time = callback_time + self._output_latency_seconds
            self._output_clock.update(number * self._block_seconds, dac_time)
        reference = np.zeros(sample_count, dtype=np.int16)
        end_time = capture_time_seconds + sample_count / pcm.SAMPLE_RATE_HZ
        for number, _, block in reversed(played):
            block_time = self._output_clock.time_at(number * self._block_seconds)
            if block_time + self._block_seconds < capture_time_seconds:
                break
            if block is None or block_time >= end_time:
                continue
            samples = np.frombuffer(block, dtype=np.int16)
            offset = round((block_time - capture_time_seconds) * pcm.SAMPLE_RATE_HZ)
            start, stop = max(offset, 0), min(offset + samples.size, sample_count)
            if start < stop:
                reference[start:stop] = samples[start - offset : stop - offset]
        return reference.tobytes()


def _settle(playback: asyncio.Future[bool], played_out: bool) -> None:
    if not playback.done():
        playback.set_result(played_out)


def _log_now_and_then(count: int, message: str) -> None:
    """Logs the 1st, 10th, 100th... time, so a failing device cannot flood the log."""
    if count == 10 ** int(math.log10(count)):
        log.warning("%s (%d so far)", message, count)
