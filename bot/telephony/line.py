"""A phone line as a voice session's channel (``bot/session/contracts.py``).

The caller's audio arrives decoded from the line's RTP session; the bot's
audio goes out through it, paced by the media thread. The line knows the
caller's number and the keys they press, and hangs up with BYE when the
session ends the call.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import time
from collections.abc import AsyncIterator
from typing import Any

from bot.call import LineInfo
from bot.telephony.endpoint import PhoneCall, SipEndpoint


class PhoneLine:
    name = "phone"

    def __init__(self, endpoint: SipEndpoint, call: PhoneCall) -> None:
        self._endpoint = endpoint
        self._call = call
        self._started = time.monotonic()
        self.line_info: LineInfo = call.info

    @property
    def line(self) -> int:
        return self._call.line

    @property
    def outbound(self) -> bool:
        """True on a call the bot placed (``SipEndpoint.dial``), False on one it answered."""
        return self._call.outbound

    def now_ms(self) -> int:
        return int((time.monotonic() - self._started) * 1000)

    async def frames(self) -> AsyncIterator[bytes]:
        while True:
            frame = await self._call.frames.get()
            if frame is None:
                return
            yield frame

    @property
    def far_end_gone(self) -> bool:
        return self._call.caller_gone

    async def play(self, pcm: bytes) -> bool:
        rtp = self._call.rtp
        if rtp is None or self._call.caller_gone or not pcm:
            return not pcm
        played: concurrent.futures.Future[Any] = rtp.play(pcm)
        return bool(await asyncio.wrap_future(played))

    def stop_playback(self) -> None:
        if self._call.rtp is not None:
            self._call.rtp.stop_playback()

    @property
    def is_playing(self) -> bool:
        return self._call.rtp is not None and self._call.rtp.is_playing

    def played_frame(self) -> bytes:
        if self._call.rtp is None:
            return b"\0" * 640
        return self._call.rtp.played_frame()

    def take_keys(self) -> list[str]:
        keys, self._call.keys[:] = list(self._call.keys), []
        return keys

    @property
    def transfer_target(self) -> str:
        """Where escalated calls go on the PBX (empty: they wait on this line)."""
        return self._endpoint.settings.transfer_to

    async def transfer(self) -> bool:
        """Blind-transfers the caller to the target; False leaves them here."""
        target = self.transfer_target
        if not target:
            return False
        return await self._endpoint.transfer(self._call, target)

    async def clear_line(self) -> str:
        """Hangs up unless the caller already has; says who cleared the line."""
        if self._call.caller_gone:
            return "caller"
        self._endpoint.hang_up(self._call)
        return "bot"
