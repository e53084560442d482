"""G.722 through FFmpeg (PyAV): frame sizes, wideband tones, stream state, and
how the codec, SDP and the configured preference fit together."""

from __future__ import annotations

import numpy as np
import pytest

from bot.settings import TelephonyConfig
from bot.telephony.codecs import G722Codec, audio_codec
from bot.telephony.endpoint import TelephonySettings
from bot.telephony.rtp import G711Codec, PolyphaseResampler, RtpError
from bot.telephony.sdp import KNOWN_CODECS, build_answer, choose_codec, parse_offer

RATE_HZ = 16_000
FRAME_SAMPLES = 320  # 20 ms at 16 kHz
FRAME_BYTES = 2 * FRAME_SAMPLES


def tone(hz: float, seconds: float, amplitude: float = 8000.0) -> np.ndarray:
    t = np.arange(int(RATE_HZ * seconds)) / RATE_HZ
    return (amplitude * np.sin(2 * np.pi * hz * t)).astype(np.int16)


def round_trip(samples: np.ndarray) -> np.ndarray:
    """Encoded and decoded one 20 ms packet at a time, as on a call."""
    codec = G722Codec()
    out = []
    for start in range(0, samples.size, FRAME_SAMPLES):
        payload = codec.encode(samples[start : start + FRAME_SAMPLES].tobytes())
        assert len(payload) == 160
        pcm = codec.decode(payload)
        assert len(pcm) == FRAME_BYTES
        out.append(pcm)
    return np.frombuffer(b"".join(out), dtype=np.int16).astype(np.float64)


def tone_fit(signal: np.ndarray, hz: float) -> tuple[float, float]:
    """(SNR in dB, amplitude) of the best-fitting sine at hz: what is not that
    sine counts as noise, whatever the codec's delay."""
    t = np.arange(signal.size) / RATE_HZ
    basis = np.stack([np.sin(2 * np.pi * hz * t), np.cos(2 * np.pi * hz * t)], axis=1)
    coef = np.linalg.lstsq(basis, signal, rcond=None)[0]
    fit = basis @ coef
    snr = 10 * np.log10(np.sum(fit**2) / np.sum((signal - fit) ** 2))
    return float(snr), float(np.hypot(*coef))


def peak_hz(signal: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(signal * np.hanning(signal.size)))
    return float(np.argmax(spectrum) * RATE_HZ / signal.size)


@pytest.mark.parametrize(("hz", "min_snr_db"), [(1000, 35.0), (6000, 20.0)])
def test_tones_survive_a_round_trip(hz: int, min_snr_db: float) -> None:
    decoded = round_trip(tone(hz, 1.0))
    steady = decoded[1600:]  # after the first 100 ms
    snr, amplitude = tone_fit(steady, hz)
    assert snr > min_snr_db  # measured: 47 dB at 1 kHz, 27 dB at 6 kHz
    assert abs(20 * np.log10(amplitude / 8000)) < 1.0
    assert abs(peak_hz(steady) - hz) < 5


def test_six_khz_is_what_g711_loses() -> None:
    """The same 6 kHz tone down to 8 kHz, through PCMU and back up, as a G.711
    call carries it: gone, where G.722 kept it (above)."""
    down = PolyphaseResampler(up=1, down=2, rate_hz=RATE_HZ)
    up = PolyphaseResampler(up=2, down=1, rate_hz=RATE_HZ)
    pcmu = G711Codec("PCMU")
    narrow = up.process(pcmu.decode(pcmu.encode(down.process(tone(6000, 1.0).tobytes()))))
    steady = np.frombuffer(narrow, dtype=np.int16).astype(np.float64)[1600:]
    level_db = 20 * np.log10(np.sqrt(np.mean(steady**2)) / (8000 / np.sqrt(2)))
    assert level_db < -40


def test_frames_and_payload_sizes() -> None:
    codec = G722Codec()
    assert len(codec.encode(b"\0" * FRAME_BYTES)) == 160
    assert len(codec.encode(b"\0" * 3 * FRAME_BYTES)) == 480
    assert codec.encode(b"") == b""
    assert len(codec.decode(b"\x55" * 160)) == FRAME_BYTES
    assert len(codec.decode(b"\x55" * 7)) == 28  # no framing: two samples per byte
    assert codec.decode(b"") == b""
    with pytest.raises(RtpError, match="whole 20 ms frames"):
        codec.encode(b"\0" * (FRAME_BYTES - 2))


def test_one_call_encodes_the_same_whatever_the_chunks() -> None:
    """The encoder keeps its state between packets: one long call of encode()
    and one call per packet give the same bytes."""
    samples = tone(1000, 0.2).tobytes()
    whole = G722Codec().encode(samples)
    codec = G722Codec()
    chunked = b"".join(
        codec.encode(samples[i : i + FRAME_BYTES]) for i in range(0, len(samples), FRAME_BYTES)
    )
    assert chunked == whole
    assert len(whole) == len(samples) // 4


def test_silence_payload() -> None:
    codec = G722Codec()
    assert len(codec.silence_payload(FRAME_SAMPLES)) == 160
    assert len(codec.silence_payload(100)) == 50
    assert codec.silence_payload(0) == b""
    with pytest.raises(RtpError, match="pairs"):
        codec.silence_payload(3)
    heard = np.frombuffer(G722Codec().decode(codec.silence_payload(3200)), dtype=np.int16)
    assert np.abs(heard).max() < 50


def test_silence_payload_leaves_the_stream_alone() -> None:
    samples = tone(1000, 0.1).tobytes()
    plain, interrupted = G722Codec(), G722Codec()
    expected = plain.encode(samples[:FRAME_BYTES]) + plain.encode(samples[FRAME_BYTES:])
    first = interrupted.encode(samples[:FRAME_BYTES])
    interrupted.silence_payload(FRAME_SAMPLES)
    assert first + interrupted.encode(samples[FRAME_BYTES:]) == expected


def test_rates_match_sdp_and_give_160_timestamp_ticks_per_packet() -> None:
    for name in KNOWN_CODECS:
        codec = audio_codec(name.lower())
        assert codec.name == name
        assert KNOWN_CODECS[name] == (codec.clock_rate_hz, codec.sample_rate_hz)
        assert codec.clock_rate_hz * 20 // 1000 == 160
    assert isinstance(audio_codec("G722"), G722Codec)
    assert audio_codec("G722").sample_rate_hz == RATE_HZ
    with pytest.raises(RtpError, match="unsupported codec"):
        audio_codec("OPUS")


OFFER = (
    "v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\n"
    "m=audio 40000 RTP/AVP 0 8 9 101\r\n"
    "a=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:9 G722/8000\r\n"
    "a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=ptime:20\r\n"
)


def test_the_default_preference_picks_g722_when_offered() -> None:
    preference = list(TelephonySettings().codecs)
    assert preference == TelephonyConfig().codecs.split(",") == ["G722", "PCMU", "PCMA"]
    offer = parse_offer(OFFER)
    codec = choose_codec(offer, preference)
    assert codec is not None
    assert (codec.name, codec.payload_type, codec.clock_rate, codec.sample_rate) == (
        "G722",
        9,
        8000,
        16000,
    )
    answer = build_answer("10.0.0.2", 20000, codec, offer.dtmf_payload_type, "sendrecv", 1, 1)
    text = answer.decode()
    assert "m=audio 20000 RTP/AVP 9 101\r\n" in text
    assert "a=rtpmap:9 G722/8000\r\n" in text
    narrowband = parse_offer(OFFER.replace(" 8 9 101", " 8 101"))
    fallback = choose_codec(narrowband, preference)
    assert fallback is not None and fallback.name == "PCMU"
    assert choose_codec(offer, ["PCMA", "G722"]) == choose_codec(offer, ["PCMA"])
