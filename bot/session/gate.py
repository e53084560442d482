"""The voice gate: is this frame the caller speaking, and how loud is it?

Without an echo gate, WebRTC's voice activity detector decides, with its
energy floor raised while the bot talks. With one (sound cards: the bot's
voice comes back through the room), the echo gate decides, always fed the
playback reference, also just after playback ends (the room and the sound
server deliver the bot's last words a little later). With barge-in off, the
caller is not heard while the bot talks.
"""

from __future__ import annotations

from dataclasses import dataclass

from bot.pcm import rms_dbfs
from bot.session.contracts import EchoCanceller, SpeechDetector


@dataclass(frozen=True)
class Heard:
    speech: bool
    level_dbfs: float


class VoiceGate:
    def __init__(
        self,
        detector: SpeechDetector,
        echo: EchoCanceller | None = None,
        speaking_boost_db: float = 6.0,
        barge_in: bool = True,
    ) -> None:
        self._detector = detector
        self._echo = echo
        self._boost_db = speaking_boost_db
        self._barge_in = barge_in

    def hear(self, frame: bytes, played: bytes, bot_talking: bool) -> Heard:
        if self._echo is not None:
            speech = self._echo.feed(frame, played).caller_speaking
        else:
            speech = self._detector.is_speech(frame, self._boost_db if bot_talking else 0.0)
        if bot_talking and not self._barge_in:
            speech = False
        return Heard(speech, rms_dbfs(frame))
