"""``voicebot serve``: the bot on phone lines.

One process answers every line: the SIP endpoint on this loop, the RTP of
all calls on one media thread, each call's voice session on this loop with
the speech stack (Vosk model, synthesiser) that all calls share.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from bot.call import CallEngine
from bot.events import CallEvent, EventListener
from bot.session import CallbackStart
from bot.telephony.callbacks import CallbackDialler
from bot.telephony.dialling import outbound_route
from bot.telephony.endpoint import PhoneCall, SipEndpoint, TelephonySettings
from bot.telephony.line import PhoneLine
from bot.telephony.media import MediaThread
from bot.voice import SpeechStack

log = logging.getLogger(__name__)

# Events of one call for a printer: the line is added to each.
LinePrinter = Callable[[int, CallEvent], None]


class PhoneService:
    """The phone lines of one bot process, from ``start`` to ``stop``."""

    def __init__(
        self,
        engine: CallEngine,
        stack: SpeechStack,
        settings: TelephonySettings,
        printer: LinePrinter | None = None,
    ) -> None:
        self.engine = engine
        self.stack = stack
        self.settings = settings
        self.printer = printer
        self.media = MediaThread()
        self.endpoint = SipEndpoint(settings, self.media, self._answer)
        self.dialler: CallbackDialler | None = None

    async def start(self) -> None:
        self.media.start()
        try:
            await self.endpoint.start()
        except Exception:
            self.media.stop()
            raise
        queue = self.engine.queue
        if queue is not None and outbound_route(self.settings) is not None:
            self.dialler = CallbackDialler(
                self.endpoint, queue, self.engine.settings.callback, self._call_back
            )
            self.dialler.start()

    async def stop(self) -> None:
        try:
            if self.dialler is not None:
                await self.dialler.stop()
            await self.endpoint.stop()
        finally:
            self.media.stop()

    async def _answer(self, call: PhoneCall, callback: CallbackStart | None = None) -> None:
        line = PhoneLine(self.endpoint, call)
        listeners: list[EventListener] = []
        if self.printer is not None:
            printer, number = self.printer, call.line
            listeners.append(lambda event: printer(number, event))
        session = self.stack.session(self.engine, line, listeners, callback=callback)
        await session.run()

    async def _call_back(self, call: PhoneCall, start: CallbackStart) -> None:
        """An answered callback: its voice session, until either side hangs up."""
        try:
            await self._answer(call, start)
        finally:
            if not call.caller_gone:
                self.endpoint.hang_up(call)


async def serve_forever(service: PhoneService) -> None:
    """Runs until cancelled (Ctrl-C, SIGTERM), then lets calls finish."""
    await service.start()
    try:
        await asyncio.Event().wait()
    except asyncio.CancelledError:
        log.info("stopping: no new calls; calls in progress may finish")
        await service.stop()
        raise
    except BaseException:
        await service.stop()
        raise
