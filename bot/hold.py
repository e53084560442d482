"""A caller waiting for an agent: what the bot does on each step of the wait.

Every poll the queue is read (in a worker thread): messages the agent typed
are spoken, the caller hears their place in line every so often, and the
wait ends when the agent resolves the call (the bot says goodbye) or sends
it back to the bot. Between steps the caller hears hold music.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Iterator
from dataclasses import dataclass

from bot.call import Call, CallEngine, speak_wait
from bot.pcm import FRAME_BYTES

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class HoldStep:
    say: tuple[str, ...] = ()
    end_reason: str | None = None
    back_to_bot: bool = False
    offers_callback: bool = False


def hold_chunks(pcm: bytes, seconds: float) -> Iterator[bytes]:
    """The hold music, endlessly, in pieces of about ``seconds``."""
    size = max(FRAME_BYTES, int(seconds * 16000) * 2)
    pieces = [pcm[i : i + size] for i in range(0, len(pcm), size)] or [b"\0" * size]
    return itertools.cycle(pieces)


class HoldLine:
    def __init__(
        self,
        engine: CallEngine,
        call: Call,
        announce_seconds: float,
        callback_offer_seconds: float,
        caller_number: str | None,
    ) -> None:
        self._engine = engine
        self._call = call
        self._announce_ms = int(announce_seconds * 1000)
        self._last_announce_ms: int | None = None
        self._agent_joined = False
        self._callback_offer_seconds = callback_offer_seconds
        self._caller_number = caller_number
        self._offer_considered = False

    async def next_step(self, now_ms: int) -> HoldStep:
        queue = self._engine.queue
        item_id = self._call.queue_item_id
        if queue is None or item_id is None:
            return HoldStep(end_reason="transferred")
        loop = asyncio.get_running_loop()
        try:
            item = await loop.run_in_executor(None, queue.item, item_id)
            messages = await loop.run_in_executor(None, queue.pending_messages, self._call.call_id)
        except Exception as exc:  # the queue database is down: keep the caller waiting
            log.error("call %s: the queue cannot be read: %s", self._call.call_id, exc)
            return HoldStep()
        if self._last_announce_ms is None:
            self._last_announce_ms = now_ms
        dialogue = self._engine.dialogue_of(self._call)
        if messages:
            await loop.run_in_executor(None, queue.mark_delivered, [m.id for m in messages])
            for message in messages:
                self._engine.record_agent_speech(self._call, message.text)
            return HoldStep(say=tuple(m.text for m in messages))
        if item is None or item.status == "resolved":
            return HoldStep(
                say=(dialogue.response_text("utter_agent_finished"),), end_reason="resolved"
            )
        if item.status == "returned":
            return HoldStep(say=(dialogue.response_text("utter_back_with_bot"),), back_to_bot=True)
        if item.status == "claimed" and not self._agent_joined:
            self._agent_joined = True
            return HoldStep(say=(dialogue.response_text("utter_agent_joined"),))
        if item.status == "waiting" and not self._offer_considered:
            # A long wait: the caller may rather be called back on the number we have.
            self._offer_considered = True
            wait = await loop.run_in_executor(None, queue.estimated_wait_seconds, item_id)
            if self._caller_number and wait > self._callback_offer_seconds:
                text = dialogue.response_text("utter_offer_callback").format(
                    wait=speak_wait(wait), number=speak_number(self._caller_number)
                )
                return HoldStep(say=(text,), offers_callback=True)
        if item.status == "waiting" and now_ms - self._last_announce_ms >= self._announce_ms:
            self._last_announce_ms = now_ms
            wait = await loop.run_in_executor(None, queue.estimated_wait_seconds, item_id)
            text = dialogue.response_text("utter_queue_position").format(
                position=await loop.run_in_executor(None, queue.position, item_id),
                wait=speak_wait(wait),
            )
            return HoldStep(say=(text,))
        return HoldStep()


async def abandon_quietly(engine: CallEngine, call: Call) -> None:
    """The caller hung up while waiting: the queue records the abandoned call."""
    if engine.queue is None or call.queue_item_id is None:
        return
    queue = engine.queue
    try:
        await asyncio.get_running_loop().run_in_executor(None, queue.abandon, call.call_id)
    except Exception as exc:
        log.error("call %s: could not record the abandoned wait: %s", call.call_id, exc)


def speak_number(number: str) -> str:
    """A phone number read digit by digit, in groups."""
    names = "zero one two three four five six seven eight nine".split()
    digits = [("oh" if d == "0" else names[int(d)]) for d in number if d.isdigit()]
    groups = [" ".join(digits[i : i + 4]) for i in range(0, len(digits), 4)]
    return ", ".join(groups)


async def convert_to_callback(engine: CallEngine, call: Call, number: str) -> bool:
    """The caller takes the call back: the queue swaps the live call for a callback task."""
    if engine.queue is None or call.queue_item_id is None:
        return False
    queue, item_id = engine.queue, call.queue_item_id
    try:
        item = await asyncio.get_running_loop().run_in_executor(
            None, queue.convert_to_callback, item_id, number
        )
    except Exception as exc:
        log.error("call %s: could not arrange the call back: %s", call.call_id, exc)
        return False
    call.queue_item_id = item.id
    return True
