"""Live RTP for phone calls, on a thread of its own.

Call audio must leave and arrive every 20 ms whatever the dialogue is doing: a
slow NLU turn or a blocking database call on the main asyncio loop must never
stall a caller's audio. So all RTP sockets live on one MediaThread (a daemon
thread with its own event loop), and an RtpSession's public methods are
thread-safe: the dialogue queues audio with play() and gets frames, digits and
timeouts back through callbacks, which run on the media thread and must be
quick (hand work over with loop.call_soon_threadsafe or a queue).

Each session runs one tick per 20 ms on an absolute schedule: it plays out one
received packet through the jitter buffer as exactly one 16 kHz frame, and
sends one 20 ms packet (queued bot audio, a DTMF event, or encoded silence so
the stream stays continuous for NATs and media gateways). Only 20 ms packets
are expected from the far end. G.711 audio is 8 kHz and goes through a
resampler each way; G.722 audio is already 16 kHz and goes straight through.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import random
import socket
import threading
from collections import deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

from bot.pcm import FRAME_BYTES, FRAME_MS, SAMPLE_RATE_HZ
from bot.telephony.codecs import AudioCodec, audio_codec
from bot.telephony.rtp import (
    DTMF_EVENTS,
    SEQ_MOD,
    TS_MOD,
    DtmfDetector,
    JitterBuffer,
    PolyphaseResampler,
    RtpError,
    RtpPacket,
    telephone_event_packets,
)

log = logging.getLogger(__name__)

T = TypeVar("T")

TICK_SECONDS = FRAME_MS / 1000
SILENT_FRAME = b"\0" * FRAME_BYTES
MAX_LAG_SECONDS = 0.2  # further behind schedule than this: skip ticks, don't burst
DTMF_GAP_TICKS = 3  # silence between sent digits


class MediaError(RuntimeError):
    """The media thread or an RTP session cannot do what was asked."""


class MediaThread:
    """A daemon thread running the asyncio loop that all RTP sessions share."""

    def __init__(self, name: str = "rtp-media") -> None:
        self._name = name
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            raise MediaError("the media thread is not started")
        return self._loop

    def start(self) -> None:
        if self._thread is not None:
            return
        loop = asyncio.new_event_loop()
        ready = threading.Event()

        def main() -> None:
            asyncio.set_event_loop(loop)
            loop.call_soon(ready.set)
            loop.run_forever()

        self._loop = loop
        self._thread = threading.Thread(target=main, name=self._name, daemon=True)
        self._thread.start()
        ready.wait()
        log.info("media thread %s started", self._name)

    def run(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        """Schedules coro on the media loop from any thread."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def stop(self, timeout: float = 5.0) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return

        async def cancel_all() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        if thread.is_alive():
            try:
                self.run(cancel_all()).result(timeout)
            except (concurrent.futures.TimeoutError, RuntimeError):
                log.warning("media tasks did not stop within %.1f s", timeout)
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout)
        if not thread.is_alive():
            loop.close()
        self._loop = None
        self._thread = None
        log.info("media thread %s stopped", self._name)


@dataclass
class _Playback:
    pcm: bytes
    future: concurrent.futures.Future[bool]
    offset: int = 0


@dataclass
class _Stats:
    sent: int = 0
    garbage: int = 0
    rejected: int = 0
    send_errors: int = 0


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, session: RtpSession) -> None:
        self._session = session

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        self._session._received(data, (str(addr[0]), int(addr[1])))

    def error_received(self, exc: Exception) -> None:
        self._session._send_failed(exc)


class _Resampler:
    """Exactly one chunk out per 20 ms chunk in, through a streaming polyphase FIR:
    16 kHz -> 8 kHz low-passes below 4 kHz first (no aliasing), 8 kHz -> 16 kHz
    interpolates; about 2 ms of group delay each way and no start-up silence."""

    def __init__(self, in_rate: int, out_rate: int, chunk_bytes: int) -> None:
        self._resampler = PolyphaseResampler(
            up=max(1, out_rate // in_rate),
            down=max(1, in_rate // out_rate),
            rate_hz=max(in_rate, out_rate),
        )
        self._chunk = chunk_bytes

    def convert(self, pcm: bytes) -> bytes:
        return _fit(self._resampler.process(pcm), self._chunk)


def _fit(pcm: bytes, size: int) -> bytes:
    """pcm cut or padded with silence to size bytes (a far end sending other
    than 20 ms packets still gives one frame per tick)."""
    return pcm[:size] + b"\0" * (size - len(pcm))


def _resamplers(codec_rate_hz: int) -> tuple[_Resampler | None, _Resampler | None]:
    """(receive, send) resamplers between the codec's rate and the bot's 16 kHz;
    none when they are equal (G.722), so wideband audio is not filtered."""
    if codec_rate_hz == SAMPLE_RATE_HZ:
        return None, None
    codec_bytes = codec_rate_hz * FRAME_MS // 1000 * 2
    return (
        _Resampler(codec_rate_hz, SAMPLE_RATE_HZ, FRAME_BYTES),
        _Resampler(SAMPLE_RATE_HZ, codec_rate_hz, codec_bytes),
    )


class RtpSession:
    """One call's RTP stream. Create it on the media loop with RtpSession.open()."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        codec: AudioCodec,
        payload_type: int,
        dtmf_payload_type: int | None,
        on_frame: Callable[[bytes], None],
        on_dtmf: Callable[[str], None],
        on_timeout: Callable[[], None],
        timeout_seconds: float,
        jitter_ms: int,
    ) -> None:
        self._loop = loop
        self._codec = codec
        self._payload_type = payload_type
        self._dtmf_payload_type = dtmf_payload_type
        self._on_frame = on_frame
        self._on_dtmf = on_dtmf
        self._on_timeout = on_timeout
        self._timeout_seconds = timeout_seconds
        self._lock = threading.Lock()
        self._jitter = JitterBuffer(depth_ms=jitter_ms, frame_ms=FRAME_MS)
        self._dtmf_in = DtmfDetector()
        self._rx, self._tx = _resamplers(codec.sample_rate_hz)
        self._silence_in = b"\0" * (codec.sample_rate_hz * FRAME_MS // 1000 * 2)
        # The RTP clock need not be the audio rate (G.722: 8000 Hz for 16 kHz).
        self._ts_step = codec.clock_rate_hz * FRAME_MS // 1000
        self._stats = _Stats()
        self._transport: asyncio.DatagramTransport | None = None
        self._task: asyncio.Task[None] | None = None
        self._remote: tuple[str, int] | None = None
        self._heard_remote = False  # a packet came from the remote since set_remote
        self._last_rx = loop.time()
        self._timed_out = False
        self._sending = True
        self._closed = False
        self._queue: deque[_Playback] = deque()
        self._played = SILENT_FRAME
        self._talking = False
        self._dtmf_digits: deque[str] = deque()
        self._dtmf_packets: deque[RtpPacket] = deque()
        self._dtmf_gap = 0
        self._ssrc = random.getrandbits(32)
        self._seq = random.getrandbits(16)
        self._ts = random.getrandbits(32)
        self._send_error_logged = False

    @classmethod
    async def open(
        cls,
        host: str,
        port_range: tuple[int, int],
        codec_name: str,
        payload_type: int,
        dtmf_payload_type: int | None,
        on_frame: Callable[[bytes], None],
        on_dtmf: Callable[[str], None],
        on_timeout: Callable[[], None],
        timeout_seconds: float = 30.0,
        jitter_ms: int = 60,
    ) -> RtpSession:
        """Binds an even free UDP port in port_range (inclusive) and starts ticking."""
        loop = asyncio.get_running_loop()
        session = cls(
            loop,
            audio_codec(codec_name),
            payload_type,
            dtmf_payload_type,
            on_frame,
            on_dtmf,
            on_timeout,
            timeout_seconds,
            jitter_ms,
        )
        lo, hi = port_range
        ports = list(range(lo + (lo % 2), hi + 1, 2))
        if not ports:
            raise MediaError(f"no even port in range {lo}-{hi}")
        start = random.randrange(len(ports))
        for port in ports[start:] + ports[:start]:
            try:
                transport, _ = await loop.create_datagram_endpoint(
                    lambda: _Protocol(session), local_addr=(host, port)
                )
            except OSError:
                continue
            session._transport = transport
            break
        else:
            raise MediaError(f"no free even UDP port on {host} in {lo}-{hi}")
        session._last_rx = loop.time()
        session._task = loop.create_task(session._run(), name=f"rtp-{session.local_port}")
        log.info("RTP session on %s:%d (%s)", host, session.local_port, codec_name)
        return session

    # ---- thread-safe public API -------------------------------------------------

    @property
    def local_port(self) -> int:
        if self._transport is None:
            raise MediaError("the session has no socket")
        return int(self._transport.get_extra_info("sockname")[1])

    def set_remote(self, host: str, port: int) -> None:
        """Where to send, and the only source accepted (symmetric RTP may re-latch
        the port on the same host until the first packet arrives)."""
        address = (socket.gethostbyname(host), int(port))
        with self._lock:
            self._remote = address
            self._heard_remote = False
        log.info("RTP port %s: remote %s:%d", self._port_or_none(), *address)

    def set_sending(self, sending: bool) -> None:
        """False puts the call on hold: no packets are sent and playback pauses."""
        with self._lock:
            self._sending = sending
            self._talking = False

    def play(self, pcm16k: bytes) -> concurrent.futures.Future[bool]:
        """Queues 16 kHz int16 audio; the future is True once all of it has been
        sent, False if stop_playback() or close() cut it."""
        future: concurrent.futures.Future[bool] = concurrent.futures.Future()
        if len(pcm16k) % 2:
            raise MediaError("16-bit PCM has an even byte count")
        with self._lock:
            if self._closed:
                future.set_result(False)
            elif not pcm16k:
                future.set_result(True)
            else:
                self._queue.append(_Playback(pcm16k, future))
        return future

    def stop_playback(self) -> None:
        """Drops all queued audio (barge-in); its futures become False."""
        with self._lock:
            cut = list(self._queue)
            self._queue.clear()
        for playback in cut:
            _settle(playback.future, False)

    @property
    def is_playing(self) -> bool:
        with self._lock:
            return bool(self._queue)

    def played_frame(self) -> bytes:
        """The 640-byte 16 kHz frame of bot audio sent on the latest tick (echo reference)."""
        with self._lock:
            return self._played

    def send_dtmf(self, digit: str) -> None:
        """Queues an RFC 4733 key press; playback pauses while it is sent."""
        if self._dtmf_payload_type is None:
            raise MediaError("no telephone-event payload type was negotiated")
        if len(digit) != 1 or digit not in DTMF_EVENTS:
            raise MediaError(f"{digit!r} is not a DTMF digit")
        with self._lock:
            self._dtmf_digits.append(digit)

    @property
    def stats(self) -> dict[str, int]:
        with self._lock:
            return {
                "received": self._jitter.received,
                "lost": self._jitter.lost,
                "late": self._jitter.late,
                "duplicates": self._jitter.duplicates,
                "sent": self._stats.sent,
                "garbage": self._stats.garbage,
                "rejected": self._stats.rejected,
                "send_errors": self._stats.send_errors,
            }

    def close(self) -> None:
        """Stops the session; idempotent, callable from any thread."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            cut = list(self._queue)
            self._queue.clear()
        for playback in cut:
            _settle(playback.future, False)
        if self._loop.is_closed():
            return
        try:
            on_loop = asyncio.get_running_loop() is self._loop
        except RuntimeError:
            on_loop = False
        if on_loop:
            self._close_on_loop()
        else:
            self._loop.call_soon_threadsafe(self._close_on_loop)

    # ---- media loop internals ---------------------------------------------------

    def _port_or_none(self) -> int | None:
        return self.local_port if self._transport is not None else None

    def _close_on_loop(self) -> None:
        if self._task is not None:
            self._task.cancel()
        if self._transport is not None:
            port = self._port_or_none()
            self._transport.close()
            log.info("RTP session on port %s closed: %s", port, self.stats)

    def _received(self, data: bytes, addr: tuple[str, int]) -> None:
        digits: str | None = None
        with self._lock:
            if self._closed:
                return
            try:
                packet = RtpPacket.parse(data)
            except RtpError as exc:
                self._stats.garbage += 1
                log.debug("ignoring non-RTP datagram from %s: %s", addr, exc)
                return
            remote = self._remote
            if remote is None or addr != remote:
                if remote is not None and addr[0] == remote[0] and not self._heard_remote:
                    log.info("symmetric RTP: latching onto %s:%d", *addr)
                    self._remote = addr
                else:
                    self._stats.rejected += 1
                    return
            self._heard_remote = True
            self._last_rx = self._loop.time()
            if packet.payload_type == self._dtmf_payload_type:
                digits = self._dtmf_in.feed(packet)
            elif packet.payload_type == self._payload_type:
                digits = self._dtmf_in.audio(packet.timestamp)
            self._jitter.push(packet, self._loop.time())  # events too, so sequence gaps mean loss
        for digit in digits or "":
            _call(self._on_dtmf, digit)

    def _send_failed(self, exc: Exception) -> None:
        with self._lock:
            self._stats.send_errors += 1
            first = not self._send_error_logged
            self._send_error_logged = True
        if first:
            log.warning("RTP send to %s failed (ignored from now on): %s", self._remote, exc)

    async def _run(self) -> None:
        next_tick = self._loop.time()
        while True:
            next_tick += TICK_SECONDS
            delay = next_tick - self._loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            elif delay < -MAX_LAG_SECONDS:
                log.warning("RTP tick %.0f ms late: skipping ahead", -delay * 1000)
                next_tick = self._loop.time()
            try:
                self._tick()
            except Exception:
                log.exception("RTP tick failed")

    def _tick(self) -> None:
        with self._lock:
            packet = self._jitter.pop(self._loop.time())
            timed_out = (
                not self._timed_out and self._loop.time() - self._last_rx >= self._timeout_seconds
            )
            self._timed_out = self._timed_out or timed_out
        if packet is not None and packet.payload_type == self._payload_type:
            pcm = self._codec.decode(packet.payload)
        else:
            pcm = self._silence_in
        frame = self._rx.convert(pcm) if self._rx is not None else _fit(pcm, FRAME_BYTES)
        _call(self._on_frame, frame)
        if timed_out:
            log.warning("no RTP for %.1f s on port %s", self._timeout_seconds, self.local_port)
            _call(self._on_timeout)
        self._send_tick()

    def _send_tick(self) -> None:
        finished: _Playback | None = None
        with self._lock:
            remote = self._remote
            if remote is None or not self._sending or self._transport is None:
                self._played = SILENT_FRAME
                self._ts = (self._ts + self._ts_step) % TS_MOD
                return
            out = self._next_dtmf_packet()
            if out is None:
                frame, has_audio = SILENT_FRAME, False
                if self._queue and not self._dtmf_gap:
                    has_audio = True
                    head = self._queue[0]
                    frame = head.pcm[head.offset : head.offset + FRAME_BYTES]
                    frame += b"\0" * (FRAME_BYTES - len(frame))
                    head.offset += FRAME_BYTES
                    if head.offset >= len(head.pcm):
                        finished = self._queue.popleft()
                marker = has_audio and not self._talking
                self._talking = has_audio
                self._played = frame
                pcm = self._tx.convert(frame) if self._tx is not None else frame
                payload = self._codec.encode(pcm)
                out = RtpPacket(
                    self._payload_type, self._seq, self._ts, self._ssrc, marker, payload
                )
            else:
                self._played = SILENT_FRAME
                if self._tx is not None:
                    self._tx.convert(SILENT_FRAME)  # keep the resampler's timeline
                # The encoder gets nothing: a G.722 far end decodes only what is
                # sent, and its decoder must stay in step with our encoder.
            self._seq = (self._seq + 1) % SEQ_MOD
            self._ts = (self._ts + self._ts_step) % TS_MOD
            self._stats.sent += 1
            self._transport.sendto(out.to_bytes(), remote)
        if finished is not None:
            _settle(finished.future, True)

    def _next_dtmf_packet(self) -> RtpPacket | None:
        """Called with the lock held: the DTMF packet to send this tick, if any."""
        if not self._dtmf_packets:
            if self._dtmf_gap:
                self._dtmf_gap -= 1
                return None
            if not self._dtmf_digits or self._dtmf_payload_type is None:
                return None
            self._dtmf_packets.extend(
                telephone_event_packets(
                    self._dtmf_digits.popleft(),
                    payload_type=self._dtmf_payload_type,
                    ssrc=self._ssrc,
                    sequence=self._seq,
                    timestamp=self._ts,
                )
            )
            self._dtmf_gap = DTMF_GAP_TICKS
            self._talking = False
        packet = self._dtmf_packets.popleft()
        return RtpPacket(
            packet.payload_type,
            self._seq,
            packet.timestamp,
            self._ssrc,
            packet.marker,
            packet.payload,
        )


def _settle(future: concurrent.futures.Future[bool], value: bool) -> None:
    if not future.done():
        future.set_result(value)


def _call(callback: Callable[..., None], *args: Any) -> None:
    try:
        callback(*args)
    except Exception:
        log.exception("RTP callback %r failed", callback)
