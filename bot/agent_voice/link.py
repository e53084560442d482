"""One browser's audio on a call: a WebRTC peer connection (aiortc).

The browser makes the offer (with all its ICE candidates, no trickling: the
offer and answer travel through the database); ``AgentLink.answer`` returns
the answer with ours. Audio to the browser is pushed as 16 kHz PCM and paced
in real time by ``PcmTrack`` (silence when nothing is queued, so the stream
never stalls); audio from the browser arrives at ``on_audio`` as 16 kHz mono
PCM in 20 ms frames. ``on_lost`` fires once when the connection fails or
closes, or when the browser's audio stops for ``silence_limit_seconds``
(a closed tab often says nothing: its packets just stop).

ICE servers come from settings (empty by default: on a LAN host candidates
suffice; agents outside it need a TURN server, see docs/agent_voice.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

import av
import numpy as np
from aiortc import (
    MediaStreamTrack,
    RTCConfiguration,
    RTCIceServer,
    RTCPeerConnection,
    RTCSessionDescription,
)
from aiortc.exceptions import InvalidAccessError, InvalidStateError, OperationError
from aiortc.mediastreams import MediaStreamError

from bot.pcm import FRAME_BYTES, FRAME_MS, SAMPLE_RATE_HZ

log = logging.getLogger(__name__)
# A peak this high (about -44 dBFS) is sound, not a muted or idle microphone's hiss.
SOUND_PEAK = 200

FRAME_SAMPLES = FRAME_BYTES // 2
# Audio queued for the browser beyond this is dropped (oldest first): a
# stalled consumer must not build up seconds of delay.
MAX_QUEUED_MS = 400


def ice_servers(urls: str, username: str = "", password: str = "") -> list[RTCIceServer]:
    """The ICE servers of the settings (comma-separated URLs); TURN ones get
    the credentials. Empty: none (never a public STUN server by default)."""
    servers = []
    for url in (u.strip() for u in urls.split(",")):
        if not url:
            continue
        if not url.startswith(("stun:", "turn:", "turns:")):
            raise ValueError(f"agent_voice.ice_servers: {url!r} is not a stun: or turn: URL")
        if url.startswith("turn"):
            servers.append(RTCIceServer(urls=url, username=username, credential=password))
        else:
            servers.append(RTCIceServer(urls=url))
    return servers


class LinkError(RuntimeError):
    """An offer that cannot be answered (no audio, no usable codec)."""


class PcmTrack(MediaStreamTrack):
    """An audio track fed with 16 kHz mono PCM, sent in real time."""

    kind = "audio"

    def __init__(self) -> None:
        super().__init__()
        # One queue per source (a listener hears the caller and the agent
        # mixed): each 20 ms frame sums the next frame of every source.
        self._queues: dict[str, deque[bytes]] = {}
        self._pending: dict[str, bytes] = {}
        self._pts = 0
        self._started: float | None = None
        self._time_base = fractions.Fraction(1, SAMPLE_RATE_HZ)

    def push(self, pcm: bytes, source: str = "main") -> None:
        queue = self._queues.setdefault(source, deque())
        data = self._pending.get(source, b"") + pcm
        whole = len(data) - len(data) % FRAME_BYTES
        for i in range(0, whole, FRAME_BYTES):
            queue.append(data[i : i + FRAME_BYTES])
        self._pending[source] = data[whole:]
        while len(queue) * FRAME_MS > MAX_QUEUED_MS:
            queue.popleft()

    @property
    def queued_ms(self) -> int:
        return max((len(q) for q in self._queues.values()), default=0) * FRAME_MS

    def _next_frame(self) -> bytes:
        frames = [q.popleft() for q in self._queues.values() if q]
        if not frames:
            return b"\0" * FRAME_BYTES
        if len(frames) == 1:
            return frames[0]
        mixed = np.sum([np.frombuffer(f, dtype="<i2").astype(np.int32) for f in frames], axis=0)
        return bytes(np.clip(mixed, -32768, 32767).astype("<i2").tobytes())

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        now = time.monotonic()
        if self._started is None:
            self._started = now
        due = self._started + self._pts / SAMPLE_RATE_HZ
        if due > now:
            await asyncio.sleep(due - now)
        elif now - due > 0.2:
            # Far behind (the loop was busy): start the clock again, don't burst.
            self._started = now - self._pts / SAMPLE_RATE_HZ
        samples = np.frombuffer(self._next_frame(), dtype="<i2").reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(samples, format="s16", layout="mono")
        frame.sample_rate = SAMPLE_RATE_HZ
        frame.pts = self._pts
        frame.time_base = self._time_base
        self._pts += FRAME_SAMPLES
        return frame


class AgentLink:
    """The peer connection to one browser, answering its offer."""

    def __init__(
        self,
        on_audio: Callable[[bytes], None],
        on_lost: Callable[[str], None],
        ice_servers: Sequence[RTCIceServer] = (),
        silence_limit_seconds: float = 5.0,
        expects_audio: bool = True,
    ) -> None:
        self._pc = RTCPeerConnection(RTCConfiguration(iceServers=list(ice_servers)))
        self.track = PcmTrack()
        self._on_audio = on_audio
        self._on_lost = on_lost
        self._silence_limit = silence_limit_seconds
        # A listener's browser sends nothing: its silence means nothing.
        self._expects_audio = expects_audio
        self._tasks: set[asyncio.Task[None]] = set()
        self._last_audio: float | None = None
        self._answered_at: float | None = None
        self._heard_sound = False
        self._lost = False
        self._closed = False
        self.frames_in = 0
        self._pc.on("track", self._track_arrived)
        self._pc.on("connectionstatechange", self._state_changed)

    @property
    def state(self) -> str:
        return str(self._pc.connectionState)

    async def answer(self, offer_sdp: str) -> str:
        """The SDP answer to the browser's offer; LinkError if it has no audio."""
        try:
            await self._pc.setRemoteDescription(RTCSessionDescription(sdp=offer_sdp, type="offer"))
        except OperationError as exc:
            raise LinkError("no audio codec in common with the browser (Opus or G.711)") from exc
        except (ValueError, KeyError, InvalidAccessError, InvalidStateError) as exc:
            raise LinkError(f"the browser's offer cannot be used: {exc}") from exc
        audio = [t for t in self._pc.getTransceivers() if t.kind == "audio"]
        if not audio:
            raise LinkError("the browser offered no audio")
        audio[0].sender.replaceTrack(self.track)
        audio[0].direction = "sendrecv"
        answer = await self._pc.createAnswer()
        if answer is None or "m=audio 0 " in answer.sdp:
            raise LinkError("no audio codec in common with the browser")
        await self._pc.setLocalDescription(answer)
        self._answered_at = time.monotonic()
        if self._expects_audio:
            self._watch(self._watch_silence())
        return str(self._pc.localDescription.sdp)

    def send(self, pcm: bytes, source: str = "main") -> None:
        """Queues 16 kHz mono PCM for the browser; audio of different sources
        (the caller, the agent) is mixed."""
        if not self._closed:
            self.track.push(pcm, source)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for task in list(self._tasks):
            task.cancel()
        self.track.stop()
        with contextlib.suppress(Exception):
            await self._pc.close()

    # -- inside

    def _watch(self, work: Any) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _track_arrived(self, track: MediaStreamTrack) -> None:
        if track.kind == "audio":
            self._watch(self._receive(track))

    async def _receive(self, track: MediaStreamTrack) -> None:
        resampler = av.AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE_HZ)
        pending = b""
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                self._lose("the browser's audio ended")
                return
            if not isinstance(frame, av.AudioFrame):
                continue
            if self._last_audio is None:
                self._log_arrival("first audio frame")
            self._last_audio = time.monotonic()
            for out in resampler.resample(frame):
                pending += bytes(out.to_ndarray().astype("<i2").tobytes())
            whole = len(pending) - len(pending) % FRAME_BYTES
            if not self._heard_sound and whole and is_sound(pending[:whole]):
                self._heard_sound = True
                self._log_arrival("first sound")
            for i in range(0, whole, FRAME_BYTES):
                self.frames_in += 1
                self._on_audio(pending[i : i + FRAME_BYTES])
            pending = pending[whole:]

    def _log_arrival(self, what: str) -> None:
        since = time.monotonic() - (self._answered_at or time.monotonic())
        log.info("agent audio: %s from the browser %.2f s after the answer", what, since)

    async def _watch_silence(self) -> None:
        started = time.monotonic()
        while not self._lost:
            await asyncio.sleep(0.5)
            last = self._last_audio if self._last_audio is not None else started
            # The first audio may take a while (ICE, DTLS): twice the limit then.
            limit = self._silence_limit * (1 if self._last_audio is not None else 2)
            if time.monotonic() - last > limit:
                self._lose(f"no audio from the browser for {limit:.0f} s")

    def _state_changed(self) -> None:
        state = self._pc.connectionState
        log.info("agent audio: connection %s", state)
        if state in ("failed", "closed"):
            self._lose(f"connection {state}")

    def _lose(self, why: str) -> None:
        if self._lost or self._closed:
            return
        self._lost = True
        log.warning("agent audio lost: %s", why)
        self._on_lost(why)


def is_sound(pcm: bytes) -> bool:
    """16-bit PCM that holds sound: its peak reaches ``SOUND_PEAK``."""
    samples = np.frombuffer(pcm, dtype="<i2")
    return bool(samples.size) and int(np.abs(samples.astype(np.int32)).max()) >= SOUND_PEAK
