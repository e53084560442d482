"""The audio codecs a phone line speaks: G.711 (rtp.G711Codec) and G.722.

G.722 carries 50-7000 Hz speech in the same 64 kbit/s as G.711's 300-3400 Hz,
so a caller on a wideband phone reaches the recogniser (which works at 16 kHz)
without the 8 kHz band limit and without any resampling on the way.

G.722 comes from FFmpeg through PyAV rather than from code of our own: its
sub-band ADPCM (QMF filter bank, adaptive quantisers and predictors) is easy
to get subtly wrong in ways that still sound like speech, and FFmpeg's coder
is a widely deployed one. PyAV's wheels bundle FFmpeg, so nothing beyond the
Python package needs installing.
"""

from __future__ import annotations

from typing import Literal, Protocol

import av
import numpy as np
from av.audio.codeccontext import AudioCodecContext
from av.codec import CodecContext

from bot.telephony.rtp import G711Codec, RtpError

G722_RATE_HZ = 16_000
# RFC 3551 §4.5.2: G.722's RTP clock is 8000 Hz although it samples at 16 kHz
# (an error in the first RTP profile, kept for compatibility), so a 20 ms
# packet advances the timestamp by 160 and carries 320 samples in 160 bytes.
G722_CLOCK_HZ = 8_000
G722_FRAME_SAMPLES = 320  # 20 ms at 16 kHz: FFmpeg's frame size for G.722


class AudioCodec(Protocol):
    """What a phone line needs from a codec: linear int16 PCM at the codec's
    own sample rate in and out, one RTP payload per packet."""

    @property
    def name(self) -> str: ...

    @property
    def sample_rate_hz(self) -> int:
        """The rate of the linear audio that encode() takes and decode() returns."""
        ...

    @property
    def clock_rate_hz(self) -> int:
        """The RTP timestamp clock: what a packet's timestamp advances by per second."""
        ...

    def decode(self, payload: bytes) -> bytes: ...

    def encode(self, pcm: bytes) -> bytes: ...

    def silence_payload(self, samples: int) -> bytes: ...


def _open_context(mode: Literal["r", "w"]) -> AudioCodecContext:
    context = CodecContext.create("g722", mode)
    if not isinstance(context, AudioCodecContext):
        raise RtpError("FFmpeg's g722 is not an audio codec in this build of PyAV")
    context.sample_rate = G722_RATE_HZ
    context.layout = "mono"
    if mode == "w":
        context.format = "s16"
    context.open()
    return context


def _frame(samples: np.ndarray) -> av.AudioFrame:
    frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16", layout="mono")
    frame.sample_rate = G722_RATE_HZ
    return frame


class G722Codec:
    """G.722 at 64 kbit/s ('G722', static payload type 9): 16 kHz mono
    native-endian int16 audio, two samples per byte on the wire.

    ADPCM is stateful: the far end's decoder follows our encoder sample by
    sample, and our decoder follows theirs. So one G722Codec belongs to one
    call (its encoder to the sending direction, its decoder to the receiving
    one), and encode() must only see audio that is actually sent. Not
    thread-safe: the media thread owns it.
    """

    name = "G722"
    sample_rate_hz = G722_RATE_HZ
    clock_rate_hz = G722_CLOCK_HZ

    def __init__(self) -> None:
        self._encoder = _open_context("w")
        self._decoder = _open_context("r")

    def decode(self, payload: bytes) -> bytes:
        """Each byte gives two samples, with no framing: any payload decodes at once."""
        if not payload:
            return b""
        frames = self._decoder.decode(av.Packet(payload))
        return b"".join(frame.to_ndarray().tobytes() for frame in frames)

    def encode(self, pcm: bytes) -> bytes:
        """Whole 20 ms frames (640 bytes each) in, 160 bytes per frame out.

        PyAV holds back any part of a frame until the rest arrives, which
        would leave a packet short now and long later; so partial frames are
        refused rather than delayed.
        """
        frame_bytes = 2 * G722_FRAME_SAMPLES
        if len(pcm) % frame_bytes:
            raise RtpError(
                f"G.722 encodes whole 20 ms frames ({frame_bytes} bytes), got {len(pcm)}"
            )
        if not pcm:
            return b""
        packets = self._encoder.encode(_frame(np.frombuffer(pcm, dtype=np.int16)))
        return b"".join(bytes(packet) for packet in packets)

    def silence_payload(self, samples: int) -> bytes:
        """samples (an even number) of silence, encoded by a fresh encoder so
        that this call's stream state is left alone."""
        if samples < 0 or samples % 2:
            raise RtpError(f"G.722 codes samples in pairs, got {samples}")
        if not samples:
            return b""
        encoder = _open_context("w")
        packets = encoder.encode(_frame(np.zeros(samples, dtype=np.int16)))
        packets += encoder.encode(None)  # the last, short frame
        return b"".join(bytes(packet) for packet in packets)


def audio_codec(name: str) -> AudioCodec:
    """A new codec for one call: 'PCMU', 'PCMA' or 'G722' (any case)."""
    upper = name.upper()
    if upper == "G722":
        return G722Codec()
    if upper in ("PCMU", "PCMA"):
        return G711Codec(upper)
    raise RtpError(f"unsupported codec {name!r}: expected PCMU, PCMA or G722")
