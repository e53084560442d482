"""One voice call: the stages put together.

Each 20 ms frame from the channel goes through the voice gate (speech or
not, and how loud), the turn detector (where turns start and end) and, while
the caller has the turn, the recogniser. A turn's final words go to the
responder (dialogue and escalation rules), its reply to the bot's voice,
which speaks sentence by sentence in its own task so the caller can barge
in. A caller on hold is the hold controller's. A resolved call's caller may
be asked for a rating before the bot hangs up (``survey.py``). Every step is
an event with the call id and turn id (``bot/events.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from bot.call import Call, CallEngine
from bot.events import (
    BargeIn,
    EndReason,
    EventListener,
    HungUp,
    KeypadDigit,
    SpeechEnded,
    SpeechStarted,
    TranscriptPartial,
    Transferred,
    TurnEnd,
)
from bot.expectations import Expectation
from bot.hold import abandon_quietly
from bot.pcm import FRAME_MS
from bot.recording import CallRecorder
from bot.responses import Response
from bot.session.answering import Answered, AnsweringDetector
from bot.session.contracts import (
    Channel,
    EchoCanceller,
    Recognised,
    Recogniser,
    Speaker,
    SpeechDetector,
    VoiceSettings,
)
from bot.session.gate import VoiceGate
from bot.session.keypad import KeypadEntry
from bot.session.prompts import Prompt, SilenceWatch
from bot.session.recognition import RecognitionStage
from bot.session.responder import Responder
from bot.session.speaking import BotVoice
from bot.session.survey import PostCallSurvey, SurveyStep, warm_up
from bot.session.turns import Pause, Step, TurnDetector, TurnEnded, TurnStarted, judge_words
from bot.session.waiting import HoldController, caller_number
from bot.session.working import busy

if TYPE_CHECKING:
    from bot.agent_voice.bridge import VoiceBridge


@dataclass(frozen=True)
class CallbackStart:
    """How a call the bot placed for a callback task begins. The bot first
    listens (``bot/session/answering.py``): a person hears ``intro`` and
    waits for the task's agent; an answering machine gets ``voicemail``
    after its greeting, and the call ends. ``on_answered`` hears which
    ("person" or "machine") as soon as it is known."""

    item_id: int
    intro: str
    voicemail: str = ""
    on_answered: Callable[[str], None] | None = None


log = logging.getLogger(__name__)


class CallSession:
    """Runs one call on a channel until it ends; always ends it cleanly."""

    def __init__(
        self,
        engine: CallEngine,
        channel: Channel,
        recogniser: Recogniser,
        speaker: Speaker,
        detector: SpeechDetector,
        turns: TurnDetector,
        settings: VoiceSettings,
        echo: EchoCanceller | None = None,
        recordings_dir: Path | None = None,
        listeners: list[EventListener] | None = None,
        hold_pcm: bytes | None = None,
        agent_recogniser: Callable[[], Recogniser] | None = None,
        callback: CallbackStart | None = None,
    ) -> None:
        self.engine = engine
        # A call the bot placed to call a customer back for an agent.
        self.callback = callback
        # A recogniser for an agent's voice on the call (their words transcribed).
        self.agent_recogniser = agent_recogniser
        self.channel = channel
        self.settings = settings
        self.speaker = speaker
        self.recordings_dir = recordings_dir
        self.hold_pcm = hold_pcm
        self.turns = turns
        self.gate = VoiceGate(
            detector, echo, settings.speaking_threshold_boost_db, settings.barge_in
        )
        self.recognition = RecognitionStage(recogniser)
        self._listeners = list(listeners or [])
        self.call: Call | None = None
        self._voice: BotVoice | None = None
        self._responder: Responder | None = None
        self._watch = SilenceWatch(settings)
        self._expectation = Expectation.FREE
        self._turn_speech_ms = 0
        self._barged_in = False
        # Work in flight: the final decode of an ended turn, the reply being
        # prepared and spoken, a pause being judged, the wait on hold.
        self._finalising: asyncio.Task[None] | None = None
        self._replying: asyncio.Task[None] | None = None
        # The holding phrase, spoken while a slow turn is still being answered.
        self._meanwhile: asyncio.Task[None] | None = None
        self._judging: asyncio.Task[None] | None = None
        self._holding: asyncio.Task[None] | None = None
        self._pause: Pause | None = None
        self._hold: HoldController | None = None
        self._end_reason: EndReason | None = None
        self._recorder: CallRecorder | None = None
        # Phone lines: keys pressed, gathered into keyed answers.
        self._keypad = KeypadEntry() if callable(getattr(channel, "take_keys", None)) else None
        self._keyed: list[str] = []
        # A callback's first seconds: a person or an answering machine?
        self._answering: AnsweringDetector | None = None
        self._told_who_answered = False
        # After a resolved call: the caller's rating (bot/session/survey.py).
        self._survey: PostCallSurvey | None = None

    # -- running ---------------------------------------------------------------

    async def run(self) -> Call:
        call = self.engine.new_call(
            self._listeners,
            self.channel.name,
            self.channel.now_ms,
            line=getattr(self.channel, "line_info", None),
        )
        self.call = call
        call.meanwhile = self._say_meanwhile
        self._voice = BotVoice(call, self.channel, self.speaker)
        self._responder = Responder(self.engine, call, self.settings)
        if self.recordings_dir is not None:
            self._recorder = CallRecorder(self.recordings_dir / f"{call.call_id}.wav")
        reason, error = EndReason.CALLER_HANG_UP, None
        try:
            if self.callback is not None:
                # Who answered decides what they hear (see _listen_for_answer).
                call.queue_item_id = self.callback.item_id
                self._answering = AnsweringDetector()
            else:
                self._say_later([self.engine.greeting()])
            async for frame in self.channel.frames():
                await self._on_frame(frame)
                if self._keypad is not None:
                    self._on_keys()
                if self._end_reason is None and self.channel.far_end_gone:
                    if self._survey is not None:  # never kept for the survey
                        self._end_reason = self._survey.end_reason
                    elif self._idle():
                        self._end_reason = EndReason.CALLER_HANG_UP
                if self._end_reason is not None:
                    reason = self._end_reason
                    break
                self._check_prompts()
        except asyncio.CancelledError:
            reason = EndReason.INTERRUPTED
            raise
        except Exception as exc:
            error = str(getattr(exc, "code", type(exc).__name__))
            log.error("call %s failed: %s", call.call_id, exc)
            reason = EndReason.ERROR
        finally:
            await self._finish(call, reason, error)
        return call

    def _idle(self) -> bool:
        """Nothing more for the caller to hear: no turn open or being answered."""
        if self._hold is not None:
            return True
        return not (
            self.turns.in_turn
            or _running(self._finalising)
            or _running(self._replying)
            or self.channel.is_playing
        )

    async def _finish(self, call: Call, reason: EndReason, error: str | None) -> None:
        for signal in self.turns.end_now(TurnEnd.HANG_UP).signals:
            if isinstance(signal, TurnEnded):
                self._turn_ended(signal)  # the caller's speech_ended, always
        waiting = self._hold is not None
        for task in (
            self._holding, self._judging, self._finalising, self._replying, self._meanwhile
        ):  # fmt: skip
            if task is not None and not task.done():
                task.cancel()
                await _quietly(task)
        if waiting:
            await abandon_quietly(self.engine, call)
        self.channel.stop_playback()
        clear_line = getattr(self.channel, "clear_line", None)
        if callable(clear_line):
            # A phone line: the bot hangs up unless the caller already has.
            by = await clear_line()
            call.emit(HungUp(call.call_id, self.channel.now_ms(), by=by))
        self.recognition.close()
        path = None
        if self._recorder is not None:
            path = str(self._recorder.close())
        self.engine.end_call(call, reason, path, error)

    # -- frames ----------------------------------------------------------------

    async def _on_frame(self, frame: bytes) -> None:
        played = self.channel.played_frame()
        if self._recorder is not None:
            self._recorder.write(frame, played)
        if self._hold is not None:
            self._hold.caller_audio(frame)
        heard = self.gate.hear(frame, played, self.channel.is_playing)
        if self._answering is not None:
            self._listen_for_answer(heard.speech)
            return
        if heard.speech and self.turns.in_turn:
            self._turn_speech_ms += FRAME_MS
        await self._apply(self.turns.frame(frame, heard.speech, heard.level_dbfs))
        if heard.speech and self.turns.in_turn:
            self._maybe_barge_in()

    async def _apply(self, step: Step) -> None:
        for signal in step.signals:
            if isinstance(signal, TurnStarted):
                self._turn_started(signal)
        for frame in step.audio:
            if not self.turns.in_turn:
                break
            await self._feed(frame)
        for signal in step.signals:
            if isinstance(signal, Pause) and self.turns.in_turn:
                self._judge(signal)
            elif isinstance(signal, TurnEnded):
                self._turn_ended(signal)

    def _listen_for_answer(self, speech: bool) -> None:
        assert self._answering is not None and self.callback is not None
        callback = self.callback
        verdict = self._answering.frame(speech)
        if verdict is Answered.UNDECIDED:
            return
        if not self._told_who_answered:
            self._told_who_answered = True
            log.info("callback %d: a %s answered", callback.item_id, verdict.value)
            if callback.on_answered is not None:
                callback.on_answered(verdict.value)
        if verdict is Answered.PERSON:
            # The customer hears who calls and why, then waits for the agent.
            self._answering = None
            self._say_later([callback.intro], EndReason.TRANSFERRED)
        elif self._answering.greeting_over:
            self._answering = None
            self._say_later([callback.voicemail or callback.intro], EndReason.VOICEMAIL)

    def _on_keys(self) -> None:
        """Keys pressed on the phone: each one an event, finished entries a turn."""
        assert self.call is not None and self._keypad is not None and self._voice is not None
        keys: list[str] = self.channel.take_keys()  # type: ignore[attr-defined]
        for key in keys:
            now = self.channel.now_ms()
            self.call.emit(KeypadDigit(self.call.call_id, now, digit=key))
            self._watch.caller_spoke(now)
            if self._survey is not None:
                step = self._survey.keyed(key)
                if step is not None:
                    self._voice.interrupt()
                    self._answer_survey(step)
                continue
            if self._hold is not None:
                continue  # the dialogue has handed over
            self._voice.interrupt()  # a caller keying in is not listening
            entry = self._keypad.press(key, self._expectation)
            if entry is not None:
                self._keyed.append(entry)
        if self._keyed and self._hold is None and self._survey is None:
            ended = self.turns.keyed_turn()
            if ended is not None:
                self.call.turn_id = ended.turn_id
                keyed = Recognised(self._keyed.pop(0), is_final=True, confidence=1.0)
                self._reply(keyed, ended, {"endpoint_ms": 0.0, "asr_final_ms": 0.0})

    def _turn_started(self, started: TurnStarted) -> None:
        assert self.call is not None
        now = self.channel.now_ms()
        self.call.turn_id = started.turn_id
        self.call.emit(SpeechStarted(self.call.call_id, now, turn_id=started.turn_id))
        self._watch.caller_spoke(now)
        self._barged_in = False
        self._turn_speech_ms = 0

    def _maybe_barge_in(self) -> None:
        assert self.call is not None and self._voice is not None
        if self._barged_in or self._turn_speech_ms < self.settings.barge_in_min_speech_ms:
            return
        if not (self.channel.is_playing or _running(self._replying)):
            return
        if self._hold is not None and self._hold.agent_talking:
            return  # people talk over each other: the agent's voice is never cut
        self._barged_in = True
        self._voice.interrupt()
        self.call.emit(
            BargeIn(self.call.call_id, self.channel.now_ms(), turn_id=self.turns.turn_id)
        )

    async def _feed(self, frame: bytes) -> None:
        assert self.call is not None
        turn_id = self.turns.turn_id
        result = await self.recognition.feed(frame)
        if result is None or not self.turns.in_turn or self.turns.turn_id != turn_id:
            return
        if result.is_final:
            # The recogniser's own endpoint came first: its result is the turn's.
            for signal in self.turns.end_now(TurnEnd.RECOGNISER).signals:
                if isinstance(signal, TurnEnded):
                    self._turn_ended(signal, result)
            return
        self.call.emit(
            TranscriptPartial(
                self.call.call_id, self.channel.now_ms(), result.text, turn_id=turn_id
            )
        )
        await self._apply(
            self.turns.heard(result.text, judge_words(result.text, self._expectation))
        )

    def _judge(self, pause: Pause) -> None:
        """Judges the words at a pause, beside the frame loop (the latest
        words only, if they change while an earlier judgement runs)."""
        assert self._responder is not None
        responder = self._responder
        self._pause = pause

        async def judge() -> None:
            while self._pause is not None:
                latest, self._pause = self._pause, None
                with busy(self.channel):
                    complete = await responder.judge(latest.words, self.speaker)
                if self.turns.turn_id == latest.turn_id:
                    self.turns.judged(latest.words, complete)

        if not _running(self._judging):
            self._judging = asyncio.create_task(judge())

    def _turn_ended(self, ended: TurnEnded, final: Recognised | None = None) -> None:
        assert self.call is not None
        now = self.channel.now_ms()
        self.call.emit(
            SpeechEnded(
                self.call.call_id,
                now,
                ended.last_speech_ms,
                turn_id=ended.turn_id,
                reason=ended.reason,
                silence_ms=ended.silence_ms,
                level_dbfs=ended.level_dbfs,
            )
        )
        if ended.reason is TurnEnd.HANG_UP:
            return
        previous = self._finalising

        async def finalise() -> None:
            if previous is not None:
                await _quietly(previous)
            if ended.discarded:
                await self.recognition.reset()
                await self._listen_between_turns()
                return
            started = time.perf_counter()
            if final is None:
                with busy(self.channel):
                    result = await self.recognition.final()
            else:
                result = final
            asr_ms = round((time.perf_counter() - started) * 1000, 1)
            await self._turn_done(ended, result, asr_ms)

        self._finalising = asyncio.create_task(finalise())

    async def _turn_done(self, ended: TurnEnded, heard: Recognised, asr_ms: float) -> None:
        if not self.turns.in_turn:
            with busy(self.channel):  # the caller's time goes on while the recogniser resets
                await self.recognition.reset()
                await self._listen_between_turns()
        self._watch.active(self.channel.now_ms())
        if self._survey is not None:
            sure = heard.confidence >= self.settings.low_confidence
            self._answer_survey(self._survey.heard(heard.text, "voice", sure))
            return
        if not heard.text:
            return  # noise, a cough, or words outside a closed grammar
        if self._hold is not None:
            # The agent reads it in the live transcript; the dialogue has handed over.
            await self._hold.caller_said(heard, ended.turn_id)
            return
        timings = {"endpoint_ms": float(ended.silence_ms), "asr_final_ms": asr_ms}
        self._reply(heard, ended, timings)

    async def _listen_between_turns(self) -> None:
        if not self.turns.in_turn:
            await self.recognition.listen_for(self._expectation)

    # -- replies ---------------------------------------------------------------

    def _reply(self, heard: Recognised, ended: TurnEnded, timings: dict[str, float]) -> None:
        assert self._responder is not None
        responder, previous = self._responder, self._replying

        async def reply() -> None:
            if previous is not None:
                await _quietly(previous)
            with busy(self.channel):
                answer = await responder.answer(heard, ended.turn_id, timings, ended.level_dbfs)
            self._expectation = answer.expectation
            await self._listen_between_turns()
            if answer.then_end is EndReason.BOT_HANG_UP:
                warm_up(self.speaker, self.engine.settings.survey, self._keypad is not None)
            texts = list(answer.texts)
            hint = self._keypad.hint_for(answer.expectation) if self._keypad else None
            if hint is not None and texts:
                texts.append(hint)
            if self._meanwhile is not None:  # the holding phrase first, then the answer
                await _quietly(self._meanwhile)
                self._meanwhile = None
            cut = await self._say(texts, ended.turn_id, ended.last_speech_ms, timings)
            await self._after_speaking(answer.then_end, cut)

        self._replying = asyncio.create_task(reply())

    def _say_meanwhile(self, text: str) -> None:
        """Words while the caller's turn is still being answered (a store the
        dialogue needs is slow to come back): spoken now, the answer after."""
        assert self._voice is not None and self.call is not None
        voice, turn_id = self._voice, self.call.turn_id

        async def say() -> None:
            await voice.say([text], turn_id)

        self._meanwhile = asyncio.create_task(say())

    def _say_later(self, texts: list[str], then_end: EndReason | None = None) -> None:
        """Bot speech the caller did not ask for: greeting, reprompts, the time limit."""
        previous = self._replying

        async def say() -> None:
            if previous is not None:
                await _quietly(previous)
            assert self.call is not None
            cut = await self._say(texts, self.call.turn_id, None, {})
            await self._after_speaking(then_end, cut)

        self._replying = asyncio.create_task(say())

    async def _say(
        self, texts: list[str], turn_id: int, from_ms: int | None, timings: dict[str, float]
    ) -> bool:
        """Speaks; True when the caller cut it short."""
        assert self._voice is not None
        spoken = await self._voice.say(texts, turn_id, from_ms, timings)
        self._watch.active(self.channel.now_ms())
        return spoken.interrupted

    async def _after_speaking(self, then_end: EndReason | None, interrupted: bool) -> None:
        assert self.call is not None
        if then_end is None:
            return
        if self._survey is not None:
            self._end_reason = then_end  # the survey's last words, heard or cut short
            return
        if not interrupted and await self._start_survey(then_end):
            return
        if then_end is EndReason.TRANSFERRED and self.callback is None and self._transfers():
            # A phone line whose PBX takes escalated calls: transfer there.
            self._holding = asyncio.create_task(self._transfer_or_hold())
        elif then_end is EndReason.TRANSFERRED and HoldController.possible(
            self.engine, self.call, self.hold_pcm
        ):
            self._holding = asyncio.create_task(self._wait_on_hold())
        elif not (interrupted and then_end is EndReason.BOT_HANG_UP):
            # A transfer or goodbye cut short still happens; only the bot's own
            # hang-up waits, since the caller came in with more to say.
            self._end_reason = then_end

    async def _start_survey(self, reason: EndReason) -> bool:
        """A resolved call: the caller is asked to rate it before the bot hangs
        up (False when the survey is off, or the call was not resolved)."""
        assert self.call is not None
        settings = self.engine.settings.survey
        if self._survey is not None or self.channel.far_end_gone:
            return False
        if not PostCallSurvey.follows(settings, reason, self.engine, self.call):
            return False
        now = self.channel.now_ms()
        self._survey = PostCallSurvey(self.call, settings, reason, self._keypad is not None, now)
        self._expectation = Expectation.RATING
        await self._listen_between_turns()
        self._say_later(self._survey.question)
        return True

    def _answer_survey(self, step: SurveyStep) -> None:
        assert self._survey is not None
        if step.say:
            self._say_later(list(step.say), self._survey.end_reason if step.done else None)

    def _transfers(self) -> bool:
        target: object = getattr(self.channel, "transfer_target", None)
        return bool(target)

    async def _transfer_or_hold(self) -> None:
        """Hands the caller to the PBX; the handoff stays queued for the
        console. A transfer that fails keeps the caller on this line, on
        hold when there is a queue."""
        assert self.call is not None
        call, channel = self.call, self.channel
        target = str(getattr(channel, "transfer_target", ""))
        connected = bool(await channel.transfer())  # type: ignore[attr-defined]
        call.emit(Transferred(call.call_id, channel.now_ms(), to=target, connected=connected))
        if connected:
            self._end_reason = EndReason.TRANSFERRED
        elif HoldController.possible(self.engine, call, self.hold_pcm):
            await self._wait_on_hold()
        else:
            self._end_reason = EndReason.TRANSFERRED

    async def _wait_on_hold(self) -> None:
        assert self.call is not None and self._voice is not None and self.hold_pcm is not None
        self._hold = HoldController(
            self.engine,
            self.call,
            self.channel,
            self._voice,
            self.settings,
            self.hold_pcm,
            self._voice_bridge(),
        )
        warm_up(self.speaker, self.engine.settings.survey, self._keypad is not None)
        try:
            with busy(self.channel):
                number = await caller_number(self.engine, self.call)
            reason = await self._hold.wait(number)
        finally:
            self._hold = None
        if reason is None:
            self._watch.active(self.channel.now_ms())
        elif not await self._start_survey(reason):
            self._end_reason = reason

    def _voice_bridge(self) -> VoiceBridge | None:
        """Agents' voices for the wait (None without a queue, or where WebRTC
        cannot be had)."""
        assert self.call is not None
        if self.engine.queue is None:
            return None
        try:
            from bot.agent_voice.bridge import VoiceBridge
            from bot.agent_voice.link import ice_servers
            from bot.queue.voice import VoiceSignals
        except ImportError as exc:  # aiortc missing: agents type instead
            log.warning("agents' voices unavailable: %s", exc)
            return None
        options = self.engine.settings.agent_voice
        return VoiceBridge(
            self.engine,
            self.call,
            self.channel,
            VoiceSignals(self.engine.queue),
            ice_servers(options.ice_servers, options.turn_username, options.turn_password),
            self.agent_recogniser,
            options.lost_after_seconds,
        )

    # -- quiet -----------------------------------------------------------------

    def _check_prompts(self) -> None:
        if self._hold is not None or self.call is None:
            return
        if self._answering is not None:
            # Still listening to who answered a callback: nobody to prompt yet.
            self._watch.active(self.channel.now_ms())
            return
        now = self.channel.now_ms()
        quiet = self._idle() and not _running(self._judging)
        if self._survey is not None:
            if self._survey.silent_too_long(now, quiet):
                self._end_reason = self._survey.end_reason  # no answer: no score, no more words
            return
        prompt = self._watch.tick(now, quiet)
        if prompt is None:
            return
        dialogue = self.engine.dialogue_of(self.call)
        assert self._voice is not None
        if prompt is Prompt.TIME_LIMIT:
            self._voice.interrupt()
            texts = [dialogue.response_text(Response.CALL_TIME_LIMIT)]
            self._say_later(texts, EndReason.TIME_LIMIT)
        elif prompt is Prompt.GOODBYE:
            self._say_later([dialogue.response_text(Response.SILENCE_GOODBYE)], EndReason.SILENCE)
        elif prompt is Prompt.REPEAT and self._voice.last_texts:
            self._say_later(list(self._voice.last_texts))
        else:
            self._say_later([dialogue.response_text(Response.STILL_THERE)])


def _running(task: asyncio.Task[None] | None) -> bool:
    return task is not None and not task.done()


async def _quietly(task: asyncio.Task[None]) -> None:
    with contextlib.suppress(asyncio.CancelledError):
        try:
            await task
        except Exception:  # the earlier step's failure was logged where it happened
            log.exception("an earlier step of the call failed")
