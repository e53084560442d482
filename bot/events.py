"""The call event vocabulary: one record of everything a call does.

Events are frozen dataclasses that serialise to one JSON object each, with
``event`` (the name) and ``t_ms`` (milliseconds since the call started, on the
call's clock). Stores, consoles, metrics and ``--json`` output consume them.

Events of one caller turn carry its ``turn_id`` (1, 2, ... per call; 0 for
what the bot says before the caller's first turn): the caller's
``speech_started`` and ``speech_ended`` (always a pair), the partial and
final transcripts, the ``bot_turn``, and the bot's ``bot_speech_started`` and
``bot_speech_ended`` (always a pair) that answer it. Bot speech the caller
did not ask for (a reprompt, an announcement on hold) carries the id of the
latest turn.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar


@dataclass(frozen=True)
class EndReason(str, enum.Enum):
    """Why a call ended."""

    CALLER_HANG_UP = "caller_hang_up"
    BOT_HANG_UP = "bot_hang_up"
    TRANSFERRED = "transferred"
    RESOLVED = "resolved"
    CALLBACK_ARRANGED = "callback_arranged"
    SILENCE = "silence"
    TIME_LIMIT = "time_limit"
    INTERRUPTED = "interrupted"
    # A callback reached an answering machine: a message was left.
    VOICEMAIL = "voicemail"
    ERROR = "error"


class TurnEnd(str, enum.Enum):
    """What ended a caller's turn."""

    # Enough trailing silence for what the words so far are (see bot/session/turns.py).
    SILENCE = "silence"
    # The partial transcript already held a whole closed answer.
    COMPLETE_ANSWER = "complete_answer"
    # The recogniser's own endpoint fired first.
    RECOGNISER = "recogniser"
    MAX_LENGTH = "max_length"
    # Keyed on the phone's keypad, ended by "#" (or a yes/no key).
    KEYPAD = "keypad"
    # The caller hung up mid-turn.
    HANG_UP = "hang_up"


@dataclass(frozen=True)
class CallEvent:
    name: ClassVar[str] = "event"
    call_id: str
    t_ms: int

    def to_dict(self) -> dict[str, Any]:
        data = {f.name: _plain(getattr(self, f.name)) for f in fields(self)}
        return {"event": self.name, "t_ms": data.pop("t_ms"), **data}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False)


@dataclass(frozen=True)
class CallStarted(CallEvent):
    name: ClassVar[str] = "call_started"
    channel: str = "text"
    # Phone calls: the caller's number from caller ID (None when withheld or
    # unknown), whether the caller withheld it, the number they dialled and
    # the line that answered.
    caller_number: str | None = None
    caller_withheld: bool = False
    dialled_number: str | None = None
    line: int | None = None


@dataclass(frozen=True)
class SpeechStarted(CallEvent):
    name: ClassVar[str] = "speech_started"
    turn_id: int = 0


@dataclass(frozen=True)
class SpeechEnded(CallEvent):
    name: ClassVar[str] = "speech_ended"
    # Call time of the caller's last speech sample.
    last_speech_ms: int = 0
    turn_id: int = 0
    reason: TurnEnd = TurnEnd.SILENCE
    # The silence the turn detector waited for, and the turn's speech level
    # (mean power of its speech frames, dBFS).
    silence_ms: int = 0
    level_dbfs: float | None = None


@dataclass(frozen=True)
class TranscriptPartial(CallEvent):
    name: ClassVar[str] = "transcript_partial"
    text: str = ""
    turn_id: int = 0


@dataclass(frozen=True)
class TranscriptFinal(CallEvent):
    name: ClassVar[str] = "transcript_final"
    text: str = ""
    confidence: float = 1.0
    turn_id: int = 0


@dataclass(frozen=True)
class BotTurn(CallEvent):
    name: ClassVar[str] = "bot_turn"
    user: str = ""
    intent: str = ""
    confidence: float = 0.0
    entities: dict[str, Any] = field(default_factory=dict)
    bot: tuple[str, ...] = ()
    dialogue_ms: float = 0.0
    # Stage timings of the turn in ms (voice calls: endpoint, asr, dialogue, tts).
    timings: dict[str, float] = field(default_factory=dict)
    # The recogniser was unsure of the words: the dialogue did not act on them,
    # the bot asked again, and the intent is only what the NLU made of them.
    unclear: bool = False
    turn_id: int = 0


@dataclass(frozen=True)
class BotSpeechStarted(CallEvent):
    name: ClassVar[str] = "bot_speech_started"
    text: str = ""
    # From the caller's last speech sample to this first bot sample (None for
    # speech the bot starts itself: greeting, reprompts).
    response_ms: int | None = None
    timings: dict[str, float] = field(default_factory=dict)
    turn_id: int = 0


@dataclass(frozen=True)
class BotSpeechEnded(CallEvent):
    name: ClassVar[str] = "bot_speech_ended"
    interrupted: bool = False
    turn_id: int = 0


@dataclass(frozen=True)
class BargeIn(CallEvent):
    name: ClassVar[str] = "barge_in"
    turn_id: int = 0


@dataclass(frozen=True)
class Escalated(CallEvent):
    name: ClassVar[str] = "escalated"
    reason: str = ""


@dataclass(frozen=True)
class CallEnded(CallEvent):
    name: ClassVar[str] = "call_ended"
    reason: EndReason = EndReason.CALLER_HANG_UP
    recording_path: str | None = None
    # For reason "error": what failed (an error code).
    error: str | None = None


@dataclass(frozen=True)
class KeypadDigit(CallEvent):
    """A key the caller pressed on their phone (RFC 4733 or SIP INFO)."""

    name: ClassVar[str] = "dtmf"
    digit: str = ""


@dataclass(frozen=True)
class HungUp(CallEvent):
    """The phone call's line was cleared: by the caller (BYE, CANCEL, lost
    audio) or by the bot (its goodbye, a transfer)."""

    name: ClassVar[str] = "hangup"
    by: str = "caller"


@dataclass(frozen=True)
class AgentSpeech(CallEvent):
    """Words the agent said on the call (their own voice, transcribed): part
    of the call's story, never training data for the bot."""

    name: ClassVar[str] = "agent_speech"
    text: str = ""
    turn_id: int = 0


# The intent recorded with an agent's words in the call store's turns.
AGENT_SPEECH_INTENT = "agent_speech"


@dataclass(frozen=True)
class Transferred(CallEvent):
    """An escalated phone call was handed to the PBX (SIP REFER to
    ``escalation.transfer_to``); when it did not connect, the caller waits
    on the bot's line instead."""

    name: ClassVar[str] = "transferred"
    to: str = ""
    connected: bool = False


# How a survey answer was given.
SURVEY_VIA = ("voice", "keypad", "text")


@dataclass(frozen=True)
class SurveyAnswered(CallEvent):
    """The caller's rating of a resolved call in the post-call survey: 1
    (poor) to 5 (excellent), said, keyed or typed (``via``)."""

    name: ClassVar[str] = "survey_answer"
    score: int = 0
    via: str = "voice"
    turn_id: int = 0

    def __post_init__(self) -> None:
        if isinstance(self.score, bool) or self.score not in range(1, 6):
            raise ValueError(f"survey score must be 1 to 5, got {self.score!r}")
        if self.via not in SURVEY_VIA:
            raise ValueError(f"survey answer via must be one of {SURVEY_VIA}, got {self.via!r}")


EventListener = Callable[[CallEvent], None]


def _plain(value: Any) -> Any:
    """A field's value as JSON has it (enums by value, containers copied)."""
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value
