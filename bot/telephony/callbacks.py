"""Callback tasks dialled on the phone lines.

An agent takes a callback task in the console and asks for it to be dialled;
``voicebot serve`` (any process with phone lines and an outbound route) takes
the request (``bot.queue.callbacks``), checks the calling hours and rings the
number. When the customer answers, the bot says who is calling and why
("this is the hotline calling you back about a delivery problem"), and the
call waits for the agent exactly as an escalated call does (hold music, then
the agent's voice from the console). No answer, busy or a refusal is an
attempt: the task goes back to the queue until its retry time, and after
``callback.max_attempts`` it is closed as unreachable.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Callable, Coroutine
from datetime import datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from bot.handoff import TASK_TEXT
from bot.queue import AgentQueue, QueueItem
from bot.queue.callbacks import CallbackDialling, DialRequest
from bot.session import CallbackStart
from bot.settings import CallbackSettings
from bot.telephony.endpoint import PhoneCall, SipEndpoint, TelephonyError

log = logging.getLogger(__name__)

# How often the dialler looks for requests (a request waits at most this long).
POLL_SECONDS = 0.5
# A request waits this long for a free line before it counts as failed.
LINE_WAIT_SECONDS = 30.0
_HOURS = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*$")

# Runs an answered callback's voice session on a line.
SessionRunner = Callable[[PhoneCall, CallbackStart], Coroutine[Any, Any, None]]


def calling_hours(text: str) -> tuple[time, time]:
    """``HH:MM-HH:MM`` as (opening, closing); ValueError for anything else."""
    match = _HOURS.match(text)
    if not match:
        raise ValueError(f"callback.calling_hours: expected HH:MM-HH:MM, got {text!r}")
    h1, m1, h2, m2 = (int(g) for g in match.groups())
    if h1 > 23 or h2 > 24 or m1 > 59 or m2 > 59:
        raise ValueError(f"callback.calling_hours: not a time of day in {text!r}")
    closing = time(23, 59, 59) if h2 == 24 else time(h2, m2)
    return time(h1, m1), closing


def within_hours(now: datetime, hours: tuple[time, time], zone: str = "") -> bool:
    local = now.astimezone(ZoneInfo(zone)) if zone else now.astimezone()
    opening, closing = hours
    moment = local.time()
    if opening <= closing:
        return opening <= moment < closing
    return moment >= opening or moment < closing  # hours across midnight


def until_opening(now: datetime, hours: tuple[time, time], zone: str = "") -> timedelta:
    """Time until the calling hours next open (zero while they are open)."""
    if within_hours(now, hours, zone):
        return timedelta(0)
    local = now.astimezone(ZoneInfo(zone)) if zone else now.astimezone()
    opening = local.replace(hour=hours[0].hour, minute=hours[0].minute, second=0, microsecond=0)
    if opening <= local:
        opening += timedelta(days=1)
    return opening - local


def _topic(item: QueueItem) -> str:
    """ " about a delivery problem" from the task's intents, or ""."""
    intents = item.handoff.get("intents", []) if isinstance(item.handoff, dict) else []
    names = [str(i.get("intent") or i.get("name") or "") for i in intents]
    about = next((TASK_TEXT[n] for n in names if n in TASK_TEXT and n != "request_callback"), "")
    return f" about {about}" if about else ""


def callback_intro(item: QueueItem) -> str:
    """What the customer hears first: who calls, and about what."""
    return (
        f"Hello, this is the customer service hotline calling you back{_topic(item)}, "
        "as you asked. Please hold for a moment while I put you through to your colleague."
    )


def voicemail_message(item: QueueItem) -> str:
    """Left on an answering machine: who called, about what, and what next."""
    return (
        f"Hello, this is the customer service hotline returning your call{_topic(item)}. "
        "We'll try you again later. Goodbye."
    )


class CallbackDialler:
    """Takes dial requests and places the calls, one task per request."""

    def __init__(
        self,
        endpoint: SipEndpoint,
        queue: AgentQueue,
        settings: CallbackSettings,
        run_session: SessionRunner,
    ) -> None:
        self.endpoint = endpoint
        self.dialling = CallbackDialling(queue)
        self.queue = queue
        self.settings = settings
        self.hours = calling_hours(settings.calling_hours)
        self._run_session = run_session
        self._task: asyncio.Task[None] | None = None
        self._calls: set[asyncio.Task[None]] = set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._follow())
        log.info(
            "dialling callback tasks between %s and %s", *(t.strftime("%H:%M") for t in self.hours)
        )

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for call in list(self._calls):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await call

    async def _follow(self) -> None:
        loop = asyncio.get_running_loop()
        failing = False
        while True:
            try:
                request = await loop.run_in_executor(None, self.dialling.take)
                failing = False
            except Exception as exc:  # the database is away: try again shortly
                if not failing:
                    log.error("callback requests cannot be read: %s", exc)
                failing = True
                request = None
            if request is None:
                await asyncio.sleep(POLL_SECONDS)
                continue
            task = asyncio.create_task(self._dial(request))
            self._calls.add(task)
            task.add_done_callback(self._calls.discard)

    async def _dial(self, request: DialRequest) -> None:
        loop = asyncio.get_running_loop()
        now = self.queue._now()
        if not within_hours(now, self.hours, self.settings.timezone):
            wait = until_opening(now, self.hours, self.settings.timezone)
            log.info("callback %d: outside calling hours; back in the queue", request.item_id)
            await self._finish(request, "outside_hours", "outside calling hours", wait)
            return
        item = await loop.run_in_executor(None, self.queue.item, request.item_id)
        if item is None:
            return
        result = None
        deadline = loop.time() + LINE_WAIT_SECONDS
        while True:
            try:
                result = await self.endpoint.dial(
                    request.number, ring_seconds=self.settings.ring_seconds
                )
            except TelephonyError as exc:
                await self._finish(request, "failed", str(exc))
                return
            if result.outcome != "no_line" or loop.time() > deadline:
                break
            await asyncio.sleep(1.0)  # every line is busy: wait for one
        outcome = {"answered": "answered", "busy": "busy", "no_answer": "no_answer"}.get(
            result.outcome, "rejected" if result.outcome == "rejected" else "failed"
        )
        detail = f"{result.status or ''} {result.reason}".strip()
        if outcome != "answered" or result.call is None:
            await self._finish(request, outcome, detail)
            return
        # Answered: the outcome waits for who picked up (a person or a machine).
        told: list[str] = []

        def answered_by(who: str) -> None:
            told.append(who)
            reached = "answered" if who == "person" else "voicemail"
            asyncio.ensure_future(self._finish(request, reached, f"{who} answered"))

        start = CallbackStart(
            item_id=item.id,
            intro=callback_intro(item),
            voicemail=voicemail_message(item),
            on_answered=answered_by,
        )
        await self._run_session(result.call, start)
        if not told:
            await self._finish(request, "no_answer", "hung up before saying anything")

    async def _finish(
        self, request: DialRequest, outcome: str, detail: str, wait: timedelta | None = None
    ) -> None:
        loop = asyncio.get_running_loop()
        retry = wait if wait is not None else timedelta(minutes=self.settings.retry_minutes)
        try:
            done = await loop.run_in_executor(
                None,
                lambda: self.dialling.finish(
                    request.id, outcome, detail, self.settings.max_attempts, retry
                ),
            )
        except Exception as exc:
            log.error("callback %d: the outcome could not be recorded: %s", request.item_id, exc)
            return
        log.info(
            "callback %d: %s (%s); attempt %d of %d; the task is %s",
            request.item_id,
            outcome,
            detail or "-",
            done.attempts,
            self.settings.max_attempts,
            done.task,
        )
