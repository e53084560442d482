"""RTP packets, G.711, the jitter buffer, the resampler and RFC 4733 DTMF, without sockets."""

from __future__ import annotations

import random
import struct

import numpy as np
import pytest

from bot.telephony.rtp import (
    DtmfDetector,
    G711Codec,
    JitterBuffer,
    PolyphaseResampler,
    RtpError,
    RtpPacket,
    TelephoneEvent,
    parse_telephone_event,
    telephone_event_packets,
)


def pkt(seq: int, ts: int = 0, ssrc: int = 7, payload: bytes = b"x", pt: int = 0) -> RtpPacket:
    return RtpPacket(
        payload_type=pt, sequence=seq % 65536, timestamp=ts, ssrc=ssrc, payload=payload
    )


def test_packet_round_trip() -> None:
    packet = RtpPacket(8, 65535, 0xFFFFFFFF, 0x12345678, True, b"\x01\x02\x03")
    data = packet.to_bytes()
    assert data[:2] == b"\x80\x88"
    assert RtpPacket.parse(data) == packet


def test_parse_skips_csrc_extension_and_padding() -> None:
    header = struct.pack("!BBHII", 0x80 | 0x20 | 0x10 | 2, 0, 5, 160, 9)
    csrcs = struct.pack("!II", 1, 2)
    extension = struct.pack("!HH", 0xBEDE, 1) + b"\0\0\0\0"
    data = header + csrcs + extension + b"audio" + b"\0\0\x03"
    packet = RtpPacket.parse(data)
    assert packet.payload == b"audio"
    assert (packet.sequence, packet.timestamp, packet.ssrc) == (5, 160, 9)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"hello",
        b"\x40" + b"\0" * 20,  # version 1
        struct.pack("!BBHII", 0x8F, 0, 1, 1, 1),  # 15 CSRCs missing
        struct.pack("!BBHII", 0x90, 0, 1, 1, 1) + b"\0\0",  # truncated extension
        struct.pack("!BBHII", 0xA0, 0, 1, 1, 1) + b"ab\x09",  # padding too long
        struct.pack("!BBHII", 0x80, 200, 1, 1, 1),  # RTCP sender report
    ],
)
def test_parse_rejects_garbage(data: bytes) -> None:
    with pytest.raises(RtpError):
        RtpPacket.parse(data)


def test_packet_fields_are_checked() -> None:
    with pytest.raises(RtpError):
        RtpPacket(128, 0, 0, 0)
    with pytest.raises(RtpError):
        RtpPacket(0, 65536, 0, 0)


def tone_8k(seconds: float = 1.0) -> np.ndarray:
    t = np.arange(int(8000 * seconds)) / 8000
    amplitude = 32768 * 10 ** (-20 / 20)
    return np.round(amplitude * np.sin(2 * np.pi * 440 * t)).astype(np.int16)


@pytest.mark.parametrize("name", ["PCMU", "PCMA"])
def test_g711_round_trip_keeps_a_tone(name: str) -> None:
    codec = G711Codec(name)
    tone = tone_8k()
    payload = codec.encode(tone.tobytes())
    assert len(payload) == tone.size
    decoded = np.frombuffer(codec.decode(payload), dtype=np.int16).astype(np.float64)
    noise = decoded - tone
    snr = 10 * np.log10(np.sum(tone.astype(np.float64) ** 2) / np.sum(noise**2))
    assert snr > 30


def test_g711_silence_and_errors() -> None:
    assert G711Codec("PCMU").silence_payload(3) == b"\xff\xff\xff"
    assert G711Codec("PCMA").silence_payload(2) == b"\xd5\xd5"
    with pytest.raises(RtpError):
        G711Codec("G729")
    with pytest.raises(RtpError):
        G711Codec("PCMU").encode(b"\0")


def drain(buffer: JitterBuffer, ticks: int) -> list[int | None]:
    out = []
    for _ in range(ticks):
        packet = buffer.pop()
        out.append(None if packet is None else packet.sequence)
    return out


def test_jitter_buffer_waits_then_plays_in_order() -> None:
    buffer = JitterBuffer(depth_ms=60, frame_ms=20)
    for seq in (11, 10, 13, 12, 14):
        buffer.push(pkt(seq))
    assert drain(buffer, 8) == [None, None, 10, 11, 12, 13, 14, None]
    assert (buffer.received, buffer.lost, buffer.late, buffer.duplicates) == (5, 0, 0, 0)


def test_jitter_buffer_loss_duplicates_and_late() -> None:
    buffer = JitterBuffer(depth_ms=40, frame_ms=20)
    for seq in (1, 2, 2, 4, 5):
        buffer.push(pkt(seq))
    assert drain(buffer, 2) == [None, 1]
    buffer.push(pkt(1))  # a copy of one already played
    assert drain(buffer, 5) == [2, None, 4, 5, None]
    buffer.push(pkt(3))  # arrived after its turn
    assert buffer.duplicates == 2
    assert buffer.lost == 1
    assert buffer.late == 1


def test_jitter_buffer_underrun_rebuffers_without_counting_loss() -> None:
    buffer = JitterBuffer(depth_ms=40, frame_ms=20)
    buffer.push(pkt(1))
    assert drain(buffer, 4) == [None, 1, None, None]
    buffer.push(pkt(2))
    assert drain(buffer, 3) == [None, 2, None]
    assert buffer.lost == 0


def test_jitter_buffer_sequence_wrap() -> None:
    buffer = JitterBuffer(depth_ms=60, frame_ms=20)
    seqs = [65533, 65535, 65534, 0, 2, 1]
    for seq in seqs:
        buffer.push(pkt(seq))
    assert drain(buffer, 8) == [None, None, 65533, 65534, 65535, 0, 1, 2]
    assert buffer.lost == 0


def test_jitter_buffer_new_ssrc_restarts() -> None:
    buffer = JitterBuffer(depth_ms=20, frame_ms=20)
    buffer.push(pkt(100))
    assert drain(buffer, 1) == [100]
    buffer.push(pkt(5, ssrc=8))
    assert drain(buffer, 1) == [5]


def test_jitter_buffer_flood_is_bounded() -> None:
    buffer = JitterBuffer()
    rng = random.Random(1)
    for i in range(20_000):
        buffer.push(pkt(rng.randrange(65536) if i % 2 else i))
        assert len(buffer) <= buffer.capacity
        if i % 3 == 0:
            buffer.pop()
    # A steady stream that runs far ahead of playout is also bounded.
    steady = JitterBuffer()
    for seq in range(1000):
        steady.push(pkt(seq, ssrc=9))
    assert len(steady) <= steady.capacity
    played = [p.sequence for p in (steady.pop() for _ in range(40)) if p is not None]
    assert played == sorted(played)
    assert played[-1] == 999


def test_jitter_buffer_depth_counts_from_arrival() -> None:
    # The first packet lands 1 ms before a tick: a tick count would play it after
    # 41 ms; measured from its arrival it waits the full 60 ms.
    buffer = JitterBuffer(depth_ms=60, frame_ms=20)
    buffer.push(pkt(10), now=0.019)
    played = [(tick, buffer.pop(now=tick * 0.020)) for tick in range(1, 6)]
    first = next(tick for tick, packet in played if packet is not None)
    assert first * 0.020 - 0.019 >= 0.059
    assert [p.sequence for _, p in played if p is not None] == [10]


def test_jitter_buffer_swapped_neighbour_arriving_late_still_plays_in_order() -> None:
    # Packets every 20 ms, each odd pair swapped; arrivals 1 ms before the ticks.
    buffer = JitterBuffer(depth_ms=60, frame_ms=20)
    order = [0, 2, 1, 3, 5, 4, 6, 7, 9, 8, 10, 11]
    played: list[int] = []
    for k, seq in enumerate(order):
        buffer.push(pkt(100 + seq), now=k * 0.020 + 0.019)
        packet = buffer.pop(now=(k + 1) * 0.020)
        if packet is not None:
            played.append(packet.sequence)
    for k in range(len(order), len(order) + 6):
        packet = buffer.pop(now=(k + 1) * 0.020)
        if packet is not None:
            played.append(packet.sequence)
    assert played == list(range(100, 112))
    assert (buffer.lost, buffer.late) == (0, 0)


def test_jitter_buffer_rebuffer_after_underrun_counts_from_arrival() -> None:
    buffer = JitterBuffer(depth_ms=40, frame_ms=20)
    buffer.push(pkt(1), now=0.0)
    assert [buffer.pop(now=t) for t in (0.02, 0.04)][1] is not None
    assert buffer.pop(now=0.06) is None  # underrun
    buffer.push(pkt(2), now=0.0999)
    assert buffer.pop(now=0.10) is None
    assert buffer.pop(now=0.12) is None
    packet = buffer.pop(now=0.14)
    assert packet is not None and packet.sequence == 2
    assert buffer.lost == 0


def test_jitter_buffer_slow_sender_slips_instead_of_skipping() -> None:
    # The sender runs 2.5 ms slow per packet and swaps 120/121: by then the
    # depth is used up, so playout waits a frame for 120 instead of losing it.
    buffer = JitterBuffer(depth_ms=60, frame_ms=20)
    order = [*range(20), 21, 20, *range(22, 30)]
    events = [(k * 0.0225 + 0.001, "push", seq) for k, seq in enumerate(order)]
    events += [(k * 0.020, "pop", 0) for k in range(1, 50)]
    played: list[int] = []
    for now, kind, seq in sorted(events):
        if kind == "push":
            buffer.push(pkt(100 + seq), now=now)
        elif (packet := buffer.pop(now=now)) is not None:
            played.append(packet.sequence)
    assert played == list(range(100, 130))
    assert (buffer.lost, buffer.late, buffer.duplicates) == (0, 0, 0)


def test_jitter_buffer_copy_of_a_played_packet_is_a_duplicate() -> None:
    buffer = JitterBuffer(depth_ms=20, frame_ms=20)
    buffer.push(pkt(1), now=0.0)
    assert buffer.pop(now=0.02) is not None
    buffer.push(pkt(1), now=0.03)
    assert (buffer.duplicates, buffer.late) == (1, 0)
    assert len(buffer) == 0


def tone(hz: float, seconds: float = 1.0, rate: int = 16_000, amp: float = 8000) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return np.asarray(amp * np.sin(2 * np.pi * hz * t), dtype=np.int16)


def level_db(pcm: bytes, reference: np.ndarray, skip: int) -> float:
    out = np.frombuffer(pcm, dtype=np.int16).astype(float)[skip:]
    ref = reference.astype(float)
    return float(20 * np.log10(np.sqrt(np.mean(out**2)) / np.sqrt(np.mean(ref**2))))


def in_frames(resampler: PolyphaseResampler, pcm: bytes, frame_bytes: int) -> list[bytes]:
    return [resampler.process(pcm[i : i + frame_bytes]) for i in range(0, len(pcm), frame_bytes)]


def test_resampler_frames_are_exact_and_keep_a_3khz_tone() -> None:
    source = tone(3000)
    down, up = PolyphaseResampler(up=1, down=2), PolyphaseResampler(up=2, down=1)
    frames_8k = in_frames(down, source.tobytes(), 640)
    assert all(len(frame) == 320 for frame in frames_8k)  # 160 samples per 20 ms
    frames_16k = in_frames(up, b"".join(frames_8k), 320)
    assert all(len(frame) == 640 for frame in frames_16k)  # 320 samples per 20 ms
    assert abs(level_db(b"".join(frames_8k), source, skip=100)) < 1.5
    assert abs(level_db(b"".join(frames_16k), source, skip=200)) < 1.5
    # Short group delay: the tone is there within the first frame.
    first = np.frombuffer(frames_8k[0], dtype=np.int16)
    assert np.max(np.abs(first[40:])) > 4000


def test_resampler_rejects_6khz_instead_of_aliasing_it() -> None:
    source = tone(6000)
    out = b"".join(in_frames(PolyphaseResampler(up=1, down=2), source.tobytes(), 640))
    assert level_db(out, source, skip=100) <= -30
    samples = np.frombuffer(out, dtype=np.int16).astype(float)[100:]
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(samples.size)))
    freqs = np.fft.rfftfreq(samples.size, 1 / 8000)
    alias = spectrum[np.abs(freqs - 2000) < 50].max()
    full_scale = np.abs(
        np.fft.rfft(tone(2000, rate=8000).astype(float)[100:] * np.hanning(samples.size))
    )
    assert 20 * np.log10(alias / full_scale.max()) <= -30


@pytest.mark.parametrize(("up", "down", "chunk"), [(1, 2, 640), (2, 1, 320), (1, 2, 6), (2, 1, 2)])
def test_resampler_chunked_equals_one_shot(up: int, down: int, chunk: int) -> None:
    rng = np.random.default_rng(3)
    pcm = rng.integers(-20000, 20000, 4000, dtype=np.int16).tobytes()
    whole = PolyphaseResampler(up=up, down=down).process(pcm)
    chunked = b"".join(in_frames(PolyphaseResampler(up=up, down=down), pcm, chunk))
    assert len(whole) == len(pcm) * up // down
    assert chunked == whole


def test_resampler_rejects_odd_bytes() -> None:
    with pytest.raises(RtpError):
        PolyphaseResampler(up=2, down=1).process(b"\0\0\0")


def test_telephone_event_parse() -> None:
    event = parse_telephone_event(bytes([11, 0x80 | 10]) + struct.pack("!H", 800))
    assert event == TelephoneEvent(digit="#", end=True, volume=10, duration=800)
    assert [parse_telephone_event(bytes([n, 0, 0, 0])).digit for n in range(16)] == list(
        "0123456789*#ABCD"
    )
    with pytest.raises(RtpError):
        parse_telephone_event(bytes([16, 0, 0, 0]))
    with pytest.raises(RtpError):
        parse_telephone_event(b"\x01")


def test_telephone_event_packets_shape() -> None:
    packets = telephone_event_packets("5", payload_type=101, sequence=65534, timestamp=1000)
    events = [parse_telephone_event(p.payload) for p in packets]
    assert len(packets) == 7
    assert [p.sequence for p in packets] == [65534, 65535, 0, 1, 2, 3, 4]
    assert {p.timestamp for p in packets} == {1000}
    assert [p.marker for p in packets] == [True] + [False] * 6
    assert [e.end for e in events] == [False] * 4 + [True] * 3
    assert [e.duration for e in events] == [160, 320, 480, 640, 800, 800, 800]
    assert {e.digit for e in events} == {"5"}


def feed_all(detector: DtmfDetector, packets: list[RtpPacket]) -> list[str]:
    out = []
    for packet in packets:
        digits = detector.feed(packet)
        if digits:
            out.extend(digits)
    return out


def test_dtmf_digits_reported_once_each() -> None:
    detector = DtmfDetector()
    packets = (
        telephone_event_packets("1", sequence=0, timestamp=0)
        + telephone_event_packets("1", sequence=7, timestamp=2000)
        + telephone_event_packets("#", sequence=14, timestamp=4000)
    )
    assert feed_all(detector, packets) == ["1", "1", "#"]


def test_dtmf_late_retransmitted_end_is_ignored() -> None:
    detector = DtmfDetector()
    first = telephone_event_packets("7", timestamp=100)
    second = telephone_event_packets("8", sequence=7, timestamp=2000)
    assert feed_all(detector, first[:5] + second[:2] + first[5:] + second[2:]) == ["7", "8"]


def test_dtmf_lost_ends_reported_when_next_event_starts() -> None:
    detector = DtmfDetector()
    first = [p for p in telephone_event_packets("3", timestamp=0) if not _end(p)]
    second = telephone_event_packets("4", sequence=7, timestamp=2000)
    assert feed_all(detector, first) == []
    assert feed_all(detector, second) == ["3", "4"]


def test_dtmf_lost_ends_reported_when_audio_resumes() -> None:
    detector = DtmfDetector()
    starts = [p for p in telephone_event_packets("9", timestamp=0) if not _end(p)]
    assert feed_all(detector, starts) == []
    assert detector.audio(700) is None  # still within the event
    assert detector.audio(3000) == "9"
    assert detector.audio(3160) is None
    assert feed_all(detector, telephone_event_packets("9", timestamp=0)) == []


def test_dtmf_garbage_payload_is_ignored() -> None:
    assert DtmfDetector().feed(pkt(1, payload=b"\x99\x80\0\0", pt=101)) is None


def _end(packet: RtpPacket) -> bool:
    return parse_telephone_event(packet.payload).end
