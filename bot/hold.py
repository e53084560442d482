"""A caller waiting for an agent: what the bot does on each step of the wait.

The hold line follows the queue's change feed (``QueueWatcher``) and reads
the queue (in a worker thread) only when there is something to read: on the
first step, after a change to the call's queue item (an agent took it, typed
to the caller, sent it back or finished it), when the caller is due to hear
their place in line, and until a call back has been considered. Messages the
agent typed are spoken, and the wait ends when the agent resolves the call
(the bot says goodbye) or sends it back to the bot. Between steps the caller
hears hold music. Without a change feed (the database was down when the wait
began) every step reads the queue, as before the feed existed.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

from bot.call import Call, CallEngine, speak_wait
from bot.pcm import FRAME_BYTES
from bot.queue import AgentQueue, QueueItem, QueueWatcher
from bot.responses import Response

log = logging.getLogger(__name__)

# Without a change feed, how long a hold line waits before trying to open one again.
FEED_RETRY_SECONDS = 30.0

_T = TypeVar("_T")


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
    """One caller's wait. Call ``close()`` when the wait is over (the line
    closes itself once the agent resolves the call or sends it back)."""

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
        # Without a number to call there is no call back to offer.
        self._offer_considered = caller_number is None
        self._status: str | None = None  # the item's, at the last read
        # Something for the next step to read: set at first, by a change, and
        # by a step that found something to say (more may follow it).
        self._unread = True
        # The last read failed: the next step reads again (but a wait for
        # changes still waits, so a dead database is not asked in a tight loop).
        self._read_failed = False
        # The change feed: its watcher waits in this line's own thread, so a
        # long wait never holds up one of the event loop's shared workers.
        self._lock = threading.Lock()  # the watcher and closing, against the thread
        self._closed = False
        self._woken = threading.Event()  # close() ends a wait after a feed failure
        self._thread: ThreadPoolExecutor | None = None
        self._watcher: QueueWatcher | None = None
        # Closes the watcher when the line is dropped without close().
        self._release: weakref.finalize | None = None
        self._feed_failed_at: float | None = None
        # Feed troubles are logged once until it works again: opening it (on the
        # loop) and waiting on it (in the thread).
        self._feed_in_trouble = False
        self._watch_failing = False
        self._watching: asyncio.Future[bool] | None = None

    # -- public

    async def wait_for_change(self, timeout_seconds: float) -> bool:
        """True as soon as something happened to this call in the queue that
        the next step has not read yet (an agent took the call, typed to the
        caller, sent it back or finished it); False after ``timeout_seconds``.

        Without a change feed (the database is down, or the line is closed) it
        waits out the time and returns False; the steps then read the queue
        each time. Cancelling it loses no change: the wait goes on in the
        line's thread and the next step reads what it found."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_seconds
        if self._unread:
            return True
        if not await self._follow():
            await asyncio.sleep(max(0.0, deadline - loop.time()))
            return False
        while not self._unread:
            remaining = deadline - loop.time()
            if remaining <= 0 or self._watcher is None:
                return self._unread
            if self._watching is None:
                self._watching = self._in_thread(self._changed, remaining)
                self._watching.add_done_callback(self._on_watched)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._watching), remaining)
        return True

    async def next_step(self, now_ms: int) -> HoldStep:
        queue = self._engine.queue
        item_id = self._call.queue_item_id
        if queue is None or item_id is None:
            self.close()
            return HoldStep(end_reason="transferred")
        if not await self._read_needed(now_ms):
            return HoldStep()
        self._unread = self._read_failed = False
        loop = asyncio.get_running_loop()
        try:
            item = await loop.run_in_executor(None, queue.item, item_id)
            messages = await loop.run_in_executor(None, queue.pending_messages, self._call.call_id)
        except Exception as exc:  # the queue database is down: keep the caller waiting
            log.error("call %s: the queue cannot be read: %s", self._call.call_id, exc)
            self._read_failed = True
            return HoldStep()
        if self._last_announce_ms is None:
            self._last_announce_ms = now_ms
        self._status = None if item is None else item.status
        if self._status != "waiting":
            self._offer_considered = True  # a claimed call never waits again
        if messages:
            await loop.run_in_executor(None, queue.mark_delivered, [m.id for m in messages])
            for message in messages:
                self._engine.record_agent_speech(self._call, message.text)
            step = HoldStep(say=tuple(m.text for m in messages))
        else:
            step = await self._step_for(queue, item, now_ms)
        if step.end_reason or step.back_to_bot:
            self.close()
        elif step.say:
            self._unread = True  # what the agent did next may be waiting behind it
        return step

    def close(self) -> None:
        """Stops following the queue's changes; idempotent. Call it from the
        event loop's thread. Steps after it read the queue each time."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._watcher = None
        self._woken.set()
        if self._release is not None:
            self._release()  # closes the watcher: a wait in the thread returns at once
        if self._thread is not None:
            self._thread.shutdown(wait=False)

    # -- reading the queue

    async def _step_for(self, queue: AgentQueue, item: QueueItem | None, now_ms: int) -> HoldStep:
        dialogue = self._engine.dialogue_of(self._call)
        loop = asyncio.get_running_loop()
        if item is None or item.status == "resolved":
            return HoldStep(
                say=(dialogue.response_text(Response.AGENT_FINISHED),), end_reason="resolved"
            )
        if item.status == "returned":
            return HoldStep(say=(dialogue.response_text(Response.BACK_WITH_BOT),), back_to_bot=True)
        if item.status == "waiting":
            self._agent_joined = False  # back in line: the next agent is announced too
        if item.status == "claimed" and not self._agent_joined:
            self._agent_joined = True
            return HoldStep(say=(dialogue.response_text(Response.AGENT_JOINED),))
        if item.status == "waiting" and not self._offer_considered:
            # A long wait: the caller may rather be called back on the number we have.
            self._offer_considered = True
            wait = await loop.run_in_executor(None, queue.estimated_wait_seconds, item.id)
            if self._caller_number and wait > self._callback_offer_seconds:
                text = dialogue.response_text(Response.OFFER_CALLBACK).format(
                    wait=speak_wait(wait), number=self._number_to_offer(self._caller_number)
                )
                return HoldStep(say=(text,), offers_callback=True)
        if item.status == "waiting" and self._announcement_due(now_ms):
            self._last_announce_ms = now_ms
            wait = await loop.run_in_executor(None, queue.estimated_wait_seconds, item.id)
            text = dialogue.response_text(Response.QUEUE_POSITION).format(
                position=await loop.run_in_executor(None, queue.position, item.id),
                wait=speak_wait(wait),
            )
            return HoldStep(say=(text,))
        return HoldStep()

    def _number_to_offer(self, number: str) -> str:
        # Caller ID is read by its ending; a number the caller said, in full
        # (so they hear it was taken down right).
        if number == self._call.caller_number:
            return speak_number_ending(number)
        return speak_number(number)

    def _announcement_due(self, now_ms: int) -> bool:
        last = self._last_announce_ms
        return last is not None and now_ms - last >= self._announce_ms

    async def _read_needed(self, now_ms: int) -> bool:
        if not await self._follow():
            return True  # no change feed: every step reads
        if self._unread or self._read_failed or not self._offer_considered:
            return True
        if self._status == "waiting" and self._announcement_due(now_ms):
            return True
        if self._watching is not None:
            return False  # a wait for changes is under way: it marks the line when one comes
        # The feed's news since the last look, without waiting.
        return await self._in_thread(self._changed, 0.0)

    # -- the change feed

    async def _follow(self) -> bool:
        """Whether the queue's change feed is followed; the first call opens it
        (before the first read, so no change falls between the two)."""
        if self._watcher is not None:
            return True
        failed_at = self._feed_failed_at
        if failed_at is not None and time.monotonic() < failed_at + FEED_RETRY_SECONDS:
            return False
        if self._closed or self._engine.queue is None:
            return False
        try:
            opened = await self._in_thread(self._open_watcher, self._engine.queue)
        except Exception as exc:  # the database is down: the steps read the queue instead
            self._feed_failed_at = time.monotonic()
            if not self._feed_in_trouble:
                self._feed_in_trouble = True
                log.warning(
                    "call %s: no queue change feed (%s); reading the queue on every step",
                    self._call.call_id, exc,
                )  # fmt: skip
            return False
        if opened and self._feed_in_trouble:
            self._feed_in_trouble = False
            log.info("call %s: following the queue's changes again", self._call.call_id)
        return opened

    def _open_watcher(self, queue: AgentQueue) -> bool:
        """In the line's thread: a watcher for the queue, unless closed meanwhile."""
        watcher = QueueWatcher(queue.url, queue.settings)
        with self._lock:
            if self._closed:
                watcher.close()
                return False
            self._watcher = watcher
            self._release = weakref.finalize(self, watcher.close)
            # What changed before the watcher existed: the next step reads it.
            self._unread = True
        return True

    def _changed(self, timeout_seconds: float) -> bool:
        """In the line's thread: waits up to ``timeout_seconds`` for a change to
        this call's item. True when one came, or when the feed failed (the next
        step reads the queue to be sure)."""
        watcher, queue = self._watcher, self._engine.queue
        if watcher is None or queue is None:
            return False
        deadline = time.monotonic() + timeout_seconds
        try:
            while True:
                ids = watcher.wait(max(0.0, deadline - time.monotonic()))
                if self._watch_failing:
                    self._watch_failing = False
                    log.info("call %s: the queue change feed works again", self._call.call_id)
                if not ids:
                    return False
                if self._concern_this_call(queue, ids):
                    return True
                if time.monotonic() >= deadline:
                    return False
        except Exception as exc:  # a database hiccup: the steps read the queue meanwhile
            if not self._watch_failing:
                self._watch_failing = True
                log.warning("call %s: the queue change feed failed: %s", self._call.call_id, exc)
            self._woken.wait(max(0.0, deadline - time.monotonic()))
            return True

    def _concern_this_call(self, queue: AgentQueue, change_ids: list[int]) -> bool:
        # An agent's message is logged against the item they have claimed: this one.
        first, last = min(change_ids), max(change_ids)
        wanted = set(change_ids)
        found = queue.changes_since(first - 1, limit=last - first + 1)
        item_id = self._call.queue_item_id
        return any(c.id in wanted and c.item_id == item_id for c in found)

    def _on_watched(self, watching: asyncio.Future[bool]) -> None:
        self._watching = None
        if not watching.cancelled() and watching.exception() is None and watching.result():
            self._unread = True

    def _in_thread(self, fn: Callable[..., _T], *args: object) -> asyncio.Future[_T]:
        if self._thread is None:
            name = f"hold-{self._call.call_id}"
            self._thread = ThreadPoolExecutor(1, thread_name_prefix=name)
        return asyncio.get_running_loop().run_in_executor(self._thread, fn, *args)


async def abandon_quietly(engine: CallEngine, call: Call) -> None:
    """The caller hung up while waiting: the queue records the abandoned call."""
    if engine.queue is None or call.queue_item_id is None:
        return
    queue = engine.queue
    try:
        await asyncio.get_running_loop().run_in_executor(None, queue.abandon, call.call_id)
    except Exception as exc:
        log.error("call %s: could not record the abandoned wait: %s", call.call_id, exc)


def speak_number_ending(number: str, digits: int = 4) -> str:
    """The last digits of a number, for a number the caller did not say
    (caller ID): enough to recognise it, without reading it all out."""
    names = "zero one two three four five six seven eight nine".split()
    tail = [d for d in number if d.isdigit()][-digits:]
    return "the number ending " + " ".join(names[int(d)] for d in tail)


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
