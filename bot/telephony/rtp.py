"""RTP as a phone call carries it: packets, G.711 audio, a jitter buffer and
RFC 4733 keypad events (G.722 audio is in bot.telephony.codecs).

Everything here is pure (no sockets, no clocks) so that the wire format and the
reordering/loss/DTMF rules can be unit-tested byte for byte; bot.telephony.media
drives these pieces from a real UDP socket on a 20 ms tick.
"""

from __future__ import annotations

import logging
import struct
import warnings
from dataclasses import dataclass, field

import numpy as np

with warnings.catch_warnings():
    # audioop is deprecated from Python 3.11; on 3.10 it is the stdlib G.711.
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop

log = logging.getLogger(__name__)

RTP_VERSION = 2
HEADER_BYTES = 12
SEQ_MOD = 1 << 16
TS_MOD = 1 << 32
G711_RATE_HZ = 8_000
DTMF_EVENTS = "0123456789*#ABCD"


class RtpError(ValueError):
    """A datagram or payload that is not valid RTP / RFC 4733 data."""


def _seq_newer(a: int, b: int) -> bool:
    """True when 16-bit sequence number a comes after b (RFC 3550 wrap-around)."""
    return a != b and (a - b) % SEQ_MOD < SEQ_MOD // 2


def _ts_newer(a: int, b: int) -> bool:
    """True when 32-bit timestamp a comes after b."""
    return a != b and (a - b) % TS_MOD < TS_MOD // 2


@dataclass(frozen=True)
class RtpPacket:
    """One RTP packet: the fixed header fields a voice call needs, and the payload."""

    payload_type: int
    sequence: int
    timestamp: int
    ssrc: int
    marker: bool = False
    payload: bytes = b""

    def __post_init__(self) -> None:
        if not 0 <= self.payload_type <= 127:
            raise RtpError(f"payload type {self.payload_type} is outside 0..127")
        if not 0 <= self.sequence < SEQ_MOD:
            raise RtpError(f"sequence {self.sequence} is outside 0..65535")
        if not 0 <= self.timestamp < TS_MOD:
            raise RtpError(f"timestamp {self.timestamp} is outside 32 bits")
        if not 0 <= self.ssrc < TS_MOD:
            raise RtpError(f"ssrc {self.ssrc} is outside 32 bits")

    @classmethod
    def parse(cls, data: bytes) -> RtpPacket:
        """Parses a datagram; CSRCs, header extensions and padding are skipped."""
        if len(data) < HEADER_BYTES:
            raise RtpError(f"{len(data)} bytes is too short for an RTP header")
        b0, b1, sequence, timestamp, ssrc = struct.unpack_from("!BBHII", data)
        if b0 >> 6 != RTP_VERSION:
            raise RtpError(f"RTP version {b0 >> 6}, expected 2")
        payload_type = b1 & 0x7F
        if 72 <= payload_type <= 76:
            raise RtpError("an RTCP packet, not RTP")
        offset = HEADER_BYTES + 4 * (b0 & 0x0F)
        if len(data) < offset:
            raise RtpError("CSRC list runs past the end of the packet")
        if b0 & 0x10:
            if len(data) < offset + 4:
                raise RtpError("header extension runs past the end of the packet")
            (words,) = struct.unpack_from("!H", data, offset + 2)
            offset += 4 + 4 * words
            if len(data) < offset:
                raise RtpError("header extension runs past the end of the packet")
        end = len(data)
        if b0 & 0x20:
            padding = data[-1]
            if padding == 0 or end - padding < offset:
                raise RtpError(f"invalid padding length {padding}")
            end -= padding
        return cls(
            payload_type=payload_type,
            sequence=sequence,
            timestamp=timestamp,
            ssrc=ssrc,
            marker=bool(b1 & 0x80),
            payload=bytes(data[offset:end]),
        )

    def to_bytes(self) -> bytes:
        """The packet on the wire: a 12-byte header (no CSRC, extension or padding)."""
        b1 = (0x80 if self.marker else 0) | self.payload_type
        header = struct.pack(
            "!BBHII", RTP_VERSION << 6, b1, self.sequence, self.timestamp, self.ssrc
        )
        return header + self.payload


@dataclass(frozen=True)
class G711Codec:
    """G.711 at 8 kHz: 'PCMU' (mu-law, payload type 0) or 'PCMA' (A-law, 8).

    Linear audio is 8 kHz mono native-endian int16, one byte per sample on the wire.
    """

    name: str

    def __post_init__(self) -> None:
        if self.name not in ("PCMU", "PCMA"):
            raise RtpError(f"unsupported codec {self.name!r}: expected 'PCMU' or 'PCMA'")

    @property
    def sample_rate_hz(self) -> int:
        """The linear audio in and out is at 8 kHz."""
        return G711_RATE_HZ

    @property
    def clock_rate_hz(self) -> int:
        """One RTP timestamp tick per sample."""
        return G711_RATE_HZ

    def decode(self, payload: bytes) -> bytes:
        if self.name == "PCMU":
            return audioop.ulaw2lin(payload, 2)
        return audioop.alaw2lin(payload, 2)

    def encode(self, pcm8k: bytes) -> bytes:
        if len(pcm8k) % 2:
            raise RtpError(f"int16 PCM has an even byte count, got {len(pcm8k)}")
        if self.name == "PCMU":
            return audioop.lin2ulaw(pcm8k, 2)
        return audioop.lin2alaw(pcm8k, 2)

    def silence_payload(self, samples: int) -> bytes:
        """samples of silence, encoded (0xFF for PCMU, 0xD5 for PCMA)."""
        return self.encode(b"\0\0" * samples)


class JitterBuffer:
    """Puts packets back in sequence order and paces them out one per tick.

    Playout starts depth_ms after the first packet arrived. When push() and pop()
    are given the current time (`now`, in seconds, from one monotonic clock) the
    wait is measured from that arrival, so the depth is real whatever the phase
    of the tick; without `now` it is counted in pop() ticks (no clock needed, but
    the first tick may come just after the arrival, so up to one frame less). A
    missing packet yields None (the caller plays silence) and
    counts as lost only once a later packet shows it is missing; with a clock it
    is skipped only once a later packet has waited depth_ms, until then playout
    slips a frame (a far end whose clock runs slow eats into the depth, and this
    gives it back). A copy of a packet held or recently played is a duplicate; an empty buffer
    is an underrun: playout pauses and re-buffers depth_ms before continuing, so
    a far end that stops sending (hold, silence suppression) is not counted as
    loss. At most `capacity` packets are held; a far end that runs ahead skips
    playout forward rather than growing memory. A new SSRC restarts the buffer.
    """

    def __init__(self, depth_ms: int = 60, frame_ms: int = 20) -> None:
        if frame_ms <= 0 or depth_ms < 0:
            raise ValueError("frame_ms must be positive and depth_ms non-negative")
        self.depth_frames = max(1, -(-depth_ms // frame_ms))
        self.capacity = max(16, 4 * self.depth_frames)
        self.received = 0
        self.lost = 0
        self.late = 0
        self.duplicates = 0
        self._packets: dict[int, RtpPacket] = {}
        self._ssrc: int | None = None
        self._next: int | None = None  # next sequence to play; None while buffering
        self._last_played: int | None = None  # survives an underrun, to reject late packets
        self._waited = 0
        self._depth_s = depth_ms / 1000
        self._arrived: float | None = None  # when buffering started, if push() had `now`
        self._arrivals: dict[int, float] = {}  # sequence -> arrival, for held packets
        self._played: dict[int, None] = {}  # the latest `capacity` sequences played

    def __len__(self) -> int:
        return len(self._packets)

    def _reset(self, ssrc: int) -> None:
        self._packets.clear()
        self._arrivals.clear()
        self._played.clear()
        self._ssrc = ssrc
        self._next = None
        self._last_played = None
        self._waited = 0
        self._arrived = None

    def push(self, packet: RtpPacket, now: float | None = None) -> None:
        """Stores a packet; `now` is its arrival time (see the class docstring)."""
        self.received += 1
        if packet.ssrc != self._ssrc:
            if self._ssrc is not None:
                log.info("RTP source changed from %08x to %08x", self._ssrc, packet.ssrc)
            self._reset(packet.ssrc)
        seq = packet.sequence
        if seq in self._packets or seq in self._played:
            self.duplicates += 1
            return
        if self._next is None:
            self._push_while_buffering(packet, now)
            return
        ahead = (seq - self._next) % SEQ_MOD
        if ahead >= SEQ_MOD // 2:
            self.late += 1
            return
        if ahead > 16 * self.capacity:
            # A jump far ahead (the sender restarted its sequence): start over.
            self._reset(packet.ssrc)
            self._push_while_buffering(packet, now)
            return
        if ahead >= self.capacity:
            self._skip_to((seq - self.capacity + 1) % SEQ_MOD)
        self._store(packet, now)

    def _store(self, packet: RtpPacket, now: float | None) -> None:
        self._packets[packet.sequence] = packet
        if now is not None:
            self._arrivals[packet.sequence] = now
            if len(self._arrivals) > 2 * self.capacity:
                self._arrivals = {s: t for s, t in self._arrivals.items() if s in self._packets}

    def _push_while_buffering(self, packet: RtpPacket, now: float | None) -> None:
        if self._last_played is not None and not _seq_newer(packet.sequence, self._last_played):
            self.late += 1
            return
        if not self._packets:
            self._arrived = now  # the wait for playout starts with this packet
        self._store(packet, now)
        if len(self._packets) > self.capacity:
            oldest = self._oldest()
            del self._packets[oldest]
            self.lost += 1

    def _oldest(self) -> int:
        ref = next(iter(self._packets))
        return min(self._packets, key=lambda s: (s - ref + SEQ_MOD // 2) % SEQ_MOD)

    def _skip_to(self, new_next: int) -> None:
        assert self._next is not None
        while self._next != new_next:
            if self._packets.pop(self._next, None) is None:
                self.lost += 1
            else:
                self.late += 1  # held but never played: dropped to bound memory
            self._next = (self._next + 1) % SEQ_MOD

    def _gap_is_young(self, now: float) -> bool:
        """True while no held packet has waited depth_ms yet: the missing one may
        still come (a sender that runs slower than our clock eats into the depth),
        so playout slips one frame instead of declaring it lost. Bounded: a held
        packet's wait grows every tick."""
        held = [self._arrivals[s] for s in self._packets if s in self._arrivals]
        return bool(held) and now - min(held) < self._depth_s - 0.001

    def pop(self, now: float | None = None) -> RtpPacket | None:
        """Called once per tick: the next packet in order, or None."""
        if self._next is None:
            if not self._packets:
                return None
            self._waited += 1
            if now is not None and self._arrived is not None:
                # A millisecond of slack for timer wake-up jitter.
                if now - self._arrived < self._depth_s - 0.001:
                    return None
            elif self._waited < self.depth_frames:
                return None
            self._next = self._oldest()
            # Anything stored too far ahead of the start cannot be held in order.
            for seq in list(self._packets):
                if (seq - self._next) % SEQ_MOD >= self.capacity:
                    del self._packets[seq]
                    self.late += 1
        if not self._packets:
            # Underrun: wait for the far end, re-buffer before playing on.
            self._last_played = (self._next - 1) % SEQ_MOD
            self._next = None
            self._waited = 0
            self._arrived = None
            return None
        packet = self._packets.pop(self._next, None)
        self._arrivals.pop(self._next, None)
        if packet is None:
            if now is not None and self._gap_is_young(now):
                return None  # the far end runs slow: wait a frame rather than skip
            self.lost += 1
        else:
            self._played[self._next] = None
            if len(self._played) > self.capacity:
                del self._played[next(iter(self._played))]
        self._last_played = self._next
        self._next = (self._next + 1) % SEQ_MOD
        return packet


def lowpass_taps(taps: int, cutoff_hz: float, rate_hz: float) -> np.ndarray:
    """A linear-phase low-pass FIR (Kaiser-windowed sinc) with unity DC gain."""
    n = np.arange(taps) - (taps - 1) / 2
    h = np.sinc(2 * cutoff_hz / rate_hz * n) * np.kaiser(taps, 6.0)
    return np.asarray(h / h.sum(), dtype=np.float64)


class PolyphaseResampler:
    """Streaming rational resampler (up/down) with a polyphase FIR and its own state.

    Conceptually: insert up-1 zeros between samples, low-pass at the higher rate,
    keep every down-th sample. Output appears as soon as the input that it needs
    has arrived, so every chunk of k*down input samples yields exactly k*up output
    samples (no bursts, no priming silence); the only latency is the filter's
    group delay, (taps - 1) / 2 samples at the filter's rate (about 2 ms for the
    default 64 taps at 16 kHz). Chunked calls give the same output as one call.
    int16 samples in and out, as native-endian bytes.
    """

    def __init__(
        self,
        up: int,
        down: int,
        taps: int = 64,
        cutoff_hz: float = 3_700.0,
        rate_hz: float = 16_000.0,
    ) -> None:
        if up <= 0 or down <= 0 or taps <= 0:
            raise ValueError("up, down and taps must be positive")
        self.up = up
        self.down = down
        # rate_hz is the filter's rate: the input rate times up.
        h = lowpass_taps(taps, cutoff_hz, rate_hz) * up
        self._width = -(-taps // up)
        padded = np.zeros(self._width * up)
        padded[:taps] = h
        # _phases[p, j] = h[p + j * up]: the taps that meet input sample i0 - j.
        self._phases = padded.reshape(self._width, up).T.copy()
        self._history = np.zeros(self._width, dtype=np.float64)
        self._consumed = 0  # input samples seen so far
        self._produced = 0  # output samples emitted so far

    def process(self, pcm: bytes) -> bytes:
        if len(pcm) % 2:
            raise RtpError(f"int16 PCM has an even byte count, got {len(pcm)}")
        x = np.frombuffer(pcm, dtype=np.int16).astype(np.float64)
        buf = np.concatenate([self._history, x])
        base = self._consumed - self._width  # input index of buf[0]
        self._consumed += x.size
        last = self._consumed - 1  # newest input index available
        # Output n needs input up to floor(n * down / up).
        end = (last * self.up + self.up - 1) // self.down + 1 if last >= 0 else 0
        n = np.arange(self._produced, max(end, self._produced))
        self._produced = max(end, self._produced)
        self._history = buf[-self._width :].copy()
        if not n.size:
            return b""
        t = n * self.down
        i0 = t // self.up - base
        idx = i0[:, None] - np.arange(self._width)[None, :]
        y = (self._phases[t % self.up] * buf[idx]).sum(axis=1)
        return np.clip(np.round(y), -32768, 32767).astype(np.int16).tobytes()


@dataclass(frozen=True)
class TelephoneEvent:
    """An RFC 4733 telephone-event payload for a keypad digit."""

    digit: str
    end: bool
    volume: int
    duration: int

    def __post_init__(self) -> None:
        if len(self.digit) != 1 or self.digit not in DTMF_EVENTS:
            raise RtpError(f"{self.digit!r} is not a DTMF digit (0-9, *, #, A-D)")
        if not 0 <= self.volume <= 63:
            raise RtpError(f"volume {self.volume} is outside 0..63")
        if not 0 <= self.duration < SEQ_MOD:
            raise RtpError(f"duration {self.duration} is outside 16 bits")

    def to_bytes(self) -> bytes:
        flags = (0x80 if self.end else 0) | self.volume
        return struct.pack("!BBH", DTMF_EVENTS.index(self.digit), flags, self.duration)


def parse_telephone_event(payload: bytes) -> TelephoneEvent:
    """Parses an RFC 4733 payload; events other than DTMF 0-15 are an RtpError."""
    if len(payload) < 4:
        raise RtpError(f"{len(payload)} bytes is too short for a telephone event")
    event, flags, duration = struct.unpack_from("!BBH", payload)
    if event >= len(DTMF_EVENTS):
        raise RtpError(f"telephone event {event} is not a DTMF digit")
    return TelephoneEvent(
        digit=DTMF_EVENTS[event], end=bool(flags & 0x80), volume=flags & 0x3F, duration=duration
    )


@dataclass
class DtmfDetector:
    """Turns a stream of RFC 4733 packets into digits, each reported once.

    An event is identified by its RTP timestamp: the three retransmitted end
    packets share it, the next key press has a new one. A digit is reported on
    its first end packet or, if all its end packets were lost, when a newer
    event starts or audio resumes well after it (audio()).
    """

    gap_samples: int = 800  # 100 ms at 8 kHz of audio after an unfinished event
    _pending_ts: int | None = field(default=None, init=False)
    _pending_digit: str = field(default="", init=False)
    _pending_duration: int = field(default=0, init=False)
    _done_ts: int | None = field(default=None, init=False)

    def feed(self, packet: RtpPacket) -> str | None:
        """The digit(s) this telephone-event packet completes, normally one character.

        Two characters only when an event whose ends were all lost is directly
        followed by a lone end packet of the next event.
        """
        try:
            event = parse_telephone_event(packet.payload)
        except RtpError as exc:
            log.debug("ignoring telephone-event packet: %s", exc)
            return None
        ts = packet.timestamp
        if self._done_ts is not None and not _ts_newer(ts, self._done_ts):
            return None  # retransmitted end, or a stale packet of a finished event
        out = ""
        if self._pending_ts is not None and ts != self._pending_ts:
            if not _ts_newer(ts, self._pending_ts):
                return None
            out += self._finish()
        if event.end:
            self._pending_ts = ts
            self._pending_digit = event.digit
            out += self._finish()
        else:
            self._pending_ts = ts
            self._pending_digit = event.digit
            self._pending_duration = max(self._pending_duration, event.duration)
        return out or None

    def audio(self, timestamp: int) -> str | None:
        """Tells the detector an audio packet arrived; may finish an event with lost ends."""
        if self._pending_ts is None:
            return None
        horizon = (self._pending_ts + self._pending_duration + self.gap_samples) % TS_MOD
        if _ts_newer(timestamp, horizon):
            return self._finish()
        return None

    def _finish(self) -> str:
        digit = self._pending_digit
        self._done_ts = self._pending_ts
        self._pending_ts = None
        self._pending_digit = ""
        self._pending_duration = 0
        return digit


def telephone_event_packets(
    digit: str,
    *,
    payload_type: int = 101,
    ssrc: int = 0,
    sequence: int = 0,
    timestamp: int = 0,
    duration_ms: int = 100,
    volume: int = 10,
    packet_ms: int = 20,
    clock_rate: int = G711_RATE_HZ,
    end_repeats: int = 3,
) -> list[RtpPacket]:
    """The packets that send one key press: updates every packet_ms, then the
    end packet end_repeats times, all with the event's start timestamp and
    consecutive sequence numbers; the first carries the marker bit."""
    if duration_ms <= 0 or packet_ms <= 0 or end_repeats <= 0:
        raise ValueError("duration_ms, packet_ms and end_repeats must be positive")
    step = clock_rate * packet_ms // 1000
    updates = max(1, duration_ms // packet_ms)
    events = [
        TelephoneEvent(digit=digit, end=False, volume=volume, duration=i * step)
        for i in range(1, updates)
    ]
    final = TelephoneEvent(digit=digit, end=True, volume=volume, duration=updates * step)
    events += [final] * end_repeats
    return [
        RtpPacket(
            payload_type=payload_type,
            sequence=(sequence + i) % SEQ_MOD,
            timestamp=timestamp % TS_MOD,
            ssrc=ssrc,
            marker=i == 0,
            payload=event.to_bytes(),
        )
        for i, event in enumerate(events)
    ]
