"""Live RTP over UDP on 127.0.0.1: two sessions on one media thread, and raw sockets."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import numpy as np
import pytest

from bot.pcm import FRAME_BYTES
from bot.telephony.codecs import G722Codec
from bot.telephony.media import MediaThread, RtpSession
from bot.telephony.rtp import TS_MOD, G711Codec, RtpPacket

PORTS = (40000, 40999)


class Sink:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.frames: list[bytes] = []
        self.digits: list[str] = []
        self.timeouts = 0

    def frame(self, pcm: bytes) -> None:
        assert len(pcm) == FRAME_BYTES
        with self.lock:
            self.frames.append(pcm)

    def dtmf(self, digit: str) -> None:
        with self.lock:
            self.digits.append(digit)

    def timeout(self) -> None:
        with self.lock:
            self.timeouts += 1


@pytest.fixture
def media() -> Iterator[MediaThread]:
    thread = MediaThread()
    thread.start()
    yield thread
    thread.stop()


def open_session(
    media: MediaThread,
    sink: Sink,
    timeout: float = 30.0,
    codec_name: str = "PCMU",
    payload_type: int = 0,
) -> RtpSession:
    return media.run(
        RtpSession.open(
            "127.0.0.1",
            PORTS,
            codec_name=codec_name,
            payload_type=payload_type,
            dtmf_payload_type=101,
            on_frame=sink.frame,
            on_dtmf=sink.dtmf,
            on_timeout=sink.timeout,
            timeout_seconds=timeout,
        )
    ).result(5)


def tone_16k(seconds: float, hz: float = 440.0) -> bytes:
    t = np.arange(int(16000 * seconds)) / 16000
    return (3277 * np.sin(2 * np.pi * hz * t)).astype(np.int16).tobytes()


def wait_for(predicate, seconds: float = 5.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return False


def test_audio_crosses_between_sessions(media: MediaThread) -> None:
    a_sink, b_sink = Sink(), Sink()
    a, b = open_session(media, a_sink), open_session(media, b_sink)
    assert a.local_port % 2 == 0 and b.local_port % 2 == 0
    a.set_remote("127.0.0.1", b.local_port)
    b.set_remote("127.0.0.1", a.local_port)
    try:
        start = time.monotonic()
        future = a.play(tone_16k(1.0))
        assert wait_for(lambda: a.played_frame() != b"\0" * FRAME_BYTES, 2)
        assert a.is_playing
        assert future.result(5) is True
        elapsed = time.monotonic() - start
        assert 0.8 < elapsed < 3.0
        time.sleep(0.3)
        with b_sink.lock:
            received = np.frombuffer(b"".join(b_sink.frames), dtype=np.int16).astype(float)
        loud = np.flatnonzero(np.abs(received) > 1000)
        assert loud.size
        segment = received[loud[0] + 1600 : loud[0] + 1600 + 8000]  # 0.5 s, steady part
        assert segment.size == 8000
        spectrum = np.abs(np.fft.rfft(segment * np.hanning(segment.size)))
        assert abs(np.argmax(spectrum) * 16000 / segment.size - 440) < 5
        t = np.arange(segment.size) / 16000
        basis = np.stack([np.sin(2 * np.pi * 440 * t), np.cos(2 * np.pi * 440 * t)], axis=1)
        fit = basis @ np.linalg.lstsq(basis, segment, rcond=None)[0]
        snr = 10 * np.log10(np.sum(fit**2) / np.sum((segment - fit) ** 2))
        assert snr > 25
        assert 0.7 < (loud[-1] - loud[0]) / 16000 < 1.3
        assert b.stats["received"] > 40
        assert not a.is_playing
    finally:
        a.close()
        b.close()
        a.close()


def test_reordered_and_duplicated_stream_plays_in_order(media: MediaThread) -> None:
    sink = Sink()
    session = open_session(media, sink)
    raw = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    raw.bind(("127.0.0.1", 0))
    session.set_remote("127.0.0.1", raw.getsockname()[1])
    codec = G711Codec("PCMU")
    try:
        packets = [
            RtpPacket(
                0,
                100 + k,
                160 * k,
                42,
                k == 0,
                codec.encode(np.full(160, 1000 * (k + 1), dtype=np.int16).tobytes()),
            )
            for k in range(20)
        ]
        order = [0, 2, 1, 3, 3, 5, 4, 6, 7, 9, 8, 8, 10, 11, 13, 12, 14, 15, 17, 16, 18, 19]
        for index in order:
            raw.sendto(packets[index].to_bytes(), ("127.0.0.1", session.local_port))
            time.sleep(0.02)
        garbage = [b"hello", b"\0" * 3, bytes(range(40)), b"\x80"]
        for datagram in garbage:
            raw.sendto(datagram, ("127.0.0.1", session.local_port))
        time.sleep(0.4)
        with sink.lock:
            frames = list(sink.frames)
        levels = [int(np.median(np.frombuffer(f, dtype=np.int16))) for f in frames]
        steps = [level for level in levels if level > 500]
        assert len(steps) >= 19
        assert steps == sorted(steps)
        assert len({round(s / 1000) for s in steps}) == 20
        stats = session.stats
        assert stats["duplicates"] == 2, stats
        assert stats["lost"] == 0
        assert stats["garbage"] == len(garbage) - 1 or stats["garbage"] == len(garbage)
        count = len(frames)
        assert wait_for(lambda: len(sink.frames) > count + 5, 2)  # still ticking
    finally:
        raw.close()
        session.close()


def test_dtmf_digits_arrive_once_each(media: MediaThread) -> None:
    a_sink, b_sink = Sink(), Sink()
    a, b = open_session(media, a_sink), open_session(media, b_sink)
    a.set_remote("127.0.0.1", b.local_port)
    b.set_remote("127.0.0.1", a.local_port)
    try:
        for digit in "1#5":
            a.send_dtmf(digit)
        assert wait_for(lambda: len(b_sink.digits) >= 3, 5)
        time.sleep(0.3)
        assert b_sink.digits == ["1", "#", "5"]
    finally:
        a.close()
        b.close()


def test_timeout_fires_once(media: MediaThread) -> None:
    sink = Sink()
    session = open_session(media, sink, timeout=0.3)
    try:
        assert wait_for(lambda: sink.timeouts == 1, 3)
        time.sleep(0.5)
        assert sink.timeouts == 1
    finally:
        session.close()


def test_stop_playback_cuts_the_future(media: MediaThread) -> None:
    a_sink, b_sink = Sink(), Sink()
    a, b = open_session(media, a_sink), open_session(media, b_sink)
    a.set_remote("127.0.0.1", b.local_port)
    try:
        first = a.play(tone_16k(5.0))
        second = a.play(tone_16k(1.0))
        time.sleep(0.2)
        assert a.is_playing
        a.stop_playback()
        assert first.result(1) is False
        assert second.result(1) is False
        assert not a.is_playing
        pending = a.play(tone_16k(5.0))
        a.close()
        assert pending.result(1) is False
        assert a.play(tone_16k(0.1)).result(1) is False
    finally:
        a.close()
        b.close()


def test_send_to_closed_port_is_ignored(media: MediaThread) -> None:
    sink = Sink()
    session = open_session(media, sink)
    dead = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    dead.bind(("127.0.0.1", 0))
    port = dead.getsockname()[1]
    dead.close()
    session.set_remote("127.0.0.1", port)
    try:
        future = session.play(tone_16k(0.3))
        assert future.result(3) is True
        assert session.stats["sent"] > 10
    finally:
        session.close()


def sound_then_quiet(sink: Sink) -> bool:
    """True once something loud arrived and the latest 100 ms are quiet again."""
    with sink.lock:
        frames = [np.abs(np.frombuffer(f, dtype=np.int16)).max() for f in sink.frames]
    return len(frames) > 5 and max(frames) > 2000 and max(frames[-5:]) < 100


def test_g722_carries_wideband_audio_between_sessions(media: MediaThread) -> None:
    """1 kHz and 6 kHz together: G.711 would lose the 6 kHz one (its 8 kHz audio
    stops at 4 kHz); G.722 at 16 kHz, with no resampler, keeps both."""
    a_sink, b_sink = Sink(), Sink()
    a = open_session(media, a_sink, codec_name="G722", payload_type=9)
    b = open_session(media, b_sink, codec_name="G722", payload_type=9)
    a.set_remote("127.0.0.1", b.local_port)
    b.set_remote("127.0.0.1", a.local_port)
    t = np.arange(16000) / 16000
    mix = 4000 * np.sin(2 * np.pi * 1000 * t) + 4000 * np.sin(2 * np.pi * 6000 * t)
    try:
        assert a.play(mix.astype(np.int16).tobytes()).result(5) is True
        assert wait_for(lambda: sound_then_quiet(b_sink), 3)
        with b_sink.lock:
            received = np.frombuffer(b"".join(b_sink.frames), dtype=np.int16).astype(float)
        loud = np.flatnonzero(np.abs(received) > 2000)
        assert loud.size
        segment = received[loud[0] + 1600 : loud[0] + 1600 + 8000]  # 0.5 s, steady part
        assert segment.size == 8000
        t = np.arange(segment.size) / 16000
        basis = np.stack(
            [f(2 * np.pi * hz * t) for hz in (1000, 6000) for f in (np.sin, np.cos)], axis=1
        )
        coef = np.linalg.lstsq(basis, segment, rcond=None)[0]
        fit = basis @ coef
        snr = 10 * np.log10(np.sum(fit**2) / np.sum((segment - fit) ** 2))
        assert snr > 20  # measured 29 dB
        for amplitude in (np.hypot(*coef[:2]), np.hypot(*coef[2:])):
            assert abs(20 * np.log10(amplitude / 4000)) < 1.0
    finally:
        a.close()
        b.close()


def test_g722_packets_on_the_wire(media: MediaThread) -> None:
    """Payload type 9, 160 bytes per 20 ms, and the timestamp steps by 160
    (RFC 3551: G.722's RTP clock is 8000 Hz) although 320 samples are sent."""
    sink = Sink()
    session = open_session(media, sink, codec_name="G722", payload_type=9)
    raw = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    raw.bind(("127.0.0.1", 0))
    raw.settimeout(2.0)
    session.set_remote("127.0.0.1", raw.getsockname()[1])
    try:
        session.play(tone_16k(0.5, hz=1000.0))
        packets = [RtpPacket.parse(raw.recv(2048)) for _ in range(30)]
    finally:
        raw.close()
        session.close()
    assert {p.payload_type for p in packets} == {9}
    assert {len(p.payload) for p in packets} == {160}
    assert len({p.ssrc for p in packets}) == 1
    for before, after in zip(packets, packets[1:], strict=False):
        assert (after.sequence - before.sequence) % 65536 == 1
        assert (after.timestamp - before.timestamp) % TS_MOD == 160
    decoder = G722Codec()
    heard = np.frombuffer(b"".join(decoder.decode(p.payload) for p in packets), dtype=np.int16)
    loud = heard[np.abs(heard) > 1000]
    assert loud.size > 1600  # at least 0.1 s of the tone, decoded by a codec of its own
    spectrum = np.abs(np.fft.rfft(heard.astype(float)))
    assert abs(np.argmax(spectrum) * 16000 / heard.size - 1000) < 40
