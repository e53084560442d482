"""Agents' voices joined to a held call.

While a caller waits on hold, the hold controller asks the bridge to follow
the call's voice links (``bot.queue.voice``): a new offer from the agent who
took the call, or from a supervisor, is answered with an ``AgentLink``. Then:

- the agent hears the caller (and a whispering supervisor, mixed in);
- the caller hears the agent (played into the call's channel, so the
  recording has it as it has the bot's voice) unless the agent holds them;
- a listening supervisor hears both;
- the agent's words are transcribed by a recogniser of their own and kept in
  the call's story as the agent's (``Agent`` in the live transcript).

An agent's link that fails, closes, or falls silent (a closed tab) puts the
caller back in line where they were, with an apology; the queue item
survives. A link replaced by a newer one (a reload, a second tab) is closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
from aiortc import RTCIceServer

from bot.agent_voice.link import AgentLink, LinkError, is_sound
from bot.call import Call, CallEngine
from bot.events import AgentSpeech
from bot.pcm import FRAME_BYTES
from bot.queue.voice import VoiceLink, VoiceSignals
from bot.session.contracts import Channel, Recogniser
from bot.session.recognition import RecognitionStage

log = logging.getLogger(__name__)

# Agent audio played to the caller in pieces of this many frames.
PLAY_FRAMES = 3
# Queued agent audio beyond this is dropped: the caller must not hear the
# agent later and later.
MAX_BEHIND_FRAMES = 15


@dataclass
class _Open:
    row: VoiceLink
    link: AgentLink
    heard_audio: bool = False
    whisper: deque[bytes] = field(default_factory=deque)


class VoiceBridge:
    """The voice links of one held call."""

    def __init__(
        self,
        engine: CallEngine,
        call: Call,
        channel: Channel,
        signals: VoiceSignals,
        ice_servers: Sequence[RTCIceServer] = (),
        new_recogniser: Callable[[], Recogniser] | None = None,
        lost_after_seconds: float = 5.0,
    ) -> None:
        self._engine = engine
        self._call = call
        self._channel = channel
        self.signals = signals
        self._ice_servers = tuple(ice_servers)
        self._new_recogniser = new_recogniser
        self._lost_after = lost_after_seconds
        self._open: dict[int, _Open] = {}
        self._to_caller: deque[bytes] = deque()
        self._audio_ready = asyncio.Event()
        self._player: asyncio.Task[None] | None = None
        self._recognition: RecognitionStage | None = None
        self._transcribing: asyncio.Task[None] | None = None
        self._agent_frames: asyncio.Queue[bytes] = asyncio.Queue()
        self.on_hold = False
        # Set by the hold controller: the lock its speech and music play under,
        # and what stops the music before the agent's voice plays.
        self._playing = asyncio.Lock()
        self._make_way: Callable[[], Awaitable[None]] | None = None
        self._cut_in: Callable[[], None] | None = None
        self._voice_heard = False
        # Set when the agent's audio was lost; the hold controller acts on it.
        self.agent_lost: asyncio.Event = asyncio.Event()
        self.lost_link: VoiceLink | None = None

    @property
    def agent_connected(self) -> bool:
        return any(o.row.role == "agent" and o.heard_audio for o in self._open.values())

    @property
    def talking(self) -> bool:
        """The agent's voice reaches the caller now (connected, not holding them)."""
        return self.agent_connected and not self.on_hold

    def attach(
        self,
        playing: asyncio.Lock,
        make_way: Callable[[], Awaitable[None]],
        cut_in: Callable[[], None] | None = None,
    ) -> None:
        """Plays the agent's voice under the hold controller's lock (one
        sound at a time on the channel), after ``make_way`` stops the music.
        ``cut_in`` stops what the bot is saying on hold once the agent speaks:
        the agent's first words are not held back behind an announcement."""
        self._playing = playing
        self._make_way = make_way
        self._cut_in = cut_in

    async def sync(self) -> None:
        """Acts on the call's links in the database: answers new offers,
        closes replaced ones, follows the agent's hold switch."""
        loop = asyncio.get_running_loop()
        item_id = self._call.queue_item_id
        if item_id is None:
            return
        try:
            rows = await loop.run_in_executor(None, self.signals.pending, item_id)
        except Exception as exc:  # the database is down: keep what is connected
            log.error("call %s: voice links unreadable: %s", self._call.call_id, exc)
            return
        current = {row.id: row for row in rows}
        for link_id in list(self._open):
            if link_id not in current:
                await self._close(link_id)  # replaced, or finished elsewhere
        for row in rows:
            if row.id in self._open:
                self._open[row.id].row = row
            elif row.state == "offered":
                await self._answer(row)
        agent_rows = [o.row for o in self._open.values() if o.row.role == "agent"]
        self.on_hold = bool(agent_rows) and agent_rows[-1].on_hold

    def caller_frame(self, frame: bytes) -> None:
        """A 20 ms frame of the caller's audio: to the agent and the listeners."""
        whispers = [o for o in self._open.values() if o.row.role == "whisper"]
        for entry in self._open.values():
            if entry.row.role == "agent":
                mixed = frame
                for whisper in whispers:
                    if whisper.whisper:
                        mixed = _mix(mixed, whisper.whisper.popleft())
                entry.link.send(b"\0" * FRAME_BYTES if self.on_hold else mixed)
            elif entry.row.role == "monitor":
                entry.link.send(frame, "caller")

    async def close(self) -> None:
        for link_id in list(self._open):
            await self._close(link_id, state="closed")
        for task in (self._player, self._transcribing):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if self._recognition is not None:
            self._recognition.close()

    # -- links

    async def _answer(self, row: VoiceLink) -> None:
        loop = asyncio.get_running_loop()
        link_id = row.id

        def heard(pcm: bytes) -> None:
            self._heard(link_id, pcm)

        def lost(why: str) -> None:
            self._lost(link_id, why)

        link = AgentLink(
            heard, lost, self._ice_servers, self._lost_after, expects_audio=row.role != "monitor"
        )
        try:
            answer = await link.answer(row.offer)
        except (LinkError, ValueError) as exc:
            log.warning("call %s: the %s's offer refused: %s", row.call_id, row.role, exc)
            await link.close()
            await loop.run_in_executor(None, self.signals.set_state, row.id, "failed", str(exc))
            return
        self._open[row.id] = _Open(row, link)
        await loop.run_in_executor(None, self.signals.answer, row.id, answer)
        log.info(
            "call %s: %s audio answered (link %d) at call time %.2f s",
            row.call_id, row.role, row.id, self._call.t_ms() / 1000,
        )  # fmt: skip
        if row.role == "agent":
            self._start_agent_audio()

    async def _close(self, link_id: int, state: str | None = None) -> None:
        entry = self._open.pop(link_id, None)
        if entry is None:
            return
        await entry.link.close()
        if state is not None:
            loop = asyncio.get_running_loop()
            with contextlib.suppress(Exception):
                await loop.run_in_executor(None, self.signals.set_state, link_id, state)

    def _heard(self, link_id: int, pcm: bytes) -> None:
        entry = self._open.get(link_id)
        if entry is None:
            return
        role = entry.row.role
        if role == "whisper":
            entry.whisper.append(pcm)
            while len(entry.whisper) > MAX_BEHIND_FRAMES:
                entry.whisper.popleft()
            return
        if role != "agent":
            return  # a listener's microphone goes nowhere
        if not entry.heard_audio:
            entry.heard_audio = True
            asyncio.ensure_future(self._mark(link_id, "connected"))
        for other in self._open.values():
            if other.row.role == "monitor":
                other.link.send(pcm, "agent")  # mixed with the caller for the listener
        self._agent_frames.put_nowait(pcm)
        if self.on_hold:
            return
        if self._cut_in is not None and is_sound(pcm):
            self._cut_in()
        self._to_caller.append(pcm)
        while len(self._to_caller) > MAX_BEHIND_FRAMES:
            self._to_caller.popleft()
        self._audio_ready.set()

    def _lost(self, link_id: int, why: str) -> None:
        entry = self._open.get(link_id)
        if entry is None:
            return
        log.warning("call %s: %s audio lost: %s", self._call.call_id, entry.row.role, why)
        asyncio.ensure_future(self._close(link_id, state="lost"))
        if entry.row.role == "agent":
            self.lost_link = entry.row
            self.agent_lost.set()

    async def _mark(self, link_id: int, state: str) -> None:
        loop = asyncio.get_running_loop()
        with contextlib.suppress(Exception):
            await loop.run_in_executor(None, self.signals.set_state, link_id, state)

    # -- the agent's voice

    def _start_agent_audio(self) -> None:
        if self._player is None:
            self._player = asyncio.create_task(self._play_to_caller())
        if self._transcribing is None and self._new_recogniser is not None:
            self._recognition = RecognitionStage(self._new_recogniser())
            self._transcribing = asyncio.create_task(self._transcribe())

    async def _play_to_caller(self) -> None:
        while True:
            await self._audio_ready.wait()
            self._audio_ready.clear()
            while self._to_caller:
                if not self.talking:
                    self._to_caller.clear()
                    break
                async with self._playing:
                    if self._make_way is not None:
                        await self._make_way()
                    if not self._voice_heard:
                        self._voice_heard = True
                        log.info(
                            "call %s: the agent's voice reaches the caller at call time %.2f s",
                            self._call.call_id, self._call.t_ms() / 1000,
                        )  # fmt: skip
                    count = min(PLAY_FRAMES, len(self._to_caller))
                    pieces = [self._to_caller.popleft() for _ in range(count)]
                    await self._channel.play(b"".join(pieces))

    async def _transcribe(self) -> None:
        assert self._recognition is not None
        recognition = self._recognition
        while True:
            frame = await self._agent_frames.get()
            heard = await recognition.feed(frame)
            if heard is not None and heard.is_final and heard.text:
                self._said(heard.text)

    def _said(self, text: str) -> None:
        call = self._call
        self._engine.record_agent_speech(call, text)
        call.emit(AgentSpeech(call.call_id, call.t_ms(), text=text, turn_id=call.next_turn_id()))


def _mix(a: bytes, b: bytes) -> bytes:
    x = np.frombuffer(a, dtype="<i2").astype(np.int32)
    y = np.frombuffer(b, dtype="<i2").astype(np.int32)
    n = min(x.size, y.size)
    out = x.copy()
    out[:n] += y[:n]
    return bytes(np.clip(out, -32768, 32767).astype("<i2").tobytes())
