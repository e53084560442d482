"""The turn detector: where a caller's turn starts and, above all, where it ends.

A fixed stretch of silence is a poor end-of-turn rule: long enough not to cut
people off mid-sentence, it makes every answer late. The detector waits for
as much silence as the words so far call for:

- ``COMPLETE_ANSWER``: the partial transcript already holds a whole closed
  answer (five digits at the order question, a clear yes): the turn ends now.
- ``COMPLETE``: the words are a whole request the dialogue is confident of
  ("where is my order"): a short silence ends the turn.
- ``OPEN``: nothing known either way: the usual silence.
- ``TRAILING``: the words promise more ("and", "um", "so", "but", the first
  digits of a number): a long silence, so a caller who is thinking is not
  cut off.

The dialogue's confidence comes from outside (the responder parses the words
at the first pause, while the caller is silent); the detector asks for it
with a ``Pause`` signal and takes it back through ``judged``. Everything here
counts milliseconds of audio and holds frames; nothing waits or decodes, so
the detector is tested on plain numbers and on real recordings alike.

Audio: the detector keeps a short ring of frames and hands the recogniser the
pre-roll before speech began (from the caller's soft first sound, never from
the previous turn), then every frame of the turn. After a turn ended early on
a complete answer, the caller's speech that follows is held: the tail of the
last word is dropped at the next short silence, but if the caller goes on
talking, all of it starts the next turn.
"""

from __future__ import annotations

import enum
import math
from collections import deque
from dataclasses import dataclass, field

from bot.events import TurnEnd
from bot.expectations import Expectation
from bot.pcm import FRAME_MS
from bot.speech.vad import (
    Segmenter,
    SegmenterSettings,
    SpeechDiscarded,
    SpeechEnded,
    SpeechStarted,
)


class Completeness(enum.Enum):
    COMPLETE_ANSWER = "complete_answer"
    COMPLETE = "complete"
    OPEN = "open"
    TRAILING = "trailing"


# Words after which a sentence is not over: conjunctions, hesitations, and
# words that need something after them.
TRAILING_WORDS = frozenset(
    """
    and but so or because cause um uh er erm ah hmm mm like then also plus
    the a an my your our their this that these those his her its
    to of for from with about at in on into by as than if when while which who
    is are was were be been i i'm it's there's i've i'd we we're
    can could would should will just well um-hm
    """.split()
)


def judge_words(words: str, expectation: Expectation = Expectation.FREE) -> Completeness:
    """What the words alone say, given the answer the bot waits for: a whole
    closed answer, trailing, or open."""
    tokens = words.split()
    if not tokens:
        return Completeness.OPEN
    if expectation.completed_by(words):
        return Completeness.COMPLETE_ANSWER
    if tokens[-1] in TRAILING_WORDS or expectation.number_begun(words):
        return Completeness.TRAILING
    return Completeness.OPEN


@dataclass(frozen=True)
class TurnSettings:
    """Timing of turns, in milliseconds of audio."""

    # Speech needed, without a break, before a turn starts (filters clicks).
    speech_start_ms: int = 60
    # A turn with less speech than this and no words is a cough or a knock.
    min_turn_ms: int = 200
    pre_roll_ms: int = 300
    max_turn_seconds: float = 30.0
    # Trailing silence that ends a turn, by what the words are.
    complete_silence_ms: int = 240
    open_silence_ms: int = 500
    trailing_silence_ms: int = 1000
    # Silence after which the words are judged (and the reply prepared).
    pause_ms: int = 100
    # After an early end: this much silence drops the tail of the last word;
    # this much more speech is new words, which start the next turn.
    early_end_hangover_ms: int = 100
    early_end_new_words_ms: int = 300

    def __post_init__(self) -> None:
        if not (
            0
            <= self.pause_ms
            <= self.complete_silence_ms
            <= self.open_silence_ms
            <= self.trailing_silence_ms
        ):
            raise ValueError("turn silences must grow: pause <= complete <= open <= trailing")

    def silence_for(self, completeness: Completeness) -> int:
        return {
            Completeness.COMPLETE_ANSWER: 0,
            Completeness.COMPLETE: self.complete_silence_ms,
            Completeness.OPEN: self.open_silence_ms,
            Completeness.TRAILING: self.trailing_silence_ms,
        }[completeness]


@dataclass(frozen=True)
class TurnStarted:
    turn_id: int
    # Start of the first speech frame, call time.
    t_ms: int


@dataclass(frozen=True)
class TurnEnded:
    turn_id: int
    # When the detector decided (call time) and the caller's last speech.
    t_ms: int
    last_speech_ms: int
    reason: TurnEnd
    # Trailing silence waited for; the turn's speech level (dBFS).
    silence_ms: int
    level_dbfs: float | None
    # Only speech too short to be words (a cough, a knock): nothing to decode.
    discarded: bool = False


@dataclass(frozen=True)
class Pause:
    """The caller fell silent inside a turn: judge these words now."""

    turn_id: int
    words: str


TurnSignal = TurnStarted | TurnEnded | Pause


@dataclass
class Step:
    """What one frame (or one partial) revealed."""

    signals: list[TurnSignal] = field(default_factory=list)
    # Audio for the recogniser, in order (pre-roll first when a turn starts).
    audio: list[bytes] = field(default_factory=list)


class TurnDetector:
    """Turns of one caller, from frames, speech decisions and partial words."""

    def __init__(self, settings: TurnSettings | None = None) -> None:
        self.settings = settings or TurnSettings()
        s = self.settings
        self._segmenter = Segmenter(
            SegmenterSettings(
                speech_start_ms=s.speech_start_ms,
                end_silence_ms=s.trailing_silence_ms,
                min_utterance_ms=s.min_turn_ms,
                pre_roll_ms=s.pre_roll_ms,
                max_utterance_seconds=s.max_turn_seconds,
            )
        )
        self._ring: deque[bytes] = deque(
            maxlen=math.ceil((s.pre_roll_ms + s.speech_start_ms) / FRAME_MS) + 1
        )
        self._now_ms = 0
        self.turn_id = 0
        self._in_turn = False
        self._start_ms = 0
        self._last_speech_ms = 0
        self._words = ""
        self._completeness = Completeness.OPEN
        self._judged_words: str | None = None
        self._paused = False
        self._power_sum = 0.0
        self._speech_frames = 0
        self._run_power: list[float] = []
        # After an early end: the frames since, and the speech and silence in them.
        self._held: list[bytes] | None = None
        self._held_speech_ms = 0
        self._held_silence_ms = 0

    @property
    def in_turn(self) -> bool:
        return self._in_turn

    @property
    def words(self) -> str:
        return self._words

    @property
    def completeness(self) -> Completeness:
        return self._completeness

    @property
    def silence_needed_ms(self) -> int:
        return self.settings.silence_for(self._completeness)

    # -- inputs ----------------------------------------------------------------

    def frame(self, pcm: bytes, speech: bool, level_dbfs: float) -> Step:
        """One 20 ms frame with its speech decision and level."""
        self._now_ms += FRAME_MS
        if speech:
            self._last_speech_ms = self._now_ms
        if self._held is not None:
            return self._held_frame(pcm, speech)
        self._ring.append(pcm)
        power = 10 ** (level_dbfs / 10) if speech else 0.0
        if not self._in_turn:
            # The speech run that may become a turn: its frames count in its level.
            self._run_power = [*self._run_power, power] if speech else []
        step = Step()
        for event in self._segmenter.process(speech, FRAME_MS):
            # (A turn started from held audio is already on when the segmenter starts.)
            if isinstance(event, SpeechStarted) and not self._in_turn:
                self._start(event, step)
            elif isinstance(event, SpeechEnded) and self._in_turn:
                reason = TurnEnd.MAX_LENGTH if event.reason == "max_length" else TurnEnd.SILENCE
                step.signals.append(self._end(reason))
                return step
            elif isinstance(event, SpeechDiscarded) and self._in_turn:
                step.signals.append(self._end(TurnEnd.SILENCE, discarded=not self._words))
                return step
        if not self._in_turn:
            return step
        started_now = bool(step.audio)
        if not started_now:
            step.audio.append(pcm)
        if speech:
            if not started_now:
                self._power_sum += power
                self._speech_frames += 1
            self._paused = False
            return step
        silence = self._now_ms - self._last_speech_ms
        if not self._paused and silence >= self.settings.pause_ms and self._words:
            self._paused = True
            step.signals.append(Pause(self.turn_id, self._words))
        if silence >= self.silence_needed_ms:
            speech_ms = self._last_speech_ms - self._start_ms
            discarded = not self._words and speech_ms < self.settings.min_turn_ms
            self._segmenter.force_end()
            step.signals.append(self._end(TurnEnd.SILENCE, discarded=discarded))
        return step

    def heard(self, words: str, completeness: Completeness) -> Step:
        """A new partial transcript and what its words alone say."""
        step = Step()
        if not self._in_turn:
            return step
        changed = words != self._words
        self._words = words
        if self._judged_words != words or completeness is Completeness.COMPLETE_ANSWER:
            self._completeness = completeness
            self._judged_words = None
        if changed and self._paused and completeness is not Completeness.COMPLETE_ANSWER:
            # The recogniser caught up with the caller's last words during
            # the pause: these words are the ones to judge.
            step.signals.append(Pause(self.turn_id, words))
        if completeness is Completeness.COMPLETE_ANSWER:
            self._segmenter.force_end()
            step.signals.append(self._end(TurnEnd.COMPLETE_ANSWER))
            self._held = []
            self._held_speech_ms = 0
            self._held_silence_ms = 0
        return step

    def judged(self, words: str, complete: bool) -> None:
        """The dialogue's view of the words at a pause: a whole request or not.

        Ignored if the caller has said more since (the words changed)."""
        if not self._in_turn or words != self._words:
            return
        if self._completeness is Completeness.OPEN and complete:
            self._completeness = Completeness.COMPLETE
            self._judged_words = words

    def end_now(self, reason: TurnEnd) -> Step:
        """The recogniser's endpoint fired, or the caller hung up."""
        step = Step()
        if self._in_turn:
            self._segmenter.force_end()
            step.signals.append(self._end(reason))
        return step

    def keyed_turn(self) -> TurnEnded | None:
        """A turn the caller keyed in on the phone's keypad (None while a
        spoken turn is open: the keys wait for it to end)."""
        if self._in_turn:
            return None
        self.turn_id += 1
        return TurnEnded(
            turn_id=self.turn_id,
            t_ms=self._now_ms,
            last_speech_ms=self._now_ms,
            reason=TurnEnd.KEYPAD,
            silence_ms=0,
            level_dbfs=None,
        )

    # -- inside ----------------------------------------------------------------

    def _start(self, event: SpeechStarted, step: Step) -> None:
        back = (self._segmenter.now_ms - event.audio_start_ms) // FRAME_MS
        # The segmenter's clock skips frames held after an early end: count back.
        start_ms = self._now_ms - (self._segmenter.now_ms - event.t_ms)
        self._open_turn(
            start_ms, self._run_power, list(self._ring)[-back:] if back > 0 else [], step
        )
        self._run_power = []

    def _open_turn(
        self, start_ms: int, speech_power: list[float], audio: list[bytes], step: Step
    ) -> None:
        """A new turn from ``start_ms``: its speech so far, and its audio so far."""
        self.turn_id += 1
        self._in_turn = True
        self._start_ms = start_ms
        self._words = ""
        self._completeness = Completeness.OPEN
        self._judged_words = None
        self._paused = False
        self._power_sum = sum(speech_power)
        self._speech_frames = len(speech_power)
        step.signals.append(TurnStarted(self.turn_id, start_ms))
        step.audio.extend(audio)

    def _end(self, reason: TurnEnd, discarded: bool = False) -> TurnEnded:
        self._in_turn = False
        self._ring.clear()
        level = (
            round(10 * math.log10(self._power_sum / self._speech_frames), 1)
            if self._speech_frames and self._power_sum > 0
            else None
        )
        return TurnEnded(
            turn_id=self.turn_id,
            t_ms=self._now_ms,
            last_speech_ms=self._last_speech_ms,
            reason=reason,
            silence_ms=self._now_ms - self._last_speech_ms,
            level_dbfs=level,
            discarded=discarded,
        )

    def _held_frame(self, pcm: bytes, speech: bool) -> Step:
        assert self._held is not None
        self._held.append(pcm)
        if speech:
            self._held_speech_ms += FRAME_MS
            self._held_silence_ms = 0
        else:
            self._held_silence_ms += FRAME_MS
        step = Step()
        if self._held_speech_ms >= self.settings.early_end_new_words_ms:
            # The caller went on talking: everything since the early end is a new turn.
            held, self._held = self._held, None
            self._segmenter.reset()
            self._open_turn(self._now_ms - len(held) * FRAME_MS, [], held, step)
            return step
        if self._held_silence_ms >= self.settings.early_end_hangover_ms:
            self._held = None  # only the tail of the last word: dropped
            self._segmenter.reset()
        return step
