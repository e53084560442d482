"""Offers the agent's link refuses, with a reason the console can show
(no network is touched: they fail before any candidate is gathered)."""

from __future__ import annotations

import asyncio

import pytest

from bot.agent_voice.link import AgentLink, LinkError, ice_servers

HEAD = (
    "v=0\r\no=- 1 1 IN IP4 10.77.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0\r\n"
    "a=msid-semantic:WMS *\r\n"
)
MEDIA = (
    "c=IN IP4 10.77.0.1\r\na=sendrecv\r\na=mid:0\r\na=rtcp-mux\r\n"
    "a=ice-ufrag:abcd\r\na=ice-pwd:abcdefghijklmnopqrstuvwx\r\n"
    "a=fingerprint:sha-256 " + ":".join(["AB"] * 32) + "\r\na=setup:actpass\r\n"
)


def _answer(sdp: str) -> str:
    async def attempt() -> str:
        link = AgentLink(lambda pcm: None, lambda why: None)
        try:
            return await link.answer(sdp)
        finally:
            await link.close()

    return asyncio.run(attempt())


def test_an_offer_without_a_common_audio_codec_is_refused() -> None:
    amr_only = HEAD + "m=audio 9 UDP/TLS/RTP/SAVPF 97\r\n" + MEDIA + "a=rtpmap:97 AMR/8000\r\n"
    with pytest.raises(LinkError, match="no audio codec in common"):
        _answer(amr_only)


def test_an_offer_without_audio_is_refused() -> None:
    video = HEAD + "m=video 9 UDP/TLS/RTP/SAVPF 96\r\n" + MEDIA + "a=rtpmap:96 VP8/90000\r\n"
    with pytest.raises(LinkError):
        _answer(video)


def test_ice_servers_come_only_from_the_settings() -> None:
    assert ice_servers("") == []
    turn, stun = ice_servers(
        "turn:turn.example.com:3478?transport=udp, stun:stun.example.com", "u", "p"
    )
    assert (turn.username, turn.credential) == ("u", "p")
    assert stun.username is None
    with pytest.raises(ValueError, match="not a stun: or turn: URL"):
        ice_servers("http://example.com")


def test_a_listener_hears_the_caller_and_the_agent_mixed() -> None:
    """Two sources are summed frame by frame (not queued one after the other,
    which would play each at half speed)."""
    import numpy as np

    from bot.agent_voice.link import PcmTrack

    caller = np.full(320, 1000, dtype="<i2").tobytes()
    agent = np.full(320, 250, dtype="<i2").tobytes()
    track = PcmTrack()
    track.push(caller * 2, "caller")
    track.push(agent, "agent")
    assert track.queued_ms == 40

    async def two_frames() -> list[np.ndarray]:
        return [(await track.recv()).to_ndarray().reshape(-1) for _ in range(2)]

    first, second = asyncio.run(two_frames())
    assert set(first.tolist()) == {1250}  # both sides at once
    assert set(second.tolist()) == {1000}  # the caller alone, the agent had no more
