"""On hold: a voice caller waiting for an agent.

The hold line (``bot.hold.HoldLine``) says what happens at each step of the
wait and follows the queue's change feed; this controller plays the hold
music between steps, speaks what the steps say (music stops first), takes the
caller's words on hold (kept for the agent; a yes to the callback offer
swaps the wait for a callback task) and reports how the wait ended.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING

from bot.call import Call, CallEngine, speak_wait
from bot.events import EndReason
from bot.expectations import is_yes
from bot.hold import HoldLine, convert_to_callback, hold_chunks
from bot.responses import Response
from bot.session.contracts import Channel, Recognised, VoiceSettings
from bot.session.speaking import BotVoice
from bot.session.working import busy

if TYPE_CHECKING:
    from bot.agent_voice.bridge import VoiceBridge

# What the caller hears when the agent's connection is lost.
AGENT_LOST = (
    "I'm sorry, we lost the connection to your colleague. You keep your place in the "
    "queue, and the next colleague will have everything you've told us."
)

log = logging.getLogger(__name__)


class HoldController:
    def __init__(
        self,
        engine: CallEngine,
        call: Call,
        channel: Channel,
        voice: BotVoice,
        settings: VoiceSettings,
        hold_pcm: bytes,
        bridge: VoiceBridge | None = None,
    ) -> None:
        self._engine = engine
        self._bridge = bridge
        self._call = call
        self._channel = channel
        self._voice = voice
        self._settings = settings
        self._music_pieces = hold_chunks(hold_pcm, settings.hold_music_piece_seconds)
        self._music: asyncio.Task[None] | None = None
        self._speaking = asyncio.Lock()
        if bridge is not None:
            bridge.attach(self._speaking, self._stop_music, self._agent_speaks)
        self._callback_offered = False
        # The bot is saying something to the caller on hold.
        self._saying = False
        self._ended: EndReason | None = None
        self._waiting: asyncio.Future[bool] | None = None

    @staticmethod
    def possible(engine: CallEngine, call: Call, hold_pcm: bytes | None) -> bool:
        """Queued, or with a handoff the queue will take once it is back."""
        queued = call.queue_item_id is not None or engine.awaits_agent(call)
        return hold_pcm is not None and engine.queue is not None and queued

    async def wait(self, caller_number: str | None) -> EndReason | None:
        """Holds the caller until the wait ends: the reason the call ends, or
        None when the agent sends the caller back to the bot."""
        call, settings = self._call, self._settings
        line = HoldLine(
            self._engine,
            call,
            settings.hold_announce_seconds,
            settings.callback_offer_seconds,
            caller_number,
        )
        self._start_music()
        try:
            if call.queue_item_id is None and not await self._until_queued():
                return self._ended or EndReason.TRANSFERRED
            while self._ended is None:
                with busy(self._channel):
                    step = await line.next_step(self._channel.now_ms())
                    await self._follow_voices()
                if step.offers_callback:
                    self._callback_offered = True
                if step.say:
                    await self.say(list(step.say))
                if step.end_reason:
                    return EndReason(step.end_reason)
                if step.back_to_bot:
                    return None
                # A wait the caller's answer can cut short (see say's then_end).
                self._waiting = asyncio.ensure_future(
                    line.wait_for_change(settings.hold_music_piece_seconds)
                )
                await asyncio.wait({self._waiting})
            return self._ended
        finally:
            if self._waiting is not None:
                self._waiting.cancel()
            await self._stop_music()
            line.close()
            if self._bridge is not None:
                await self._bridge.close()

    async def _until_queued(self) -> bool:
        """The queue was away when the call escalated: the caller hears the
        hold music (nothing about a place in line) while the engine tries the
        handoff again; once it is queued, their place. False when it never
        was (the queue refused it, or the call is ending)."""
        call = self._call
        pending = call.pending_handoff
        if pending is not None and self._ended is None:
            await asyncio.wait({pending})  # not cancelled with the wait: the engine owns it
        if call.queue_item_id is None or self._ended is not None:
            return False
        queue, item_id = self._engine.queue, call.queue_item_id
        if queue is None or not self._engine.awaits_agent(call):
            return True
        loop = asyncio.get_running_loop()
        try:
            position = await loop.run_in_executor(None, queue.position, item_id)
            wait = await loop.run_in_executor(None, queue.estimated_wait_seconds, item_id)
        except Exception as exc:  # the hold line reads it again later
            log.warning("call %s: the queue's wait cannot be read: %s", call.call_id, exc)
            return True
        text = self._engine.dialogue_of(call).response_text(Response.QUEUE_POSITION)
        await self.say([text.format(position=position, wait=speak_wait(wait))])
        return True

    @property
    def agent_talking(self) -> bool:
        return self._bridge is not None and self._bridge.talking

    def caller_audio(self, frame: bytes) -> None:
        """The caller's audio while waiting: to the agent on the call, if any."""
        if self._bridge is not None:
            self._bridge.caller_frame(frame)

    async def _follow_voices(self) -> None:
        """Agents' voices: answers new links, lets the agent's voice through
        instead of music, and puts the caller back in line if it is lost."""
        bridge = self._bridge
        if bridge is None:
            return
        await bridge.sync()
        if bridge.agent_lost.is_set():
            bridge.agent_lost.clear()
            lost = bridge.lost_link
            if lost is not None:
                loop = asyncio.get_running_loop()
                try:
                    await loop.run_in_executor(
                        None, bridge.signals.requeue, lost.item_id, lost.agent_id
                    )
                except Exception as exc:
                    log.error("call %s: could not requeue: %s", self._call.call_id, exc)
            await self.say([AGENT_LOST])
        if bridge.talking and self._music is not None:
            await self._stop_music()
        elif not bridge.talking and self._music is None and self._ended is None:
            self._start_music()

    async def say(self, texts: list[str], then_end: EndReason | None = None) -> None:
        async with self._speaking:
            await self._stop_music()
            self._saying = True
            try:
                await self._voice.say(texts, self._call.turn_id)
            finally:
                self._saying = False
            if then_end is not None:
                self._ended = then_end
                if self._waiting is not None:
                    self._waiting.cancel()  # the wait is over now, not at the next step
            talking = self._bridge is not None and self._bridge.talking
            if self._ended is None and not talking:
                self._start_music()

    async def caller_said(self, heard: Recognised, turn_id: int) -> None:
        """The caller's words on hold: for the agent; an answer to the offer."""
        call = self._call
        self._engine.record_caller_speech(call, heard.text, heard.confidence, turn_id)
        if not self._callback_offered:
            return
        self._callback_offered = False
        dialogue = self._engine.dialogue_of(call)
        with busy(self._channel):  # the dialogue and the queue answer in their own time
            number = call.caller_number or await _number_given(self._engine, call)
            converted = (
                is_yes(heard.text)
                and bool(number)
                and await convert_to_callback(self._engine, call, str(number))
            )
        if converted:
            # The wait ends once the caller has heard it is arranged, not before.
            text = dialogue.response_text(Response.CALLBACK_ARRANGED)
            await self.say([text], then_end=EndReason.CALLBACK_ARRANGED)
        else:
            await self.say([dialogue.response_text(Response.KEEP_WAITING)])

    def _agent_speaks(self) -> None:
        """The agent's voice has sound: what the bot is saying stops for it."""
        if self._saying:
            self._saying = False
            log.info("call %s: the agent speaks; the bot stops talking", self._call.call_id)
            self._voice.interrupt()

    def _start_music(self) -> None:
        async def play() -> None:
            while True:
                await self._channel.play(next(self._music_pieces))

        self._music = asyncio.create_task(play())

    async def _stop_music(self) -> None:
        if self._music is None:
            return
        self._music.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._music
        self._music = None
        self._channel.stop_playback()


async def _number_given(engine: CallEngine, call: Call) -> str | None:
    number = (await engine.dialogue_of(call).slots(call.call_id)).get("phone_number")
    return str(number) if number else None


async def caller_number(engine: CallEngine, call: Call) -> str | None:
    """The number to call back: the line's caller ID, else the one the caller gave."""
    return call.caller_number or await _number_given(engine, call)
