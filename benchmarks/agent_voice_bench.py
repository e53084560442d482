"""Agents' voice benchmark: one-way audio latency and CPU per connected agent.

Writes benchmarks/results/agent_voice.json.

Two processes inside a private network namespace (aiortc finds no usable
candidate on loopback alone; nothing leaves the namespace): the bot's side
runs the product's ``AgentLink`` for each agent, the agents' side runs
browser-like aiortc peers (Opus, DTLS-SRTP, as a browser's would be). Offers
and answers pass through pipes. Each side sends a short 1 kHz pulse every
half second on every link and notes when; the other side notes when each
pulse arrives decoded (the first 20 ms frame above -30 dBFS after quiet).
Both processes read the same system-wide monotonic clock.

- ``agent_to_caller_ms``: pushed by the agent's peer → decoded at the bot's
  link (what the bridge then plays into the caller's channel; the channel's
  own output delay is not included).
- ``caller_to_agent_ms``: pushed into the bot's link → decoded at the
  agent's peer (the browser's jitter buffer and output are not included).
- ``cpu_per_agent``: the bot process's CPU time over wall time, per link,
  with AGENTS links carrying audio both ways.

Run: .venv/bin/python benchmarks/agent_voice_bench.py (needs root for the
network namespace, as the tests do).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

PROJECT_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT_DIR))

RESULTS = PROJECT_DIR / "benchmarks" / "results" / "agent_voice.json"
AGENTS = 4
SECONDS = 20.0
PULSE_EVERY_S = 0.5
RATE = 16000
FRAME = 320
PULSE = (8000 * np.sin(2 * np.pi * 1000 * np.arange(FRAME * 2) / RATE)).astype("<i2").tobytes()
LOUD = 10 ** (-30 / 20) * 32768


def loud(frame: bytes) -> bool:
    samples = np.frombuffer(frame, dtype="<i2").astype(np.float64)
    return bool(samples.size) and float(np.sqrt(np.mean(samples**2))) > LOUD


class Onsets:
    """Arrival times of pulses: the first loud frame after a quiet one."""

    def __init__(self) -> None:
        self.times: list[float] = []
        self._quiet = True

    def frame(self, pcm: bytes) -> None:
        is_loud = loud(pcm)
        if is_loud and self._quiet:
            self.times.append(time.monotonic())
        self._quiet = not is_loud


async def pulses(send: Any, sent: list[float], offset: float, stop_at: float) -> None:
    await asyncio.sleep(offset)
    while time.monotonic() < stop_at:
        send(PULSE)
        sent.append(time.monotonic())
        await asyncio.sleep(PULSE_EVERY_S)


async def bot_side() -> None:
    from bot.agent_voice.link import AgentLink

    links, onsets, sent = [], [], []
    for _ in range(AGENTS):
        offer = json.loads(sys.stdin.readline())
        heard = Onsets()
        link = AgentLink(heard.frame, lambda why: None)
        answer = await link.answer(offer["sdp"])
        print(json.dumps({"sdp": answer}), flush=True)
        links.append(link)
        onsets.append(heard)
        sent.append([])
    start = json.loads(sys.stdin.readline())["start"]
    stop_at = start + SECONDS
    cpu_before, wall_before = time.process_time(), time.monotonic()
    await asyncio.gather(
        *(pulses(link.send, sent[i], 0.25 + 0.05 * i, stop_at) for i, link in enumerate(links)),
        asyncio.sleep(stop_at - time.monotonic() + 1.0),
    )
    cpu = (time.process_time() - cpu_before) / (time.monotonic() - wall_before)
    for link in links:
        await link.close()
    print(json.dumps({"sent": sent, "heard": [o.times for o in onsets], "cpu": cpu}), flush=True)


async def agent_side() -> None:
    import av
    from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
    from aiortc.mediastreams import MediaStreamError

    from bot.agent_voice.link import PcmTrack

    peers, mics, onsets, sent = [], [], [], []

    async def listen(track: Any, heard: Onsets) -> None:
        resampler = av.AudioResampler(format="s16", layout="mono", rate=RATE)
        pending = b""
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            for out in resampler.resample(frame):
                pending += out.to_ndarray().astype("<i2").tobytes()
            while len(pending) >= FRAME * 2:
                heard.frame(pending[: FRAME * 2])
                pending = pending[FRAME * 2 :]

    for _ in range(AGENTS):
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        mic = PcmTrack()
        pc.addTrack(mic)
        heard = Onsets()
        pc.on("track", lambda track, heard=heard: asyncio.ensure_future(listen(track, heard)))
        await pc.setLocalDescription(await pc.createOffer())
        print(json.dumps({"sdp": pc.localDescription.sdp}), flush=True)
        answer = json.loads(sys.stdin.readline())["sdp"]
        await pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
        peers.append(pc)
        mics.append(mic)
        onsets.append(heard)
        sent.append([])
    await asyncio.sleep(2.0)  # ICE and DTLS settle
    start = time.monotonic()
    print(json.dumps({"start": start}), flush=True)
    await asyncio.gather(
        *(pulses(mic.push, sent[i], 0.05 * i, start + SECONDS) for i, mic in enumerate(mics)),
        asyncio.sleep(SECONDS + 1.0),
    )
    for pc in peers:
        await pc.close()
    print(json.dumps({"sent": sent, "heard": [o.times for o in onsets]}), flush=True)


def latencies(sent: list[list[float]], heard: list[list[float]]) -> list[float]:
    """Each arrival matched to the latest pulse sent before it on its link."""
    out = []
    for pushes, arrivals in zip(sent, heard, strict=True):
        for arrival in arrivals:
            before = [p for p in pushes if p <= arrival]
            if before and arrival - before[-1] < PULSE_EVERY_S:
                out.append((arrival - before[-1]) * 1000)
    return out


def pct(values: list[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)), 1) if values else None


def main() -> None:
    from tests.netns import NetNamespace

    netns = NetNamespace()
    netns.start()
    me = [sys.executable, str(Path(__file__).resolve())]
    bot = netns.popen([*me, "--side", "bot"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                      text=True, cwd=PROJECT_DIR)  # fmt: skip
    agents = netns.popen([*me, "--side", "agents"], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, text=True, cwd=PROJECT_DIR)  # fmt: skip
    assert bot.stdin and bot.stdout and agents.stdin and agents.stdout
    for _ in range(AGENTS):
        bot.stdin.write(agents.stdout.readline())
        bot.stdin.flush()
        agents.stdin.write(bot.stdout.readline())
        agents.stdin.flush()
    bot.stdin.write(agents.stdout.readline())  # the start time
    bot.stdin.flush()
    bot_result = json.loads(bot.stdout.readline())
    agent_result = json.loads(agents.stdout.readline())
    bot.wait(30)
    agents.wait(30)
    to_caller = latencies(agent_result["sent"], bot_result["heard"])
    to_agent = latencies(bot_result["sent"], agent_result["heard"])
    report = {
        "benchmark": "agent_voice",
        "measured_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "setup": f"{AGENTS} agents at once, pulses both ways every {PULSE_EVERY_S} s for "
        f"{SECONDS:.0f} s, aiortc peers as browsers, in a network namespace",
        "agent_to_caller_ms": {"p50": pct(to_caller, 50), "p95": pct(to_caller, 95)},
        "caller_to_agent_ms": {"p50": pct(to_agent, 50), "p95": pct(to_agent, 95)},
        "pulses_measured": {"agent_to_caller": len(to_caller), "caller_to_agent": len(to_agent)},
        "cpu_per_agent": round(bot_result["cpu"] / AGENTS, 3),
        "goals": {"one_way_p50_ms": 150},
    }
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--side", choices=("bot", "agents"))
    side = parser.parse_args().side
    if side == "bot":
        asyncio.run(bot_side())
    elif side == "agents":
        asyncio.run(agent_side())
    else:
        main()
