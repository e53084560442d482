"""The responder: a caller's final words in, the bot's reply out.

Words the recogniser was unsure of are not acted on: the bot asks again, and
the second unsure turn in a row goes to a person; either way the words are
kept with their confidence. Everything else goes through the call engine
(the Rasa dialogue and the escalation rules, which also hear how loud the
turn was). At a pause inside a turn the responder judges the words so far:
a request the dialogue is confident of lets the turn end after a short
silence; that parse is speculative and touches no dialogue state, so it is
simply forgotten when the caller goes on.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from bot.call import Call, CallEngine
from bot.events import EndReason
from bot.expectations import Expectation, expectation_for
from bot.responses import Response
from bot.session.contracts import Recognised, Speaker, VoiceSettings

log = logging.getLogger(__name__)

# Intents that say the words are not (yet) a request the bot can act on.
_NOT_A_REQUEST = frozenset({"nlu_fallback", ""})


@dataclass(frozen=True)
class Reply:
    texts: list[str]
    expectation: Expectation = Expectation.FREE
    # The call ends (or the caller goes on hold) once this is said.
    then_end: EndReason | None = None


class Responder:
    def __init__(
        self,
        engine: CallEngine,
        call: Call,
        settings: VoiceSettings,
        complete_confidence: float = 0.8,
    ) -> None:
        self._engine = engine
        self._call = call
        self._settings = settings
        self._complete_confidence = complete_confidence
        self._unsure_streak = 0
        self._judgements: dict[str, bool] = {}

    async def judge(self, words: str, speaker: Speaker | None = None) -> bool:
        """Whether the words so far are a whole request the dialogue is sure of.

        When they are, the reply's first words are rendered ahead on
        ``speaker`` (if the dialogue can tell them without running an action):
        speculative work, wasted and harmless if the caller goes on."""
        if words not in self._judgements:
            dialogue = self._engine.dialogue_of(self._call)

            def sure(intent: str, confidence: float) -> bool:
                return intent not in _NOT_A_REQUEST and confidence >= self._complete_confidence

            try:
                preview = await dialogue.preview(self._call.call_id, words, sure)
            except Exception as exc:  # no judgement: the turn ends on the usual silence
                log.warning("call %s: judging a pause failed: %s", self._call.call_id, exc)
                return False
            if speaker is not None:
                for text in preview.said:
                    speaker.prepare(text)
            self._judgements = {words: sure(preview.intent, preview.confidence)}
        return self._judgements[words]

    async def answer(
        self,
        heard: Recognised,
        turn_id: int,
        timings: dict[str, float],
        level_dbfs: float | None,
    ) -> Reply:
        call, engine = self._call, self._engine
        if heard.confidence < self._settings.low_confidence:
            return await self._unsure(heard, turn_id)
        self._unsure_streak = 0
        started = time.perf_counter()
        result = await engine.turn(call, heard.text, heard.confidence, timings, level_dbfs, turn_id)
        timings["dialogue_ms"] = round((time.perf_counter() - started) * 1000, 1)
        end = None
        if result.hang_up:
            end = EndReason.BOT_HANG_UP
        elif result.escalated and self._settings.end_call_on_escalation:
            end = EndReason.TRANSFERRED
        return Reply(
            list(result.bot), expectation_for(result.requested_slot, result.responses), end
        )

    async def _unsure(self, heard: Recognised, turn_id: int) -> Reply:
        self._unsure_streak += 1
        escalating = self._unsure_streak >= 2
        dialogue = self._engine.dialogue_of(self._call)
        said = dialogue.response_text(
            Response.ESCALATE_REPEATED_FALLBACK if escalating else Response.ASK_AGAIN
        )
        # Kept with its confidence (before any handoff is built): exactly the
        # words the agent and the trainers need to see.
        await self._engine.record_unclear_turn(
            self._call, heard.text, heard.confidence, said, turn_id
        )
        if not escalating:
            # Back to free speech: a closed grammar may be what failed.
            return Reply([said])
        told = await self._engine.escalate(self._call, "repeated_fallback")
        return Reply(told, then_end=EndReason.TRANSFERRED)
