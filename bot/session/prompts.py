"""When the caller says nothing: reprompts, and the call's time limit.

``tick`` is called with the call time while the line is quiet (no caller
turn, no bot speech, no reply being prepared). After
``silence_reprompt_seconds`` of quiet the bot repeats its last words, then
asks whether the caller is still there, then says goodbye. A call that
reaches ``max_call_seconds`` is ended politely whatever is going on.
"""

from __future__ import annotations

import enum

from bot.session.contracts import VoiceSettings


class Prompt(enum.Enum):
    REPEAT = "repeat"
    STILL_THERE = "still_there"
    GOODBYE = "goodbye"
    TIME_LIMIT = "time_limit"


class SilenceWatch:
    def __init__(self, settings: VoiceSettings) -> None:
        self._settings = settings
        self._quiet_since_ms = 0
        self._reprompts = 0
        self._done = False

    def active(self, now_ms: int) -> None:
        """Someone is talking or the bot is working: the quiet starts again."""
        self._quiet_since_ms = now_ms

    def caller_spoke(self, now_ms: int) -> None:
        self._quiet_since_ms = now_ms
        self._reprompts = 0

    def tick(self, now_ms: int, quiet: bool) -> Prompt | None:
        if self._done:
            return None
        if now_ms >= self._settings.max_call_seconds * 1000:
            self._done = True
            return Prompt.TIME_LIMIT
        if not quiet:
            self._quiet_since_ms = now_ms
            return None
        if now_ms - self._quiet_since_ms < self._settings.silence_reprompt_seconds * 1000:
            return None
        self._quiet_since_ms = now_ms
        self._reprompts += 1
        if self._reprompts > self._settings.max_reprompts:
            self._done = True
            return Prompt.GOODBYE
        return Prompt.REPEAT if self._reprompts == 1 else Prompt.STILL_THERE
