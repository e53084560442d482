"""What the stages of a voice call plug into: channels, recogniser, speaker.

A channel is where a call's audio comes from and goes to (sound card, WAV
file, later phone lines and agents' browsers). It yields 20 ms frames of
16 kHz mono int16 audio, plays PCM (returning False when playback was cut),
stops playback at once for barge-in, keeps the call's clock, hands back what
it played during the latest frame (the echo reference), and says when the
far end has gone (``far_end_gone``): a file whose audio is over, a line
whose caller hung up. Ending ``frames()`` also means the caller has gone.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol


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
    @property
    def far_end_gone(self) -> bool: ...
    def now_ms(self) -> int: ...
    def played_frame(self) -> bytes: ...


class Speaker(Protocol):
    def stream(self, text: str) -> AsyncIterator[bytes]: ...
    def prepare(self, text: str) -> None: ...


class SpeechDetector(Protocol):
    def is_speech(self, frame: bytes, threshold_boost_db: float = 0.0) -> bool: ...


class EchoVerdict(Protocol):
    @property
    def caller_speaking(self) -> bool: ...


class EchoCanceller(Protocol):
    def feed(self, mic: bytes, reference: bytes | None) -> EchoVerdict: ...


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
    # Without an agent queue the call ends once the transfer message is
    # spoken; with one, the caller waits on hold (music, their place in line,
    # and whatever the agent types, spoken).
    end_call_on_escalation: bool = True
    hold_announce_seconds: float = 30.0
    # Waits longer than this are offered a call back (when the number is known).
    callback_offer_seconds: float = 240.0
    # Hold music is played in pieces this long; a queue change cuts one short.
    hold_music_piece_seconds: float = 1.0


@dataclass(frozen=True)
class Recognised:
    """What the recogniser stage hands on: words, final or partial."""

    text: str
    is_final: bool
    confidence: float
