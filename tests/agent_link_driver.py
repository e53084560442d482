"""Two WebRTC ends in one process, for the agent-audio link's tests: a
browser-like offerer (aiortc) sending a tone, and ``AgentLink`` answering and
sending another tone back. Run inside a test's network namespace (aiortc
finds no usable candidate on loopback alone); prints one JSON object: the
dominant frequency and level each side heard, and frame counts.

``--close-offerer-after S`` closes the offerer without a word after S
seconds (a tab closed mid-call) and reports when the link noticed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

import av
import numpy as np
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError

from bot.agent_voice.link import AgentLink, PcmTrack
from bot.pcm import SAMPLE_RATE_HZ


def tone(hz: float, seconds: float, level: float = 8000.0) -> bytes:
    t = np.arange(int(seconds * SAMPLE_RATE_HZ)) / SAMPLE_RATE_HZ
    return (level * np.sin(2 * np.pi * hz * t)).astype("<i2").tobytes()


def dominant(pcm: bytes) -> tuple[float, float]:
    samples = np.frombuffer(pcm, dtype="<i2").astype(np.float64)
    if samples.size < 1600:
        return 0.0, 0.0
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(samples.size)))
    freqs = np.fft.rfftfreq(samples.size, 1 / SAMPLE_RATE_HZ)
    rms = float(np.sqrt(np.mean(samples**2)))
    return float(freqs[int(np.argmax(spectrum))]), rms


async def main(args: argparse.Namespace) -> None:
    heard_by_link: list[bytes] = []
    lost: list[tuple[float, str]] = []
    link = AgentLink(heard_by_link.append, lambda why: lost.append((time.monotonic(), why)))
    browser = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    mic = PcmTrack()
    browser.addTrack(mic)
    heard_by_browser: list[bytes] = []

    async def listen(track) -> None:  # type: ignore[no-untyped-def]
        resampler = av.AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE_HZ)
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            for out in resampler.resample(frame):
                heard_by_browser.append(out.to_ndarray().astype("<i2").tobytes())

    browser.on("track", lambda track: asyncio.ensure_future(listen(track)))
    await browser.setLocalDescription(await browser.createOffer())
    answer = await link.answer(browser.localDescription.sdp)
    await browser.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
    started = time.monotonic()
    closed_at = None
    while time.monotonic() - started < args.seconds:
        if mic.queued_ms < 200:
            mic.push(tone(440, 0.1))
        if link.track.queued_ms < 200:
            link.send(tone(300, 0.1))
        late = time.monotonic() - started > args.close_offerer_after
        if args.close_offerer_after and closed_at is None and late:
            mic.stop()
            await browser.close()
            closed_at = time.monotonic()
        if closed_at is not None and lost:
            break
        await asyncio.sleep(0.02)
    link_pcm = b"".join(heard_by_link[-100:])
    browser_pcm = b"".join(heard_by_browser[-100:])
    result = {
        "link_heard_hz": dominant(link_pcm)[0],
        "link_heard_rms": dominant(link_pcm)[1],
        "browser_heard_hz": dominant(browser_pcm)[0],
        "browser_heard_rms": dominant(browser_pcm)[1],
        "link_frames": len(heard_by_link),
        "lost": lost[0][1] if lost else None,
        "noticed_after_s": round(lost[0][0] - closed_at, 2) if lost and closed_at else None,
    }
    await link.close()
    await browser.close()
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--close-offerer-after", type=float, default=0.0)
    asyncio.run(main(parser.parse_args()))
