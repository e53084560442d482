"""The bot's voice: replies spoken on the channel, sentence by sentence.

Each reply is synthesised as it is played, so the first sound goes out as
soon as the first sentence is rendered. ``interrupt`` (barge-in, the call
time limit) stops playback at once and makes any reply in progress stop
before its next piece. ``bot_speech_started`` and ``bot_speech_ended``
always come in pairs and carry the turn id of the caller turn they answer.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from bot.call import Call
from bot.events import BotSpeechEnded, BotSpeechStarted
from bot.session.contracts import Channel, Speaker
from bot.session.working import busy


@dataclass(frozen=True)
class Spoken:
    started: bool
    interrupted: bool


class BotVoice:
    def __init__(self, call: Call, channel: Channel, speaker: Speaker) -> None:
        self._call = call
        self._channel = channel
        self._speaker = speaker
        self._generation = 0
        self.last_texts: list[str] = []

    def interrupt(self) -> None:
        self._generation += 1
        self._channel.stop_playback()

    async def say(
        self,
        texts: list[str],
        turn_id: int,
        response_from_ms: int | None = None,
        timings: dict[str, float] | None = None,
    ) -> Spoken:
        """Speaks ``texts``; ``response_from_ms`` is the caller's last speech
        when this answers them (the response gap is measured from it)."""
        call, channel = self._call, self._channel
        generation = self._generation
        self.last_texts = texts
        started = interrupted = False
        render_started = time.perf_counter()
        try:
            for text in texts:
                stream = self._speaker.stream(text)
                while not interrupted:
                    with busy(channel):
                        try:
                            chunk = await anext(stream)
                        except StopAsyncIteration:
                            break
                    if generation != self._generation:
                        interrupted = True
                        break
                    if not started:
                        started = True
                        now = channel.now_ms()
                        tts_ms = round((time.perf_counter() - render_started) * 1000, 1)
                        call.emit(
                            BotSpeechStarted(
                                call.call_id,
                                now,
                                " ".join(texts),
                                None if response_from_ms is None else now - response_from_ms,
                                {**(timings or {}), "tts_first_chunk_ms": tts_ms},
                                turn_id=turn_id,
                            )
                        )
                    if not await channel.play(chunk):
                        interrupted = True
                if interrupted:
                    break
        except asyncio.CancelledError:
            interrupted = True  # the call ended mid-sentence
            raise
        finally:
            if started:
                now = channel.now_ms()
                call.emit(BotSpeechEnded(call.call_id, now, interrupted, turn_id=turn_id))
        return Spoken(started, interrupted)
