"""The call event vocabulary: one record of everything a call does.

Events are frozen dataclasses that serialise to one JSON object each, with
``event`` (the name) and ``t_ms`` (milliseconds since the call started, on the
call's clock). Stores, consoles, metrics and ``--json`` output consume them.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar


@dataclass(frozen=True)
class CallEvent:
    name: ClassVar[str] = "event"
    call_id: str
    t_ms: int

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        return {"event": self.name, "t_ms": data.pop("t_ms"), **data}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False)


@dataclass(frozen=True)
class CallStarted(CallEvent):
    name: ClassVar[str] = "call_started"
    channel: str = "text"


@dataclass(frozen=True)
class SpeechStarted(CallEvent):
    name: ClassVar[str] = "speech_started"


@dataclass(frozen=True)
class SpeechEnded(CallEvent):
    name: ClassVar[str] = "speech_ended"
    # Call time of the caller's last speech sample.
    last_speech_ms: int = 0


@dataclass(frozen=True)
class TranscriptPartial(CallEvent):
    name: ClassVar[str] = "transcript_partial"
    text: str = ""


@dataclass(frozen=True)
class TranscriptFinal(CallEvent):
    name: ClassVar[str] = "transcript_final"
    text: str = ""
    confidence: float = 1.0


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


@dataclass(frozen=True)
class BotSpeechStarted(CallEvent):
    name: ClassVar[str] = "bot_speech_started"
    text: str = ""
    # From the caller's last speech sample to this first bot sample (None for
    # speech the bot starts itself: greeting, reprompts).
    response_ms: int | None = None
    timings: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class BotSpeechEnded(CallEvent):
    name: ClassVar[str] = "bot_speech_ended"
    interrupted: bool = False


@dataclass(frozen=True)
class BargeIn(CallEvent):
    name: ClassVar[str] = "barge_in"


@dataclass(frozen=True)
class Escalated(CallEvent):
    name: ClassVar[str] = "escalated"
    reason: str = ""


@dataclass(frozen=True)
class CallEnded(CallEvent):
    name: ClassVar[str] = "call_ended"
    reason: str = "hang_up"
    recording_path: str | None = None


EventListener = Callable[[CallEvent], None]
