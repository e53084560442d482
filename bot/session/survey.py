"""The post-call survey: a resolved call's caller rates it from one to five.

When the bot resolves a call (its goodbye) or an agent does (*Resolve* while
the caller waits on the bot's line), and ``survey.enabled`` is set, the
caller is asked for a rating before the bot hangs up. They answer by voice
("five", "four out of five", "it was a two"; the recogniser listens with a
small grammar), on the phone's keypad (1 to 5, no hash needed) or by typing
on a text call. An answer not understood is asked once more, then the bot
says a polite goodbye without a score; a clear no thanks gets that goodbye at
once. Silence, or the caller hanging up, just ends the call. The call keeps
the end reason of its resolution whatever happens in the survey, so it never
changes how calls are counted. A score is a ``survey_answer`` event, which
the call store writes into the call's ``csat_*`` columns.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from bot.call import Call, CallEngine
from bot.events import EndReason, SurveyAnswered
from bot.nlu.number_words import is_number_word
from bot.session.contracts import Speaker
from bot.settings import SurveySettings

_SCORES = {"one": 1, "two": 2, "three": 3, "four": 4, "five": 5}
_SCORES.update({str(score): score for score in range(1, 6)})
# Words a recogniser writes for a lone rating it misheard ("for" is "four");
# trusted only when they are the whole answer ("thanks for the help" is not a four).
_MISHEARD_ALONE = {"won": 1, "to": 2, "too": 2, "tree": 3, "for": 4, "fore": 4}
# "no one", "a good one", "the last one": "one" as a word, not a number.
_ONE_AS_A_WORD = frozenset(
    {"no", "any", "every", "some", "the", "this", "that", "which", "good", "great", "bad",
     "nice", "fine", "last", "other", "only", "each", "someone", "anyone"}
)  # fmt: skip
# Whole answers that decline the survey.
_DECLINES = frozenset(
    {"no", "nope", "no thanks", "no thank you", "goodbye", "bye", "bye bye", "skip", "skip it",
     "pass", "not now", "no time", "i'd rather not", "rather not", "no thanks goodbye"}
)  # fmt: skip
_SCALE = re.compile(r"\bout of (\w+)")
_NOT_WORDS = re.compile(r"[^a-z0-9' ]+")


def _words(text: str) -> list[str]:
    """Lowercase words; "4/5" reads as "4 out of 5", "4-star" as "4 star"."""
    spaced = text.lower().replace("/", " out of ")
    return _NOT_WORDS.sub(" ", spaced).split()


def parse_rating(text: str) -> int | None:
    """The rating from one to five in a caller's answer, or None when there is
    not exactly one ("five", "four out of five", "3", "it was a two", "4/5";
    not "six", "five out of ten", "three or four", "not a five")."""
    words = _words(text)
    if len(words) == 1 and words[0] in _MISHEARD_ALONE:
        return _MISHEARD_ALONE[words[0]]
    joined = " ".join(words)
    scales = _SCALE.findall(joined)
    if any(scale not in {"five", "5"} for scale in scales):
        return None  # another scale: a guess at its conversion would be a wrong score
    words = _SCALE.sub(" ", joined).split()
    found: set[int] = set()
    for index, word in enumerate(words):
        if word in _SCORES:
            before = words[:index]
            if word == "one" and before and before[-1] in _ONE_AS_A_WORD:
                continue
            if before[-2:] in (["not", "a"], ["never", "a"]) or before[-1:] == ["not"]:
                return None  # "not a five": what it is instead was not said
            found.add(_SCORES[word])
        elif is_number_word(word):
            return None  # a number off the scale ("six", "10", "zero")
    return found.pop() if len(found) == 1 else None


def declines(text: str) -> bool:
    """A whole answer that says no to the survey ("no thanks", "goodbye")."""
    return " ".join(_words(text)) in _DECLINES


@dataclass(frozen=True)
class SurveyStep:
    """What the caller hears next; ``done``: the survey is over (the call ends
    once it is said)."""

    say: tuple[str, ...] = ()
    score: int | None = None
    done: bool = False


class PostCallSurvey:
    """One call's survey, on any channel: the question, at most one re-ask, a
    score or not. ``heard`` and ``keyed`` take the caller's answers; the
    session speaks what they return and ends the call when a step is done."""

    def __init__(
        self,
        call: Call,
        settings: SurveySettings,
        end_reason: EndReason,
        keypad: bool = False,
        now_ms: int = 0,
    ) -> None:
        self._call = call
        self._settings = settings
        # Why the call ends, whatever the survey's outcome: its resolution.
        self.end_reason = end_reason
        self._keypad = keypad
        self._misses = 0
        self.done = False
        self._quiet_since_ms = now_ms

    @staticmethod
    def follows(
        settings: SurveySettings, reason: EndReason, engine: CallEngine, call: Call
    ) -> bool:
        """Whether a call ending for ``reason`` is a resolved call to ask about:
        an agent's resolve, or the bot's goodbye with nothing left for a person
        to do (not a goodbye after a callback was arranged, nor after a handoff
        the queue could not take; a call an agent sent back to the bot counts)."""
        if not settings.enabled:
            return False
        if reason is EndReason.RESOLVED:
            return True
        handed_over = call.escalation_reason is not None and not engine.awaits_agent(call)
        return reason is EndReason.BOT_HANG_UP and not handed_over

    @property
    def question(self) -> list[str]:
        return [question_text(self._settings, self._keypad)]

    def heard(self, text: str, via: str, sure: bool = True) -> SurveyStep:
        """A spoken or typed answer (``sure``: the recogniser trusted its words)."""
        if self.done:
            return SurveyStep()
        if declines(text):
            return self._finish(None)
        score = parse_rating(text) if sure else None
        if score is None:
            return self._missed()
        return self._finish(score, via)

    def keyed(self, key: str) -> SurveyStep | None:
        """A key pressed on the phone: 1 to 5 answer at once; ``*`` and ``#``
        mean nothing here (None); any other key is not an answer."""
        if self.done or key in {"*", "#"}:
            return None
        score = _SCORES.get(key)
        return self._missed() if score is None else self._finish(score, "keypad")

    def silent_too_long(self, now_ms: int, quiet: bool) -> bool:
        """True once the caller has said nothing for ``answer_seconds`` of
        quiet (no bot speech, no caller turn): the call then just ends."""
        if self.done or not quiet:
            self._quiet_since_ms = now_ms
            return False
        return now_ms - self._quiet_since_ms >= self._settings.answer_seconds * 1000

    def _missed(self) -> SurveyStep:
        self._misses += 1
        if self._misses == 1:
            return SurveyStep((self._settings.reask,))
        return self._finish(None)

    def _finish(self, score: int | None, via: str = "") -> SurveyStep:
        self.done = True
        if score is None:
            return SurveyStep((self._settings.goodbye,), done=True)
        call = self._call
        call.emit(SurveyAnswered(call.call_id, call.t_ms(), score, via, turn_id=call.turn_id))
        return SurveyStep((self._settings.thanks,), score, done=True)


def question_text(settings: SurveySettings, keypad: bool) -> str:
    """The question, with the keypad hint on phone lines."""
    if keypad and settings.keypad_hint.strip():
        return f"{settings.question} {settings.keypad_hint}"
    return settings.question


def warm_up(speaker: Speaker, settings: SurveySettings, keypad: bool) -> None:
    """Renders the question ahead, so it follows the goodbye without a gap."""
    if settings.enabled:
        speaker.prepare(question_text(settings, keypad))
