"""Text calls: a person at a terminal, or caller lines on stdin as JSON turns.

``voicebot chat --json`` reads one caller utterance per line and writes one
JSON object per caller turn. When the bot hangs up (the caller said goodbye),
the next line starts a new call with a new id; end of input hangs up.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import sys
from typing import TextIO

from bot.call import Call, CallEngine, TurnResult, clean_utterance
from bot.events import EndReason, SurveyAnswered
from bot.hold import HoldLine, abandon_quietly
from bot.session.survey import PostCallSurvey

# Hold steps taken at most per caller line (agent messages, then a status change).
_MAX_HOLD_STEPS = 8
# How often a waiting terminal caller's screen is brought up to date.
_HOLD_POLL_SECONDS = 1.0
# A waiting caller's line this surely a goodbye ends their call.
_GOODBYE_CONFIDENCE = 0.8


class TextCall:
    """One text caller. Their lines go to the dialogue until the call is handed
    to a person; then, like a voice caller on hold, their words go to the
    agent's live transcript, the bot stays quiet, and what the agent types or
    does (joins, sends the call back, resolves it) reaches them."""

    def __init__(self, engine: CallEngine) -> None:
        self.engine = engine
        self.call: Call = engine.new_call()
        self._hold: HoldLine | None = None
        # After a resolved call: the caller types a rating (bot/session/survey.py).
        self._survey: PostCallSurvey | None = None

    @property
    def on_hold(self) -> bool:
        return self._hold is not None

    async def say(self, line: str) -> TurnResult:
        if self._survey is not None:
            return self._answer_survey(line)
        return self._then_survey(await self._take_line(line))

    async def _take_line(self, line: str) -> TurnResult:
        if self._hold is None:
            queued_before = self.call.queue_item_id
            result = await self.engine.turn(self.call, line)
            # Only a call queued by this turn waits: one the agent sent back
            # stays with the bot.
            queued_now = self.call.queue_item_id != queued_before
            if queued_now and self.engine.awaits_agent(self.call) and not result.hang_up:
                voice = self.engine.settings.voice
                # No call-back offer: a text caller gave no number to call.
                self._hold = HoldLine(
                    self.engine, self.call, voice.hold_announce_seconds, float("inf"), None
                )
            return result
        text = clean_utterance(line, self.engine.settings.dialogue.max_utterance_chars)
        if not text:
            return await self._hold_turn(text)
        self.engine.record_caller_speech(self.call, text, 1.0)
        if await self._says_goodbye(text):
            # Typing goodbye is a text caller's way of putting the phone down.
            return self._on_hold_result(text, (), "caller_hang_up")
        return await self._hold_turn(text)

    async def _says_goodbye(self, text: str) -> bool:
        try:
            intent, confidence = await self.engine.dialogue_of(self.call).parse(text)
        except Exception:  # a failed parse keeps the caller waiting, never drops them
            return False
        return intent == "goodbye" and confidence >= _GOODBYE_CONFIDENCE

    async def hang_up(self, reason: str) -> None:
        """Ends the call; a caller who leaves while waiting is an abandoned call."""
        if self._hold is not None:
            self._hold = None
            await abandon_quietly(self.engine, self.call)
        self.engine.end_call(self.call, self.end_reason(reason))

    def end_reason(self, leaving: str) -> str:
        """Why the call ends when the caller leaves now: during the survey, the
        resolution it follows."""
        return self._survey.end_reason.value if self._survey is not None else leaving

    def _then_survey(self, result: TurnResult) -> TurnResult:
        """A call the bot or an agent resolved: the survey's question instead of
        the hang-up (when the survey is on)."""
        if not result.hang_up:
            return result
        reason = EndReason(result.end_reason or EndReason.BOT_HANG_UP)
        settings = self.engine.settings.survey
        if not PostCallSurvey.follows(settings, reason, self.engine, self.call):
            return result
        self._survey = PostCallSurvey(self.call, settings, reason, now_ms=self.call.t_ms())
        question = tuple(self._survey.question)
        return dataclasses.replace(
            result, bot=(*result.bot, *question), hang_up=False, end_reason=None
        )

    def _answer_survey(self, line: str) -> TurnResult:
        assert self._survey is not None
        text = clean_utterance(line, self.engine.settings.dialogue.max_utterance_chars)
        step = self._survey.heard(text, "text")
        return TurnResult(
            call_id=self.call.call_id,
            user=text,
            intent=SurveyAnswered.name,
            confidence=1.0,
            entities={} if step.score is None else {"csat_score": step.score},
            bot=step.say,
            escalated=self.call.escalation_reason is not None,
            escalation_reason=self.call.escalation_reason,
            hang_up=step.done,
            end_reason=self._survey.end_reason.value if step.done else None,
        )

    async def poll(self) -> TurnResult | None:
        """What the agent said or did since the caller's last line, if anything."""
        if self._hold is None:
            return None
        result = self._then_survey(await self._hold_turn(""))
        return result if result.bot or result.hang_up or self._hold is None else None

    async def _hold_turn(self, text: str) -> TurnResult:
        assert self._hold is not None
        said: list[str] = []
        end_reason = None
        for _ in range(_MAX_HOLD_STEPS):
            step = await self._hold.next_step(self.call.t_ms())
            said.extend(step.say)
            if step.end_reason or step.back_to_bot:
                end_reason = step.end_reason
                self._hold = None
                break
            if not step.say:
                break
        return self._on_hold_result(text, tuple(said), end_reason)

    def _on_hold_result(self, text: str, said: tuple[str, ...], end: str | None) -> TurnResult:
        return TurnResult(
            call_id=self.call.call_id,
            user=text,
            intent="on_hold",
            confidence=1.0,
            entities={},
            bot=said,
            escalated=True,
            escalation_reason=self.call.escalation_reason,
            hang_up=end is not None,
            end_reason=end,
        )


async def _read_line(stream: TextIO) -> str | None:
    line = await asyncio.get_running_loop().run_in_executor(None, stream.readline)
    return line if line else None


async def chat_json(engine: CallEngine, stdin: TextIO, stdout: TextIO) -> int:
    """Caller lines in, one JSON turn per line out; returns the number of turns."""
    turns = 0
    text_call: TextCall | None = None
    while (line := await _read_line(stdin)) is not None:
        if text_call is None:
            text_call = TextCall(engine)
        result = await text_call.say(line.rstrip("\r\n"))
        stdout.write(json.dumps(result.to_dict(), ensure_ascii=False) + "\n")
        stdout.flush()
        turns += 1
        if result.hang_up:
            await text_call.hang_up(result.end_reason or "bot_hang_up")
            text_call = None
    if text_call is not None:
        # End of input ends the script, not the caller's wait: a call queued
        # for a person stays queued (scripts queue calls for agents this way).
        engine.end_call(text_call.call, text_call.end_reason("caller_hang_up"))
    return turns


async def chat_terminal(engine: CallEngine, stdin: TextIO = sys.stdin) -> None:
    """An interactive text call; Ctrl-D or Ctrl-C hangs up."""
    out = sys.stdout
    text_call = TextCall(engine)
    call = text_call.call
    out.write(f"Call {call.call_id}. Type what the caller says; Ctrl-D hangs up.\n")
    out.write(f"Bot: {engine.greeting()}\n")

    async def show(result: TurnResult) -> bool:
        for text in result.bot:
            out.write(f"Bot: {text}\n")
        if result.hang_up:
            await text_call.hang_up(result.end_reason or "bot_hang_up")
            out.write("[the call has ended]\n")
        return result.hang_up

    try:
        while True:
            was_on_hold = text_call.on_hold
            out.write("You (on hold): " if was_on_hold else "You: ")
            out.flush()
            reading = asyncio.ensure_future(_read_line(stdin))
            # On hold, what the agent types or does is shown while the caller waits.
            while text_call.on_hold and not reading.done():
                await asyncio.wait({reading}, timeout=_HOLD_POLL_SECONDS)
                update = None if reading.done() else await text_call.poll()
                if update is not None:
                    out.write("\n")
                    if await show(update):
                        # The line being read can't be taken back from its thread.
                        out.write("[press Enter to close]\n")
                        await reading
                        return
            line = await reading
            if line is None:
                out.write("\n")
                await text_call.hang_up("caller_hang_up")
                break
            result = await text_call.say(line.rstrip("\r\n"))
            if await show(result):
                break
            if text_call.on_hold and not was_on_hold:
                reason = result.escalation_reason
                out.write(f"[waiting for a person ({reason}); the bot stays quiet]\n")
    except (KeyboardInterrupt, asyncio.CancelledError):
        engine.end_call(call, "interrupted")  # no awaiting once cancelled
        out.write("\n[call ended]\n")
