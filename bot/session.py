"""One voice call: frames in, turns through the dialogue, speech out.

``CallSession`` is driven by the channel's 20 ms frames. Each frame goes
through voice activity (with the echo gate while the bot talks) and the
segmenter; during an utterance it is fed to the call's recogniser in a worker
thread. A turn ends at Vosk's endpoint, at the segmenter's end of speech, or
at once when the dialogue expects a closed answer and the partial result
already completes it. The reply is spoken sentence by sentence in a separate
task, so the caller can barge in: playback stops and their words, from the
pre-roll on, go to the recogniser.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, TypeVar

from bot.call import Call, CallEngine
from bot.dialogue import Dialogue
from bot.events import (
    BargeIn,
    BotSpeechEnded,
    BotSpeechStarted,
    EventListener,
    SpeechEnded,
    SpeechStarted,
    TranscriptPartial,
)
from bot.expectations import Expectation, expectation_for, is_yes
from bot.hold import HoldLine, abandon_quietly, convert_to_callback, hold_chunks
from bot.pcm import FRAME_MS
from bot.recording import CallRecorder

log = logging.getLogger(__name__)

_T = TypeVar("_T")


class Recognition(Protocol):
    @property
    def text(self) -> str: ...
    @property
    def is_final(self) -> bool: ...
    @property
    def confidence(self) -> float: ...


class Recogniser(Protocol):
    def accept(self, frame: bytes) -> Recognition | None: ...
    def final(self) -> Recognition: ...
    def set_grammar(self, phrases: list[str] | None) -> None: ...
    def reset(self) -> None: ...


class Channel(Protocol):
    name: str

    def frames(self) -> AsyncIterator[bytes]: ...
    async def play(self, pcm: bytes) -> bool: ...
    def stop_playback(self) -> None: ...
    @property
    def is_playing(self) -> bool: ...
    def now_ms(self) -> int: ...
    def played_frame(self) -> bytes: ...


class Speaker(Protocol):
    def stream(self, text: str) -> AsyncIterator[bytes]: ...


class SpeechDetector(Protocol):
    def is_speech(self, frame: bytes, threshold_boost_db: float = 0.0) -> bool: ...


class EchoVerdict(Protocol):
    @property
    def caller_speaking(self) -> bool: ...


class EchoCanceller(Protocol):
    def feed(self, mic: bytes, reference: bytes | None) -> EchoVerdict: ...


class SegmenterLike(Protocol):
    def process(self, is_speech: bool, frame_ms: int = FRAME_MS) -> Sequence[object]: ...
    def force_end(self) -> Sequence[object]: ...
    def reset(self) -> None: ...


@dataclass(frozen=True)
class VoiceSettings:
    # Caller silence before the bot repeats its question, then asks "are you
    # still there?", then says goodbye.
    silence_reprompt_seconds: float = 7.0
    max_reprompts: int = 2
    max_call_seconds: float = 900.0
    # Below this mean word confidence the bot asks the caller to say it again.
    low_confidence: float = 0.5
    # Extra energy (dB) speech needs while the bot itself is talking.
    speaking_threshold_boost_db: float = 6.0
    barge_in: bool = True
    # Caller speech needed before the bot stops talking (coughs and clicks are shorter).
    barge_in_min_speech_ms: int = 160
    pre_roll_ms: int = 300
    # After a turn ends early (a complete order number in the partial result),
    # the caller's speech until this much silence still belongs to that turn.
    early_end_hangover_ms: int = 100
    # Without an agent queue the call ends once the transfer message is
    # spoken; with one, the caller waits on hold (music, their place in line,
    # and whatever the agent types, spoken).
    end_call_on_escalation: bool = True
    hold_announce_seconds: float = 30.0
    # Waits longer than this are offered a call back (when the number is known).
    callback_offer_seconds: float = 240.0
    hold_poll_seconds: float = 1.0


class CallSession:
    """Runs one call on a channel until it ends; always ends it cleanly."""

    def __init__(
        self,
        engine: CallEngine,
        channel: Channel,
        recogniser: Recogniser,
        speaker: Speaker,
        detector: SpeechDetector,
        segmenter: SegmenterLike,
        settings: VoiceSettings,
        echo: EchoCanceller | None = None,
        recordings_dir: Path | None = None,
        listeners: list[EventListener] | None = None,
        hold_pcm: bytes | None = None,
    ) -> None:
        self.engine = engine
        self.channel = channel
        self.recogniser = recogniser
        self.speaker = speaker
        self.detector = detector
        self.segmenter = segmenter
        self.settings = settings
        self.echo = echo
        self.recordings_dir = recordings_dir
        self._listeners = list(listeners or [])
        self.hold_pcm = hold_pcm
        self.call: Call | None = None
        self._pre_roll: collections.deque[bytes] = collections.deque(
            maxlen=max(1, settings.pre_roll_ms // FRAME_MS)
        )
        self._in_utterance = False
        self._absorbing_ms: int | None = None
        self._utterance_speech_ms = 0
        self._barged_in = False
        self._last_speech_ms = 0
        self._endpoint_ms: int | None = None
        self._partial = ""
        self._expectation = Expectation.FREE
        self._grammar_for = Expectation.FREE
        # Vosk recognisers are not thread-safe: one thread per call runs them.
        self._asr_thread = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="asr")
        self._responder: asyncio.Task[None] | None = None
        self._finaliser: asyncio.Task[None] | None = None
        self._hold: asyncio.Task[None] | None = None
        self._on_hold = False
        self._callback_offered = False
        self._speech_generation = 0
        self._silent_since_ms = 0
        self._reprompts = 0
        self._low_confidence_streak = 0
        self._last_bot_texts: list[str] = []
        self._end_reason: str | None = None
        self._ending = False
        self._recorder: CallRecorder | None = None

    # -- running ---------------------------------------------------------------

    async def run(self) -> Call:
        call = self.engine.new_call(self._listeners, self.channel.name, self.channel.now_ms)
        self.call = call
        if self.recordings_dir is not None:
            self._recorder = CallRecorder(self.recordings_dir / f"{call.call_id}.wav")
        reason = "caller_hang_up"
        try:
            self._start_speaking([self.engine.greeting()], response_from_ms=None)
            async for frame in self.channel.frames():
                await self._on_frame(frame)
                if self._end_reason is not None:
                    reason = self._end_reason
                    break
                self._check_timers()
        except asyncio.CancelledError:
            reason = "interrupted"
            raise
        except Exception as exc:
            code = getattr(exc, "code", type(exc).__name__)
            log.error("call %s failed: %s", call.call_id, exc)
            reason = f"error:{code}"
        finally:
            await self._finish(call, reason)
        return call

    async def _finish(self, call: Call, reason: str) -> None:
        if self._hold is not None and not self._hold.done():
            self._hold.cancel()
            await _quietly(self._hold)
        if self._on_hold:
            await abandon_quietly(self.engine, call)
        if self._finaliser is not None and not self._finaliser.done():
            self._finaliser.cancel()
            await _quietly(self._finaliser)
        if self._responder is not None and not self._responder.done():
            self._responder.cancel()
            await _quietly(self._responder)
        self.channel.stop_playback()
        self._asr_thread.shutdown(wait=False)
        path = None
        if self._recorder is not None:
            path = str(self._recorder.close())
        self.engine.end_call(call, reason, path)

    # -- frames ----------------------------------------------------------------

    async def _on_frame(self, frame: bytes) -> None:
        assert self.call is not None
        played = self.channel.played_frame()
        if self._recorder is not None:
            self._recorder.write(frame, played)
        bot_talking = self.channel.is_playing
        if self.echo is not None:
            # The echo gate runs its own voice activity detector (one per
            # stream: WebRTC's keeps state), raised while the bot plays.
            # Always the reference, also just after playback: the room and the
            # sound server deliver the bot's last words a little later.
            speech = self.echo.feed(frame, played).caller_speaking
        else:
            boost = self.settings.speaking_threshold_boost_db if bot_talking else 0.0
            speech = self.detector.is_speech(frame, boost)
        if bot_talking and not self.settings.barge_in:
            speech = False
        now = self.channel.now_ms()
        if self._absorbing_ms is not None:
            # The rest of an answer whose turn already ended early: not a new turn.
            self._absorbing_ms = 0 if speech else self._absorbing_ms + FRAME_MS
            if self._absorbing_ms < self.settings.early_end_hangover_ms:
                return
            self._absorbing_ms = None
        if speech:
            # The call time of the caller's latest speech sample (end of this frame).
            self._last_speech_ms = now
            self._utterance_speech_ms += FRAME_MS
        elif not self._in_utterance:
            self._utterance_speech_ms = 0
        for event in self.segmenter.process(speech, FRAME_MS):
            kind = type(event).__name__
            if kind == "SpeechStarted":
                await self._speech_started(now)
            elif kind == "SpeechDiscarded" and self._in_utterance:
                # Too short to be words (a cough, a click): forget it.
                self._in_utterance = False
                await self._asr(self.recogniser.reset)
                await self._apply_grammar()
            elif kind == "SpeechEnded":
                self.call.emit(SpeechEnded(self.call.call_id, now, self._last_speech_ms))
                if self._in_utterance:
                    await self._end_turn(now)
        if (
            self._in_utterance
            and not self._barged_in
            and self._utterance_speech_ms >= self.settings.barge_in_min_speech_ms
            and (self.channel.is_playing or self._responder_speaking())
        ):
            self._barge_in(now)
        if self._in_utterance:
            await self._feed(frame, now)
        else:
            self._pre_roll.append(frame)

    async def _speech_started(self, now: int) -> None:
        assert self.call is not None
        self.call.emit(SpeechStarted(self.call.call_id, now))
        self._silent_since_ms = now
        self._reprompts = 0
        self._barged_in = False
        self._in_utterance = True
        self._partial = ""
        for old in list(self._pre_roll):
            await self._feed(old, now)
        self._pre_roll.clear()

    def _barge_in(self, now: int) -> None:
        assert self.call is not None
        self._barged_in = True
        self._speech_generation += 1
        self.channel.stop_playback()
        self.call.emit(BargeIn(self.call.call_id, now))

    async def _feed(self, frame: bytes, now: int) -> None:
        assert self.call is not None
        result = await self._asr(self.recogniser.accept, frame)
        if result is None or not self._in_utterance:
            return
        if result.is_final:
            # Vosk's own endpoint: the final result came with this frame.
            self._close_utterance()
            await self._turn_done(result, now, self._last_speech_ms, 0.0)
            return
        if result.text and result.text != self._partial:
            self._partial = result.text
            self.call.emit(TranscriptPartial(self.call.call_id, now, result.text))
            if self._expectation.completed_by(result.text):
                self._absorbing_ms = 0
                await self._end_turn(now)

    def _close_utterance(self) -> None:
        self._in_utterance = False
        # The segmenter may still be inside the utterance that just ended: end
        # it there too, so words that follow start a new utterance.
        self.segmenter.force_end()

    async def _end_turn(self, now: int) -> None:
        """Ends the caller's turn. The final decode runs beside the frame loop,
        so audio keeps flowing (and the clock of a file call keeps real time)."""
        self._close_utterance()
        last_speech_ms = self._last_speech_ms

        async def finalise() -> None:
            started = time.perf_counter()
            with _busy(self.channel):
                result = await self._asr(self.recogniser.final)
            asr_ms = (time.perf_counter() - started) * 1000
            await self._turn_done(result, now, last_speech_ms, asr_ms)

        self._finaliser = asyncio.create_task(finalise())

    async def _turn_done(
        self, result: Recognition, endpoint_ms: int, last_speech_ms: int, asr_ms: float
    ) -> None:
        assert self.call is not None
        if not self._in_utterance:
            # (A new utterance may already have started while this one finished.)
            await self._asr(self.recogniser.reset)
            await self._apply_grammar()
        now = self.channel.now_ms()
        self._silent_since_ms = now
        text = result.text.strip()
        timings = {
            "endpoint_ms": float(endpoint_ms - last_speech_ms),
            "asr_final_ms": round(asr_ms, 1),
        }
        if not text:
            return  # noise, a cough, or words outside a closed grammar
        if self._on_hold:
            # The agent reads it in the live transcript; the dialogue has handed over.
            self.engine.record_caller_speech(self.call, text, result.confidence)
            if self._callback_offered:
                await self._answer_callback_offer(text)
            return
        if result.confidence < self.settings.low_confidence:
            await self._low_confidence(text, result.confidence)
            return
        self._low_confidence_streak = 0
        self._respond(text, result.confidence, timings, last_speech_ms)

    async def _low_confidence(self, text: str, confidence: float) -> None:
        assert self.call is not None
        self._low_confidence_streak += 1
        # Back to free speech: a closed grammar may be what failed.
        self._set_expectation(Expectation.FREE)
        await self._apply_grammar()
        escalating = self._low_confidence_streak >= 2
        reply = "utter_escalate_repeated_fallback" if escalating else "utter_ask_again"
        # Kept with its confidence (before any handoff is built): exactly the
        # words the agent and the trainers need to see.
        said = self._dialogue().response_text(reply)
        await self.engine.record_unclear_turn(self.call, text, confidence, said)
        if escalating:
            self._start_speaking(
                await self.engine.escalate(self.call, "repeated_fallback"),
                None,
                then_end="transferred",
            )
        else:
            self._start_speaking([said], None)

    # -- replies ---------------------------------------------------------------

    def _respond(
        self, text: str, confidence: float, timings: dict[str, float], spoke_at: int
    ) -> None:
        previous = self._responder

        async def respond() -> None:
            assert self.call is not None
            if previous is not None and not previous.done():
                await _quietly(previous)
            with _busy(self.channel):
                started = time.perf_counter()
                result = await self.engine.turn(self.call, text, confidence, timings)
                timings["dialogue_ms"] = round((time.perf_counter() - started) * 1000, 1)
            self._set_expectation(expectation_for(result.requested_slot, result.responses))
            await self._apply_grammar()
            end = None
            if result.hang_up:
                end = "bot_hang_up"
            elif result.escalated and self.settings.end_call_on_escalation:
                end = "transferred"
            await self._speak(list(result.bot), spoke_at, timings, end)

        self._responder = asyncio.create_task(respond())

    def _start_speaking(
        self, texts: list[str], response_from_ms: int | None, then_end: str | None = None
    ) -> None:
        previous = self._responder

        async def speak() -> None:
            if previous is not None and not previous.done():
                await _quietly(previous)
            await self._speak(texts, response_from_ms, {}, then_end)

        self._responder = asyncio.create_task(speak())

    def _responder_speaking(self) -> bool:
        return self._responder is not None and not self._responder.done()

    async def _speak(
        self,
        texts: list[str],
        response_from_ms: int | None,
        timings: dict[str, float],
        then_end: str | None,
    ) -> None:
        assert self.call is not None
        generation = self._speech_generation
        self._last_bot_texts = texts
        started = False
        interrupted = False
        render_started = time.perf_counter()
        for text in texts:
            stream = self.speaker.stream(text)
            while True:
                with _busy(self.channel):
                    try:
                        chunk = await anext(stream)
                    except StopAsyncIteration:
                        break
                if generation != self._speech_generation:
                    interrupted = True
                    break
                if not started:
                    started = True
                    now = self.channel.now_ms()
                    tts_ms = round((time.perf_counter() - render_started) * 1000, 1)
                    response_ms = None if response_from_ms is None else now - response_from_ms
                    self.call.emit(
                        BotSpeechStarted(
                            self.call.call_id,
                            now,
                            " ".join(texts),
                            response_ms,
                            {**timings, "tts_first_chunk_ms": tts_ms},
                        )  # fmt: skip
                    )
                if not await self.channel.play(chunk):
                    interrupted = True
                    break
            if interrupted:
                break
        now = self.channel.now_ms()
        if started:
            self.call.emit(BotSpeechEnded(self.call.call_id, now, interrupted))
        self._silent_since_ms = now
        if then_end == "transferred" and self._can_hold():
            self._on_hold = True
            self._hold = asyncio.create_task(self._hold_line())
        elif then_end and not interrupted:
            self._end_reason = then_end
        elif then_end and interrupted and then_end != "bot_hang_up":
            # A transfer message cut short still transfers.
            self._end_reason = then_end

    # -- on hold ---------------------------------------------------------------

    def _can_hold(self) -> bool:
        return (
            self.hold_pcm is not None
            and self.call is not None
            and self.call.queue_item_id is not None
            and self.engine.queue is not None
        )

    async def _hold_line(self) -> None:
        """Waits with the caller until an agent finishes or sends them back."""
        assert self.call is not None and self.hold_pcm is not None
        call = self.call
        line = HoldLine(
            self.engine,
            call,
            self.settings.hold_announce_seconds,
            self.settings.callback_offer_seconds,
            await self._caller_number(),
        )
        music = hold_chunks(self.hold_pcm, self.settings.hold_poll_seconds)
        while True:
            with _busy(self.channel):
                step = await line.next_step(self.channel.now_ms())
            if step.offers_callback:
                self._callback_offered = True
            if step.say:
                await self._speak(list(step.say), None, {}, None)
            if step.end_reason:
                self._on_hold = False
                self._end_reason = step.end_reason
                return
            if step.back_to_bot:
                self._on_hold = False
                return
            if not step.say:
                await self.channel.play(next(music))

    def _dialogue(self) -> Dialogue:
        """The model this call started with."""
        return self.engine.dialogue_of(self.call) if self.call else self.engine.dialogue

    async def _caller_number(self) -> str | None:
        assert self.call is not None
        if self.call.caller_number:
            return self.call.caller_number
        number = (await self._dialogue().slots(self.call.call_id)).get("phone_number")
        return str(number) if number else None

    async def _answer_callback_offer(self, text: str) -> None:
        assert self.call is not None
        self._callback_offered = False
        dialogue = self._dialogue()
        number = await self._caller_number()
        if is_yes(text) and number and await convert_to_callback(self.engine, self.call, number):
            if self._hold is not None:
                self._hold.cancel()
            self._on_hold = False
            said = dialogue.response_text("utter_callback_arranged")
            self._start_speaking([said], None, then_end="callback_arranged")
        else:
            self._start_speaking([dialogue.response_text("utter_keep_waiting")], None)

    def _set_expectation(self, expectation: Expectation) -> None:
        self._expectation = expectation

    async def _apply_grammar(self) -> None:
        """Switches the recogniser's grammar between utterances, never inside one
        (Vosk resets on a grammar change and would lose the caller's words)."""
        if self._in_utterance or self._expectation is self._grammar_for:
            return
        self._grammar_for = self._expectation
        await self._asr(self.recogniser.set_grammar, self._expectation.grammar())

    async def _asr(self, fn: Callable[..., _T], *args: object) -> _T:
        """Every recogniser call on the call's one ASR thread, in order."""
        return await asyncio.get_running_loop().run_in_executor(self._asr_thread, fn, *args)

    # -- timers ----------------------------------------------------------------

    def _check_timers(self) -> None:
        if self._ending or self._on_hold:
            return
        now = self.channel.now_ms()
        if now >= self.settings.max_call_seconds * 1000:
            self._ending = True
            self._speech_generation += 1
            self.channel.stop_playback()
            text = self._dialogue().response_text("utter_call_time_limit")
            self._start_speaking([text], None, then_end="time_limit")
            return
        if self._in_utterance or self.channel.is_playing or self._responder_speaking():
            self._silent_since_ms = now
            return
        if now - self._silent_since_ms < self.settings.silence_reprompt_seconds * 1000:
            return
        self._silent_since_ms = now
        self._reprompts += 1
        dialogue = self._dialogue()
        if self._reprompts > self.settings.max_reprompts:
            self._ending = True
            self._start_speaking(
                [dialogue.response_text("utter_silence_goodbye")], None, then_end="silence"
            )
        elif self._reprompts == 1 and self._last_bot_texts:
            self._start_speaking(list(self._last_bot_texts), None)
        else:
            self._start_speaking([dialogue.response_text("utter_still_there")], None)


async def _quietly(task: asyncio.Task[None]) -> None:
    try:
        await task
    except asyncio.CancelledError:
        pass
    except Exception:  # the earlier turn's failure was logged where it happened
        log.exception("an earlier reply failed")


class _busy:
    """Marks the session as working, so a file channel's clock runs in real time."""

    def __init__(self, channel: object) -> None:
        hold = getattr(channel, "busy", None)
        self._hold = hold() if callable(hold) else None

    def __enter__(self) -> None:
        if self._hold is not None:
            self._hold.__enter__()

    def __exit__(self, *exc: object) -> None:
        if self._hold is not None:
            self._hold.__exit__(*exc)
